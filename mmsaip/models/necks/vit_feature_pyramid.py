"""Simple feature pyramid built from the last feature map of a plain ViT."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.utils import build_norm_layer
from mmpretrain.registry import MODELS

SCALE_FACTORS = (4.0, 2.0, 1.0, 0.5, 0.25)


@MODELS.register_module()
class ViTFeaturePyramid(BaseModule):
    """Multi-scale maps for detection heads from one ViT feature map.

    A plain ViT has a single stride-16 map. Following ViTDet (`Exploring
    Plain Vision Transformer Backbones for Object Detection
    <https://arxiv.org/abs/2203.16527>`_), each pyramid level is made from
    that last map alone. Scale 4 takes two stride-2 transposed
    convolutions, scale 2 one, scale 1 the map itself, and scales 0.5 and
    0.25 a 2 x 2 or 4 x 4 max pooling (0.25 serves ViTs with 8-pixel
    patches). Each level then gets a 1 x 1 and a 3 x 3 convolution, each
    followed by a norm, to ``out_channels``. Extra coarser levels are
    sub-sampled from the last level (as mmdet's FPN does without extra
    convolutions), so Faster R-CNN's RPN gets its stride-64 level.

    Args:
        in_channels (int): Channels C of the ViT feature map.
        out_channels (int): Channels of every output level.
            Defaults to 256.
        scale_factors (Sequence[float]): Size of each level relative to the
            input map, each one of 4, 2, 1, 0.5 and 0.25, from fine to
            coarse.
            Defaults to (4.0, 2.0, 1.0, 0.5): strides 4 to 32 for a
            stride-16 ViT.
        num_extra_levels (int): Levels added after the last one, each
            sub-sampled by 2. Defaults to 1.
        norm_cfg (dict): Norm after each convolution and between the two
            transposed convolutions of scale 4. Defaults to
            ``dict(type='LN2d', eps=1e-6)``.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_extra_levels: int = 1,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        for scale in scale_factors:
            if scale not in SCALE_FACTORS:
                raise ValueError(f'scale_factors must be taken from '
                                 f'{SCALE_FACTORS}, got {scale}')
        if num_extra_levels < 0:
            raise ValueError('num_extra_levels must be >= 0, got '
                             f'{num_extra_levels}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = tuple(float(scale) for scale in scale_factors)
        self.num_extra_levels = num_extra_levels

        self.rescales = nn.ModuleList()
        self.projections = nn.ModuleList()
        for scale in self.scale_factors:
            rescale, channels = self._build_rescale(scale, in_channels,
                                                    norm_cfg)
            self.rescales.append(rescale)
            self.projections.append(
                nn.Sequential(
                    nn.Conv2d(channels, out_channels, 1, bias=False),
                    build_norm_layer(norm_cfg, out_channels),
                    nn.Conv2d(
                        out_channels, out_channels, 3, padding=1,
                        bias=False),
                    build_norm_layer(norm_cfg, out_channels)))

    @staticmethod
    def _build_rescale(scale: float, channels: int,
                       norm_cfg: dict) -> Tuple[nn.Module, int]:
        """Return the resampling module of one level and its channels."""
        if scale == 4.0:
            return nn.Sequential(
                nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
                build_norm_layer(norm_cfg, channels // 2), nn.GELU(),
                nn.ConvTranspose2d(
                    channels // 2, channels // 4, 2,
                    stride=2)), channels // 4
        if scale == 2.0:
            return nn.ConvTranspose2d(
                channels, channels // 2, 2, stride=2), channels // 2
        if scale == 1.0:
            return nn.Identity(), channels
        kernel_size = int(round(1 / scale))
        return nn.MaxPool2d(kernel_size, stride=kernel_size), channels

    def forward(self, inputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor]:
        """Build the pyramid from the last input map.

        Args:
            inputs (Sequence[Tensor]): Backbone outputs; only the last one,
                of shape (B, C, H, W), is used.

        Returns:
            tuple[Tensor]: One map per scale factor, of shape
            (B, out_channels, H * s, W * s), then the extra levels.
        """
        feature = inputs[-1]
        if feature.shape[1] != self.in_channels:
            raise ValueError(f'Expected {self.in_channels} input channels, '
                             f'got a map of shape {tuple(feature.shape)}')
        outputs = [
            projection(rescale(feature))
            for rescale, projection in zip(self.rescales, self.projections)
        ]
        for _ in range(self.num_extra_levels):
            outputs.append(F.max_pool2d(outputs[-1], 1, stride=2))
        return tuple(outputs)
