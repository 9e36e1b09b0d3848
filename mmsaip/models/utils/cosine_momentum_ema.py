"""EMA teacher whose momentum follows a cosine over training iterations."""
import math
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseAveragedModel
from mmpretrain.registry import MODELS

MOMENTUM_INDEXING_MODES = ('global', 'per_epoch_legacy')


@MODELS.register_module()
class CosineMomentumEMA(BaseAveragedModel):
    """Exponential moving average with a cosine momentum schedule.

    Momentum follows mmengine's convention: it is the weight of the
    *student* in ``teacher = (1 - momentum) * teacher + momentum *
    student``. DINO's teacher momentum 0.996 is ``momentum=0.004`` here, and
    its end value 1.0 is ``end_momentum=0``.

    Unlike :class:`mmpretrain.models.CosineEMA`, the schedule position is
    given by the caller (the training iteration), not counted by this
    module, so gradient accumulation and skipped steps do not shift it, and
    the first update already averages instead of copying.

    Args:
        model (nn.Module): The student module to copy and follow.
        momentum (float): Momentum at the first iteration.
            Defaults to 0.004.
        end_momentum (float): Momentum reached at the last iteration.
            Defaults to 0.
        momentum_indexing (str): 'global' indexes the cosine by the global
            iteration. 'per_epoch_legacy' indexes it by the iteration within
            the epoch, as the reference code does by mistake, so the
            momentum restarts every epoch and stays near its start value.
            Defaults to 'global'.
        device (torch.device, optional): Device of the copy. Defaults to
            None (that of ``model``).
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 0.004,
                 end_momentum: float = 0.,
                 momentum_indexing: str = 'global',
                 device: Optional[torch.device] = None) -> None:
        if momentum_indexing not in MOMENTUM_INDEXING_MODES:
            raise ValueError('momentum_indexing must be one of '
                             f'{MOMENTUM_INDEXING_MODES}, got '
                             f'{momentum_indexing!r}')
        for name, value in (('momentum', momentum),
                            ('end_momentum', end_momentum)):
            if not 0. <= value <= 1.:
                raise ValueError(f'{name} must be in [0, 1], got {value}')
        super().__init__(model, interval=1, device=device,
                         update_buffers=False)
        self.momentum = momentum
        self.end_momentum = end_momentum
        self.momentum_indexing = momentum_indexing

    def momentum_at(self, cur_iter: int, max_iters: int,
                    iters_per_epoch: Optional[int] = None) -> float:
        """Return the momentum for a training iteration.

        Args:
            cur_iter (int): 0-based iteration whose update this is.
            max_iters (int): Total training iterations.
            iters_per_epoch (int, optional): Needed for 'per_epoch_legacy'.

        Returns:
            float: The student's weight in the average.
        """
        if max_iters <= 0:
            raise ValueError(f'max_iters must be > 0, got {max_iters}')
        step = cur_iter
        if self.momentum_indexing == 'per_epoch_legacy':
            if not iters_per_epoch:
                raise ValueError("momentum_indexing='per_epoch_legacy' "
                                 'needs iters_per_epoch')
            step = cur_iter % iters_per_epoch
        progress = min(max(step / max_iters, 0.), 1.)
        cosine = (math.cos(math.pi * progress) + 1.) / 2.
        return self.end_momentum - (self.end_momentum -
                                    self.momentum) * cosine

    def avg_func(self, averaged_param: torch.Tensor,
                 source_param: torch.Tensor, steps: int) -> None:
        """Not used: :meth:`update_parameters` takes the momentum."""
        raise NotImplementedError(
            'call update_parameters(model, momentum) instead')

    @torch.no_grad()
    def update_parameters(self, model: nn.Module,
                          momentum: float) -> None:
        """Average the student's parameters into the copy.

        All floating-point parameters are updated with one fused
        ``_foreach_lerp_`` call; buffers are copied.

        Args:
            model (nn.Module): The student, with the same structure as the
                copy.
            momentum (float): The student's weight, from
                :meth:`momentum_at`.
        """
        averaged, source = [], []
        student_params = dict(model.named_parameters())
        for name, param in self.module.named_parameters():
            if param.dtype.is_floating_point:
                averaged.append(param.data)
                source.append(student_params[name].data)
        if averaged:
            torch._foreach_lerp_(averaged, source, momentum)
        for avg_buffer, src_buffer in zip(self.module.buffers(),
                                          model.buffers()):
            avg_buffer.data.copy_(src_buffer.data)
        self.steps += 1
