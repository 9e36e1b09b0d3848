from .backbone_layer_decay_constructor import \
    BackboneLayerDecayOptimWrapperConstructor
from .saip_amp_optim_wrapper import SAIPAmpOptimWrapper
from .saip_optim_wrapper import (NonFiniteLossError, SAIPOptimWrapper,
                                 SkipNonFiniteMixin)

__all__ = [
    'BackboneLayerDecayOptimWrapperConstructor', 'NonFiniteLossError',
    'SAIPAmpOptimWrapper', 'SAIPOptimWrapper', 'SkipNonFiniteMixin'
]
