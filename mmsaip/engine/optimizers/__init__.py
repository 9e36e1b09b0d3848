from .saip_amp_optim_wrapper import SAIPAmpOptimWrapper
from .saip_optim_wrapper import (NonFiniteLossError, SAIPOptimWrapper,
                                 SkipNonFiniteMixin)

__all__ = [
    'NonFiniteLossError', 'SAIPAmpOptimWrapper', 'SAIPOptimWrapper',
    'SkipNonFiniteMixin'
]
