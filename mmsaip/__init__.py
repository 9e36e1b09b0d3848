"""mmsaip: SAIP pretraining as an mmpretrain plugin.

Importing the package registers its models, datasets, transforms, hooks and
optimizer wrappers into mmpretrain's registries (``mmpretrain.registry``).
It does not change mmengine's default scope: configs set
``default_scope='mmpretrain'`` and load this package with
``custom_imports=dict(imports=['mmsaip'], allow_failed_imports=False)``.
"""
from . import datasets, engine, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
