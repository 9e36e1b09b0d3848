"""Checkpoint loading rules shared by the mmsaip tools.

torch >= 2.6 loads files with ``weights_only=True`` by default. mmengine
0.10 training checkpoints contain pickled Python objects besides tensors:
the message hub's ``HistoryBuffer`` and numpy scalars, which need
``getattr`` to rebuild. Resuming or loading them therefore fails under that
default, and an allow-list would have to admit ``getattr``, which defeats
its purpose.
:func:`setup_checkpoint_loading` is the one place where mmsaip restores the
old default, for the processes that the mmsaip tools start. Only load
checkpoints from sources you trust: unpickling can run code.
"""
import os
import os.path as osp
import pickle

import torch
from mmengine.logging import MMLogger

# Read by torch.load when its weights_only argument is not given.
_NO_WEIGHTS_ONLY_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'

# Keys that mmengine's Runner writes into a training checkpoint.
TRAINING_CHECKPOINT_KEYS = ('state_dict', 'optimizer', 'message_hub', 'meta')


def setup_checkpoint_loading() -> None:
    """Let ``torch.load`` read full mmengine checkpoints in this process.

    Sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` unless the user already set
    it or ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``. Explicit ``weights_only``
    arguments still take precedence.
    """
    if 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' in os.environ:
        return
    os.environ.setdefault(_NO_WEIGHTS_ONLY_ENV, '1')


def load_checkpoint_file(path: str) -> dict:
    """Load a checkpoint file on the CPU with a clear error on bad files.

    Args:
        path (str): Checkpoint path.

    Returns:
        dict: The loaded object, which must be a dict.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not a readable PyTorch checkpoint dict.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        checkpoint = _torch_load_on_cpu(path)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError,
            ValueError) as error:
        raise ValueError(
            f'{path} is not a readable PyTorch checkpoint ({error}). It may '
            'be truncated, or not a checkpoint at all.') from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path} contains a {type(checkpoint).__name__}, not '
                         'a checkpoint dict')
    return checkpoint


def _torch_load_on_cpu(path: str):
    try:
        # mmap avoids reading the whole file when only keys are needed.
        return torch.load(
            path, map_location='cpu', weights_only=False, mmap=True)
    except RuntimeError as error:
        if 'mmap' not in str(error):
            raise
    # Files in the legacy (non-zip) format cannot be memory-mapped.
    return torch.load(path, map_location='cpu', weights_only=False)


def check_resume_checkpoint(path: str) -> None:
    """Check that ``path`` is a full training checkpoint for ``--resume``.

    Args:
        path (str): The file given to ``--resume``.

    Raises:
        ValueError: If the file holds only weights (for example a converted
            backbone or a ``state_dict``), with a hint to use ``load_from``.
    """
    checkpoint = load_checkpoint_file(path)
    missing = [key for key in TRAINING_CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(
            f'{path} is not a training checkpoint: it lacks '
            f'{", ".join(missing)}, so training cannot resume from it. To '
            'start a new run from these weights, use '
            f'--cfg-options load_from={path} (or set load_from in the '
            'config) instead of --resume.')
    MMLogger.get_current_instance().info(
        f'Resuming from training checkpoint {path}.')
