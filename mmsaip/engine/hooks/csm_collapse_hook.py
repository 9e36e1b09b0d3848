"""Warn when the cross-scale matching loss sits at its collapse value."""
import math
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class CSMCollapseHook(Hook):
    """Warn when the CSM cross-entropy stays at ln(K).

    When the teacher's targets become uniform over the K prototypes (one of
    the two ways DINO-style training collapses), the CSM cross-entropy
    equals ln(K) whatever the student predicts. This hook divides the
    logged ``loss_csm`` by the head's ``loss_weight`` and warns once when
    the result has stayed within ``tolerance`` of ln(K) for ``patience``
    consecutive iterations. It warns again only after the loss has left the
    band. ``csm_teacher_entropy`` in the logs shows the same state (it nears
    ln(K) too), and a value near 0 shows the other collapse, to a single
    prototype.

    Args:
        patience (int): Consecutive iterations at ln(K) before warning.
            Defaults to 200.
        tolerance (float): Half-width of the band around ln(K), in nats.
            Defaults to 0.02.
    """

    priority = 'LOW'

    def __init__(self, patience: int = 200, tolerance: float = 0.02) -> None:
        if patience < 1:
            raise ValueError(f'patience must be >= 1, got {patience}')
        if tolerance <= 0:
            raise ValueError(f'tolerance must be > 0, got {tolerance}')
        self.patience = patience
        self.tolerance = tolerance
        self.iterations_at_uniform = 0
        self.warned = False

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Track ``loss_csm`` of this iteration."""
        if not outputs or 'loss_csm' not in outputs:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = model.csm_head
        if head.loss_weight == 0:
            return
        loss = outputs['loss_csm']
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().item()
        cross_entropy = loss / head.loss_weight
        uniform = math.log(head.out_channels)
        if abs(cross_entropy - uniform) > self.tolerance:
            self.iterations_at_uniform = 0
            self.warned = False
            return
        self.iterations_at_uniform += 1
        if self.iterations_at_uniform >= self.patience and not self.warned:
            runner.logger.warning(
                f'Possible collapse: the CSM cross-entropy has been within '
                f'{self.tolerance} of ln(K) = {uniform:.4f} for '
                f'{self.iterations_at_uniform} iterations (now '
                f'{cross_entropy:.4f}), so the teacher targets are close to '
                'uniform. Check csm_teacher_entropy; a lower teacher '
                'temperature, a larger batch or a lower learning rate may '
                'help.')
            self.warned = True
