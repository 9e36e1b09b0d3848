from .atomic_checkpoint_hook import AtomicCheckpointHook
from .csm_collapse_hook import CSMCollapseHook
from .rng_state_hook import TorchRNGStateHook
from .saip_teacher_hook import SAIPTeacherHook
from .saip_visualization_hook import SAIPVisualizationHook

__all__ = [
    'AtomicCheckpointHook', 'CSMCollapseHook', 'SAIPTeacherHook',
    'SAIPVisualizationHook', 'TorchRNGStateHook'
]
