from .checkpoint import (check_resume_checkpoint, load_checkpoint_file,
                         setup_checkpoint_loading)
from .dist import prepare_cpu_distributed

__all__ = [
    'check_resume_checkpoint', 'load_checkpoint_file',
    'prepare_cpu_distributed', 'setup_checkpoint_loading'
]
