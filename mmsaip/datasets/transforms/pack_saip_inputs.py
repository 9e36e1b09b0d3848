from typing import Dict, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample

DEFAULT_VIEW_KEYS = ('global_views', 'local_views', 'roi_view', 'region_view',
                     'canvas', 'inst_mask', 'roi_mask')
DEFAULT_META_KEYS = ('img_path', 'background_path', 'ori_shape', 'img_shape')


@TRANSFORMS.register_module()
class PackSAIPInputs(BaseTransform):
    """Pack the SAIP views into a dict of tensors and a ``DataSample``.

    Required keys:

    - every key of ``view_keys`` (tensors or numpy arrays)
    - every key of ``meta_keys``

    Added keys:

    - inputs (dict[str, torch.Tensor]): One entry per key of ``view_keys``,
      shapes and dtypes unchanged. numpy arrays are wrapped without a copy
      and keep their (H, W, C) layout.
    - data_samples (DataSample): Carries the ``meta_keys`` values as meta
      information, e.g. ``data_samples.img_path``.

    All other keys of the result dict are dropped.

    Args:
        view_keys (Sequence[str]): Result keys packed into ``inputs``.
            Defaults to the seven outputs of ``SAIPMultiView``:
            ``('global_views', 'local_views', 'roi_view', 'region_view',
            'canvas', 'inst_mask', 'roi_mask')``.
        meta_keys (Sequence[str]): Result keys stored as meta information.
            Defaults to ``('img_path', 'background_path', 'ori_shape',
            'img_shape')``.
    """

    def __init__(self,
                 view_keys: Sequence[str] = DEFAULT_VIEW_KEYS,
                 meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        for name, keys in (('view_keys', view_keys), ('meta_keys', meta_keys)):
            if isinstance(
                    keys,
                    str) or not all(isinstance(key, str) for key in keys):
                raise TypeError(f'{name} must be a sequence of str, got '
                                f'{keys!r}.')
        if not view_keys:
            raise ValueError('view_keys must name at least one result key.')
        self.view_keys = tuple(view_keys)
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: Dict) -> Dict:
        """Pack ``results`` into ``inputs`` and ``data_samples``.

        Args:
            results (dict): Result dict of the previous transforms.

        Returns:
            dict: ``{'inputs': dict, 'data_samples': DataSample}``.
        """
        inputs = {}
        for key in self.view_keys:
            if key not in results:
                raise KeyError(
                    f'PackSAIPInputs: view key {key!r} is missing from the '
                    f'results (available: {sorted(results)}). Check that '
                    'SAIPMultiView runs before it, or change view_keys.')
            inputs[key] = _to_tensor(results[key], key)

        metainfo = {}
        for key in self.meta_keys:
            if key not in results:
                raise KeyError(
                    f'PackSAIPInputs: meta key {key!r} is missing from the '
                    f'results (available: {sorted(results)}). Remove it from '
                    'meta_keys or add the transform that sets it.')
            metainfo[key] = results[key]

        data_sample = DataSample(metainfo=metainfo)
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(view_keys={self.view_keys}, '
                f'meta_keys={self.meta_keys})')


def _to_tensor(value, key: str) -> torch.Tensor:
    """Wrap a tensor or numpy array, raising ``TypeError`` naming ``key``."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f'PackSAIPInputs: results[{key!r}] must be a tensor or a '
                    f'numpy array, got {type(value).__name__}.')
