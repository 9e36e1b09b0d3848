"""Cross-scale search (CSS) head: find a person in a multi-person canvas."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.registry import MODELS

from ..backbones.saip_vit import encoder_layer_forward


@MODELS.register_module()
class CSSHead(BaseModule):
    """Predict where the query person was pasted into the canvas.

    The query tokens go through a small transformer; its class token then
    cross-attends to the canvas tokens and becomes a dynamic kernel. A
    convolutional mask branch turns the canvas feature map into per-position
    features, and the kernel's dot product with them gives one logit per
    canvas patch. The loss is binary cross-entropy with the pasted region,
    averaged over all positions.

    The canvas features come from the teacher without gradient, so the
    student backbone learns only through the query tokens. The mask
    features depend only on the canvas, so :meth:`mask_features` runs once
    and serves every query of the batch.

    Args:
        in_channels (int): Channels of the backbone tokens. Defaults to 192.
        embed_dims (int): Width of the query path and mask features.
            Defaults to 512.
        num_query_layers (int): Self-attention blocks on the query tokens.
            Defaults to 2.
        num_heads (int): Attention heads. Defaults to 16.
        mlp_ratio (int): FFN width / embed_dims. Defaults to 4.
        num_mask_convs (int): 3x3 convolutions in the mask branch after the
            1x1 input projection. Defaults to 3.
        loss_weight_inst (float): Weight of the instance search loss.
            Defaults to 1.0.
        loss_weight_roi (float): Weight of the region search loss.
            Defaults to 1.0.
        norm_cfg (dict): Norm layers. Defaults to LN with eps 1e-6.
        init_cfg (dict, optional): Initialisation config. Defaults to
            xavier-uniform for linear layers.
    """

    def __init__(self,
                 in_channels: int = 192,
                 embed_dims: int = 512,
                 num_query_layers: int = 2,
                 num_heads: int = 16,
                 mlp_ratio: int = 4,
                 num_mask_convs: int = 3,
                 loss_weight_inst: float = 1.0,
                 loss_weight_roi: float = 1.0,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = dict(
                     type='Xavier', layer='Linear', distribution='uniform',
                     bias=0.)) -> None:
        super().__init__(init_cfg=init_cfg)
        self.loss_weight_inst = loss_weight_inst
        self.loss_weight_roi = loss_weight_roi

        # Query path.
        self.query_embed = nn.Linear(in_channels, embed_dims)
        self.query_layers = nn.ModuleList([
            TransformerEncoderLayer(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=embed_dims * mlp_ratio,
                qkv_bias=True,
                norm_cfg=norm_cfg) for _ in range(num_query_layers)
        ])
        self.canvas_embed = nn.Linear(in_channels, embed_dims)
        self.canvas_norm = build_norm_layer(norm_cfg, embed_dims)
        self.cross_norm = build_norm_layer(norm_cfg, embed_dims)
        self.cross_attn = nn.MultiheadAttention(
            embed_dims, num_heads, batch_first=True)
        self.cross_ffn_norm = build_norm_layer(norm_cfg, embed_dims)
        self.cross_ffn = nn.Sequential(
            nn.Linear(embed_dims, embed_dims * mlp_ratio), nn.GELU(),
            nn.Linear(embed_dims * mlp_ratio, embed_dims))
        self.kernel_norm = build_norm_layer(norm_cfg, embed_dims)
        self.kernel_proj = nn.Linear(embed_dims, embed_dims)

        # Mask-feature path on the (B, C, H, W) canvas map.
        convs = [nn.Conv2d(in_channels, embed_dims, 1), nn.GELU()]
        for _ in range(num_mask_convs):
            convs += [
                nn.Conv2d(embed_dims, embed_dims, 3, padding=1),
                nn.GELU()
            ]
        self.mask_convs = nn.Sequential(*convs)

    def mask_features(self, canvas_tokens: torch.Tensor,
                      grid: Tuple[int, int]) -> torch.Tensor:
        """Compute the per-position features of the canvas.

        Args:
            canvas_tokens (Tensor): Canvas patch tokens without the class
                token, shape (B, H * W, C_in).
            grid (tuple[int, int]): Canvas patch grid (H, W).

        Returns:
            Tensor: Shape (B, D, H, W).
        """
        batch, _, channels = canvas_tokens.shape
        feature_map = canvas_tokens.transpose(1, 2).reshape(
            batch, channels, *grid)
        return self.mask_convs(feature_map)

    def query_kernel(self, query_tokens: torch.Tensor,
                     canvas_tokens: torch.Tensor) -> torch.Tensor:
        """Turn query tokens into a dynamic kernel.

        Args:
            query_tokens (Tensor): Shape (B, 1 + L, C_in), class token first.
            canvas_tokens (Tensor): Canvas patch tokens, (B, H * W, C_in).

        Returns:
            Tensor: Kernel of shape (B, D).
        """
        query = self.query_embed(query_tokens)
        # Only the class token is read after the last block, so that block
        # updates it alone, attending to all tokens.
        cls_ids = query.new_zeros((query.shape[0], 1), dtype=torch.long)
        last = len(self.query_layers) - 1
        for index, layer in enumerate(self.query_layers):
            query, _ = encoder_layer_forward(
                layer, query, query_ids=cls_ids if index == last else None)
        query = query[:, :1]  # (B, 1, D): the class token only.
        memory = self.canvas_norm(self.canvas_embed(canvas_tokens))
        attended, _ = self.cross_attn(
            self.cross_norm(query), memory, memory, need_weights=False)
        query = query + attended
        query = query + self.cross_ffn(self.cross_ffn_norm(query))
        return self.kernel_proj(self.kernel_norm(query[:, 0]))

    def forward(self, query_tokens: torch.Tensor,
                canvas_tokens: torch.Tensor,
                mask_features: torch.Tensor) -> torch.Tensor:
        """Score every canvas position for one query per sample.

        Args:
            query_tokens (Tensor): Shape (B, 1 + L, C_in).
            canvas_tokens (Tensor): Shape (B, H * W, C_in).
            mask_features (Tensor): From :meth:`mask_features`,
                shape (B, D, H, W).

        Returns:
            Tensor: Logits of shape (B, H * W).
        """
        kernel = self.query_kernel(query_tokens, canvas_tokens)
        # (B, D) x (B, D, H * W) -> (B, H * W)
        return torch.einsum('bd,bdn->bn', kernel.float(),
                            mask_features.flatten(2).float())

    def loss(self, inst_logits: torch.Tensor, roi_logits: torch.Tensor,
             inst_target: torch.Tensor,
             roi_target: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Compute the two search losses and the mask IoU diagnostics.

        Args:
            inst_logits (Tensor): Instance search logits, shape (B, H * W).
            roi_logits (Tensor): Region search logits, shape (B, H * W).
            inst_target (Tensor): Bool (B, H * W), True where the instance
                was pasted.
            roi_target (Tensor): Bool (B, H * W), True where the region was
                pasted.

        Returns:
            dict[str, Tensor]: ``loss_css_inst``, ``loss_css_roi`` and the
            detached ``css_inst_iou`` and ``css_roi_iou`` of the predicted
            masks (logit > 0) against the targets.
        """
        losses = dict()
        for name, logits, target, weight in (
            ('inst', inst_logits, inst_target, self.loss_weight_inst),
            ('roi', roi_logits, roi_target, self.loss_weight_roi),
        ):
            bce = F.binary_cross_entropy_with_logits(logits.float(),
                                                     target.float())
            losses[f'loss_css_{name}'] = weight * bce
            losses[f'css_{name}_iou'] = mask_iou(logits.detach() > 0, target)
        return losses


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the mean IoU of bool masks of shape (B, N); empty unions
    count as IoU 1."""
    intersection = (pred & target).sum(dim=1).float()
    union = (pred | target).sum(dim=1).float()
    iou = torch.where(union > 0, intersection / union.clamp_min(1.),
                      torch.ones_like(union))
    return iou.mean()
