"""Datasets and transforms of mmsaip; importing registers them with
mmpretrain's ``DATASETS`` and ``TRANSFORMS`` registries."""
from .person_image_dataset import PersonImageDataset
from .transforms import (ImageDecodeError, LoadPersonImage, PackSAIPInputs,
                         SAIPMultiView)

__all__ = [
    'PersonImageDataset', 'ImageDecodeError', 'LoadPersonImage',
    'PackSAIPInputs', 'SAIPMultiView'
]
