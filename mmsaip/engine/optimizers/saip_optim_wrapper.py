"""Optimizer wrapper that skips steps with a non-finite loss."""
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS


class NonFiniteLossError(FloatingPointError):
    """Raised after too many consecutive steps with a non-finite loss."""


class SkipNonFiniteMixin:
    """Skip the update of a step whose loss is not finite.

    The loss is checked on every process, and the decision is shared
    (all-reduced), so that all ranks skip the same steps and distributed
    training never waits for a backward pass that one rank skipped. A
    skipped step runs no backward pass, drops the gradients accumulated so
    far and leaves the optimizer state untouched. ``last_step_applied``
    tells hooks (the SAIP teacher update) whether parameters changed.

    After ``max_consecutive_nonfinite`` skipped steps in a row, training
    stops with :class:`NonFiniteLossError`; checkpoints already written are
    left as they are.
    """

    def _init_skip_state(self, max_consecutive_nonfinite: int) -> None:
        if max_consecutive_nonfinite < 1:
            raise ValueError('max_consecutive_nonfinite must be >= 1, got '
                             f'{max_consecutive_nonfinite}')
        self.max_consecutive_nonfinite = max_consecutive_nonfinite
        self.num_nonfinite_steps = 0
        self.consecutive_nonfinite_steps = 0
        self.last_step_applied = False

    def _loss_is_finite_everywhere(self, loss: torch.Tensor) -> bool:
        nonfinite = (~torch.isfinite(loss.detach())).any().float()
        all_reduce(nonfinite)  # summed over ranks; a no-op in one process
        return bool(nonfinite.item() == 0)

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """Back-propagate and step, unless the loss is not finite.

        Args:
            loss (Tensor): Scalar training loss.
            step_kwargs (dict, optional): Passed to ``step``.
            zero_kwargs (dict, optional): Passed to ``zero_grad``.

        Raises:
            NonFiniteLossError: After ``max_consecutive_nonfinite``
                consecutive non-finite losses.
        """
        self.last_step_applied = False
        if self._loss_is_finite_everywhere(loss):
            self.consecutive_nonfinite_steps = 0
            super().update_params(loss, step_kwargs, zero_kwargs)
            return

        self.num_nonfinite_steps += 1
        self.consecutive_nonfinite_steps += 1
        # Count the micro-batch so accumulation windows stay aligned.
        self._inner_count += 1
        self.zero_grad(**(zero_kwargs or {}))
        MMLogger.get_current_instance().warning(
            f'Skipped an optimizer step: the loss is {loss.item()} on at '
            'least one process. Skipped steps so far: '
            f'{self.num_nonfinite_steps}, in a row: '
            f'{self.consecutive_nonfinite_steps}.')
        if self.consecutive_nonfinite_steps >= self.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f'The loss was not finite for '
                f'{self.consecutive_nonfinite_steps} consecutive steps. '
                'Training stops here; the checkpoints already saved are '
                'intact. Lower the learning rate, check the data, or resume '
                'from the last checkpoint. The limit is '
                'optim_wrapper.max_consecutive_nonfinite.')

    def step(self, **kwargs) -> None:
        """Step the optimizer and record that parameters changed."""
        super().step(**kwargs)
        self.last_step_applied = True


@OPTIM_WRAPPERS.register_module()
class SAIPOptimWrapper(SkipNonFiniteMixin, OptimWrapper):
    """:class:`mmengine.optim.OptimWrapper` that skips non-finite steps.

    Args:
        max_consecutive_nonfinite (int): Consecutive non-finite losses
            after which training stops. Defaults to 20.
        **kwargs: Arguments of :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self, max_consecutive_nonfinite: int = 20, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_skip_state(max_consecutive_nonfinite)
