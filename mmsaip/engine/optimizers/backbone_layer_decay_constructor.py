"""Layer-wise learning-rate decay for detectors, segmentors and pose models."""
from functools import partial
from typing import Callable, List, Optional

import torch.nn as nn
from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-wise learning-rate decay, keyed on the backbone.

    mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` calls
    ``get_layer_depth`` of the top-level model, which only mmpretrain's
    classifiers define. This constructor calls that of ``model.backbone``
    instead (mmpretrain's ViT defines it), so mmpose, mmdet and mmseg models
    get the decay too. A parameter at depth d of D gets the learning rate
    ``lr * layer_decay_rate ** (D - 1 - d)``: the patch embedding and
    positions have depth 0, block i depth i + 1, and everything outside the
    backbone (necks, heads) the full learning rate. ``paramwise_cfg`` takes
    the keys of the mmpretrain constructor (``layer_decay_rate``,
    ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``,
    ``custom_keys`` with ``decay_mult``).

    Configs outside mmpretrain's scope name it
    ``'mmpretrain.BackboneLayerDecayOptimWrapperConstructor'``.
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   get_layer_depth: Optional[Callable] = None,
                   **kwargs) -> None:
        """Add the parameters of ``module`` with their decayed rates.

        Args:
            params (list[dict]): Parameter groups, extended in place.
            module (nn.Module): The model (at the top call) or a submodule.
            prefix (str): Name prefix of ``module``. Defaults to ''.
            get_layer_depth (Callable, optional): Maps a parameter name to
                (depth, number of depths). Defaults to None: at the top
                call, the backbone's ``get_layer_depth``.

        Raises:
            ValueError: If the model has no backbone with
                ``get_layer_depth``.
        """
        if get_layer_depth is None and prefix == '':
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise ValueError(
                    f'{type(self).__name__} needs a model whose backbone '
                    f'defines get_layer_depth (mmpretrain ViTs do); '
                    f'{type(module).__name__}.backbone is '
                    f'{type(backbone).__name__}. Use '
                    'DefaultOptimWrapperConstructor for other backbones.')
            get_layer_depth = partial(
                backbone.get_layer_depth, prefix='backbone.')
        super().add_params(params, module, prefix, get_layer_depth, **kwargs)
