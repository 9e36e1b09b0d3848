from .checkpoint import (check_resume_checkpoint, load_checkpoint_file,
                         setup_checkpoint_loading)

__all__ = [
    'check_resume_checkpoint', 'load_checkpoint_file', 'setup_checkpoint_loading'
]
