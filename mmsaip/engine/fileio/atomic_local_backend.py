"""Local file backend whose writes are atomic."""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio.backends import LocalBackend, register_backend

ATOMIC_BACKEND_NAME = 'atomic_local'


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that readers see old or new, never
    part of it.

    The bytes go to a temporary file in the same folder, which is flushed,
    synced to disk and then renamed over ``filepath`` (``os.replace`` is
    atomic on POSIX and Windows within one file system). If anything fails
    before the rename, the temporary file is removed and ``filepath`` is
    left as it was.

    Args:
        data (bytes): Content to write.
        filepath (str | Path): Destination; its folder is created if
            missing.
    """
    filepath = str(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    descriptor, temp_path = tempfile.mkstemp(
        prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=folder)
    try:
        # mkstemp creates the file with mode 0600; give it the permissions
        # that open() would, so other users can read checkpoints as before.
        os.chmod(temp_path, 0o666 & ~_current_umask())
        with os.fdopen(descriptor, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_path, filepath)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written temp file.
        if osp.exists(temp_path):
            os.remove(temp_path)
        raise


class AtomicLocalBackend(LocalBackend):
    """:class:`mmengine.fileio.LocalBackend` with atomic ``put`` and
    ``put_text``.

    Select it with ``backend_args=dict(backend='atomic_local')``, for
    example on :class:`AtomicCheckpointHook`, so that a crash or a kill
    during a save never leaves a truncated file under the final name.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write bytes to ``filepath`` atomically."""
        atomic_write(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically."""
        atomic_write(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND_NAME, AtomicLocalBackend, force=True)
