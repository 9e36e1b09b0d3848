"""Projection head of cross-scale matching (CSM)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..utils.weight_normalized_linear import weight_normalized_linear


@MODELS.register_module()
class CSMProjector(BaseModule):
    """DINO-style projector that turns a class token into prototype logits.

    An MLP without batch norm maps the class token to a bottleneck, which is
    L2-normalised and scored against ``out_channels`` prototypes by a
    bias-free linear layer whose rows are normalised to unit length (weight
    normalisation with the magnitude fixed to 1, as ``norm_last_layer=True``
    in DINO). The teacher keeps an EMA copy of this module.

    Args:
        in_channels (int): Channels of the class token. Defaults to 192.
        hidden_channels (int): Width of the hidden MLP layers.
            Defaults to 2048.
        bottleneck_channels (int): Width of the normalised bottleneck.
            Defaults to 256.
        out_channels (int): Number of prototypes K. Defaults to 65536.
        num_layers (int): Number of MLP layers, at least 1. Defaults to 3.
        init_cfg (dict, optional): Initialisation config. Defaults to
            truncated normal (std 0.02) for linear layers with zero bias.
    """

    def __init__(self,
                 in_channels: int = 192,
                 hidden_channels: int = 2048,
                 bottleneck_channels: int = 256,
                 out_channels: int = 65536,
                 num_layers: int = 3,
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02,
                     bias=0.)) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_layers < 1:
            raise ValueError(f'num_layers must be >= 1, got {num_layers}')
        layers = []
        channels = in_channels
        for _ in range(num_layers - 1):
            layers += [nn.Linear(channels, hidden_channels), nn.GELU()]
            channels = hidden_channels
        layers.append(nn.Linear(channels, bottleneck_channels))
        self.mlp = nn.Sequential(*layers)
        # Direction of each prototype; its norm is divided out in forward.
        self.last_layer = nn.Linear(
            bottleneck_channels, out_channels, bias=False)
        self.out_channels = out_channels

    def forward(self, cls_token: torch.Tensor) -> torch.Tensor:
        """Project class tokens to prototype logits.

        Args:
            cls_token (Tensor): Shape (B, C).

        Returns:
            Tensor: Logits of shape (B, K), each in [-1, 1] (cosines).
        """
        bottleneck = F.normalize(self.mlp(cls_token), dim=-1, p=2)
        # Same as F.linear(bottleneck, F.normalize(weight)), without a
        # normalised copy of the (K, C) weight in forward and backward.
        return weight_normalized_linear(bottleneck, self.last_layer.weight)
