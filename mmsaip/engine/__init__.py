"""Training-loop components, registered into mmpretrain's registries."""
from .fileio import *  # noqa: F401,F403
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
