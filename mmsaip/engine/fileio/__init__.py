from .atomic_local_backend import (ATOMIC_BACKEND_NAME, AtomicLocalBackend,
                                   atomic_write)

__all__ = ['ATOMIC_BACKEND_NAME', 'AtomicLocalBackend', 'atomic_write']
