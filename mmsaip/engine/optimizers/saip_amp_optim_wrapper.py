"""Mixed-precision optimizer wrapper that skips non-finite steps."""
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS

from .saip_optim_wrapper import SkipNonFiniteMixin


@OPTIM_WRAPPERS.register_module()
class SAIPAmpOptimWrapper(SkipNonFiniteMixin, AmpOptimWrapper):
    """:class:`mmengine.optim.AmpOptimWrapper` that skips non-finite steps.

    On a GPU it trains with autocast and a gradient scaler, like mmengine's
    wrapper. It also reports steps that the scaler skipped because of inf
    or NaN gradients through ``last_step_applied``, so the SAIP teacher is
    not updated on them. On a machine without CUDA, where mmengine's
    wrapper refuses to start, it trains in fp32 with a logged warning, but
    keeps the gradient scaler (on the CPU), so the same code path runs.

    Args:
        loss_scale (str | float | dict): 'dynamic', a static scale, or
            arguments of ``torch.amp.GradScaler``. Defaults to 'dynamic'.
        dtype (str | torch.dtype, optional): Autocast dtype, 'float16' or
            'bfloat16'. Defaults to None (autocast's default, float16).
        max_consecutive_nonfinite (int): Consecutive non-finite losses
            after which training stops. Defaults to 20.
        **kwargs: Arguments of :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 max_consecutive_nonfinite: int = 20,
                 **kwargs) -> None:
        # AmpOptimWrapper.__init__ asserts that a GPU is present, so its
        # set-up is done here instead, for both device types.
        OptimWrapper.__init__(self, **kwargs)
        self.device_type = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.autocast_enabled = self.device_type == 'cuda'
        if not self.autocast_enabled:
            MMLogger.get_current_instance().warning(
                'CUDA is not available: SAIPAmpOptimWrapper trains in fp32 '
                'without autocast.')
        self._scale_update_param = None
        if loss_scale == 'dynamic':
            self.loss_scaler = torch.amp.GradScaler(self.device_type)
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            self.loss_scaler = torch.amp.GradScaler(
                self.device_type, init_scale=loss_scale)
        elif isinstance(loss_scale, dict):
            self.loss_scaler = torch.amp.GradScaler(self.device_type,
                                                    **loss_scale)
        else:
            raise TypeError("loss_scale must be 'dynamic', a float or a "
                            f'dict, got {loss_scale!r}')
        if isinstance(dtype, str):
            if dtype not in self.valid_dtypes:
                raise ValueError(f'dtype must be one of {self.valid_dtypes},'
                                 f' got {dtype!r}')
            dtype = getattr(torch, dtype)
        self.cast_dtype = dtype
        self._init_skip_state(max_consecutive_nonfinite)

    def step(self, **kwargs) -> None:
        """Unscale, step unless gradients overflowed, update the scale."""
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        found_inf = False
        if self.loss_scaler.is_enabled():
            # Read before update(), which clears the per-step records.
            found_inf = any(
                bool(value.item()) for value in self.loss_scaler.
                _found_inf_per_device(self.optimizer).values())
        self.loss_scaler.update(self._scale_update_param)
        self.last_step_applied = not found_inf
        if found_inf:
            MMLogger.get_current_instance().info(
                'The gradient scaler skipped a step (inf or NaN gradients); '
                f'the loss scale is now {self.loss_scaler.get_scale()}.')

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Enable autocast on a GPU, and gradient-sync control always."""
        if self.autocast_enabled:
            with AmpOptimWrapper.optim_context(self, model):
                yield
        else:
            with OptimWrapper.optim_context(self, model):
                yield
