"""Data preprocessor that batches SAIP's named views."""
from typing import Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
class SAIPDataPreprocessor(BaseDataPreprocessor):
    """Stack, move and normalise the named views of a SAIP batch.

    Each sample's ``inputs`` is a dict of uint8 image tensors (shape
    (V, C, H, W) or (C, H, W)) and bool masks, as made by
    ``PackSAIPInputs``. This module stacks every key over the batch, moves
    the result to the model's device, converts images to float and
    normalises them per channel, and leaves masks as bool.

    Args:
        mean (Sequence[float]): Per-channel mean in the 0-255 range.
            Defaults to the ImageNet mean.
        std (Sequence[float]): Per-channel std in the 0-255 range.
            Defaults to the ImageNet std.
        mask_keys (Sequence[str]): Keys that hold masks, not images.
            Defaults to ('inst_mask', 'roi_mask').
        non_blocking (bool): Copy to the device asynchronously.
            Defaults to False.
    """

    def __init__(self,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 mask_keys: Sequence[str] = ('inst_mask', 'roi_mask'),
                 non_blocking: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        if len(mean) != len(std):
            raise ValueError(f'mean and std must have the same length, got '
                             f'{len(mean)} and {len(std)}')
        # (C, 1, 1) broadcasts over (..., C, H, W).
        self.register_buffer('mean',
                             torch.tensor(mean).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), False)
        self.mask_keys = tuple(mask_keys)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Batch and normalise ``data['inputs']``.

        Args:
            data (dict): ``inputs`` is a dict whose values are lists of
                per-sample tensors (as from ``pseudo_collate``) or batched
                tensors (as from ``default_collate``), or a list of
                per-sample dicts; ``data_samples`` is passed through.
            training (bool): Unused; the same processing applies.

        Returns:
            dict: ``inputs`` as a dict of batched tensors (images float32,
            shape (B, V, C, H, W) or (B, C, H, W); masks bool) and
            ``data_samples``.
        """
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise ValueError('received an empty batch')
            inputs = {
                key: [sample[key] for sample in inputs]
                for key in inputs[0]
            }
        inputs = {
            key: torch.stack(value) if isinstance(value,
                                                  (list, tuple)) else value
            for key, value in inputs.items()
        }
        inputs = self.cast_data(inputs)
        batch = dict()
        for key, value in inputs.items():
            if key in self.mask_keys:
                batch[key] = value.bool()
            else:
                batch[key] = (value.float() - self.mean) / self.std
        data_samples: Optional[list] = data.get('data_samples')
        return dict(inputs=batch, data_samples=data_samples)
