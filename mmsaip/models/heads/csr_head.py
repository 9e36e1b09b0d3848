"""Cross-scale reconstruction (CSR) head: an MAE-style decoder and loss."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.utils import build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.registry import MODELS

from ..backbones.saip_vit import encoder_layer_forward, gather_tokens
from ..utils.pos_embed import (POS_INTERP_MODES, resize_pos_embed_flat1d,
                               resize_pos_embed_to_grid)


@MODELS.register_module()
class CSRHead(BaseModule):
    """Reconstruct hidden patches of a rescaled view.

    The decoder receives, in this order: the class token of the masked view,
    the class token of the *other* global view at base scale (a summary of
    the same person under another augmentation and scale), and one slot per
    patch of the masked view, filled with the embedded visible tokens or a
    learned mask token. It predicts the pixels of every patch, or only of
    the patches listed in ``pred_ids``; the loss is the MSE to per-patch
    normalised target pixels, averaged over the hidden patches only.

    Only hidden patches count in the loss, so training passes
    ``pred_ids=hidden_patch_ids(hidden)``: the last decoder block, the final
    norm and the prediction layer then run for those patches alone, which
    gives the same loss as predicting every patch.

    Args:
        in_channels (int): Channels of the encoder tokens. Defaults to 192.
        embed_dims (int): Decoder width. Defaults to 512.
        num_layers (int): Decoder blocks. Defaults to 8.
        num_heads (int): Decoder attention heads. Defaults to 16.
        mlp_ratio (int): FFN width / embed_dims. Defaults to 4.
        patch_size (int): Patch size P. Defaults to 16.
        in_pixels (int): Image channels C reconstructed per patch.
            Defaults to 3.
        anchor_grid (tuple[int, int]): Patch grid (H, W) on which the
            decoder position embedding is learned. Defaults to (16, 8).
        pos_interp (str): '2d' or 'flat1d', see
            :func:`resize_pos_embed_to_grid`. In '2d' mode the reference
            class token gets the class-token position; in 'flat1d' mode it
            takes the first resampled patch position, as the reference code
            does. Defaults to '2d'.
        norm_pix (bool): Normalise each target patch to zero mean and unit
            variance. Defaults to True.
        loss_weight (float): Weight of ``loss_csr``. Defaults to 1.0.
        norm_cfg (dict): Norm layers. Defaults to LN with eps 1e-6.
        init_cfg (dict, optional): Initialisation config. Defaults to
            xavier-uniform for linear layers.
    """

    def __init__(self,
                 in_channels: int = 192,
                 embed_dims: int = 512,
                 num_layers: int = 8,
                 num_heads: int = 16,
                 mlp_ratio: int = 4,
                 patch_size: int = 16,
                 in_pixels: int = 3,
                 anchor_grid: Tuple[int, int] = (16, 8),
                 pos_interp: str = '2d',
                 norm_pix: bool = True,
                 loss_weight: float = 1.0,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = dict(
                     type='Xavier', layer='Linear', distribution='uniform',
                     bias=0.)) -> None:
        super().__init__(init_cfg=init_cfg)
        if pos_interp not in POS_INTERP_MODES:
            raise ValueError(f'pos_interp must be one of {POS_INTERP_MODES},'
                             f' got {pos_interp!r}')
        self.patch_size = patch_size
        self.in_pixels = in_pixels
        self.anchor_grid = tuple(anchor_grid)
        self.pos_interp = pos_interp
        self.norm_pix = norm_pix
        self.loss_weight = loss_weight

        self.decoder_embed = nn.Linear(in_channels, embed_dims)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        num_anchors = self.anchor_grid[0] * self.anchor_grid[1]
        # Learned, starting from U[0, 1) as in the reference code.
        self.decoder_pos_embed = nn.Parameter(
            torch.rand(1, 1 + num_anchors, embed_dims))
        self.decoder_layers = nn.ModuleList([
            TransformerEncoderLayer(
                embed_dims=embed_dims,
                num_heads=num_heads,
                feedforward_channels=embed_dims * mlp_ratio,
                qkv_bias=True,
                norm_cfg=norm_cfg) for _ in range(num_layers)
        ])
        self.decoder_norm = build_norm_layer(norm_cfg, embed_dims)
        self.decoder_pred = nn.Linear(embed_dims,
                                      patch_size**2 * in_pixels)

    def init_weights(self) -> None:
        """Initialise linear layers by ``init_cfg`` and the mask token."""
        super().init_weights()
        nn.init.normal_(self.mask_token, std=0.02)

    def decoder_positions(
        self, grid: Tuple[int, int]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the positions of the masked class token, the reference
        class token and the patch slots, each of shape (1, n, D)."""
        if self.pos_interp == 'flat1d':
            num_slots = grid[0] * grid[1] + 1
            pos = resize_pos_embed_flat1d(self.decoder_pos_embed, num_slots)
            return pos[:, :1], pos[:, 1:2], pos[:, 2:]
        pos = resize_pos_embed_to_grid(self.decoder_pos_embed,
                                       self.anchor_grid, grid, '2d')
        return pos[:, :1], pos[:, :1], pos[:, 1:]

    def forward(self,
                masked_tokens: torch.Tensor,
                reference_cls: torch.Tensor,
                visible_ids: torch.Tensor,
                grid: Tuple[int, int],
                visible_padding: Optional[torch.Tensor] = None,
                pred_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predict the pixels of the patches of the masked view.

        Args:
            masked_tokens (Tensor): Encoder output of the masked view,
                shape (B, 1 + N, C_in), class token first.
            reference_cls (Tensor): Class token of the reference view,
                shape (B, C_in).
            visible_ids (Tensor): Long (B, N), the patch index of each
                visible token.
            grid (tuple[int, int]): Patch grid (H, W) of the masked view.
            visible_padding (Tensor, optional): Bool (B, N), True for
                padding entries, which are replaced by the mask token.
                Their ``visible_ids`` must name hidden patches, as
                :func:`anchor_grid_mask` produces: a padding id that
                repeats a visible id would overwrite that visible slot.
            pred_ids (Tensor, optional): Long (B, M), the patches to
                predict, e.g. from :meth:`hidden_patch_ids`. Defaults to
                None (every patch, in grid order).

        Returns:
            Tensor: Predicted pixels, shape (B, H * W, P * P * C), or
            (B, M, P * P * C) in the order of ``pred_ids``.
        """
        batch = masked_tokens.shape[0]
        num_patches = grid[0] * grid[1]
        tokens = self.decoder_embed(masked_tokens)  # (B, 1 + N, D)
        cls_token, visible = tokens[:, :1], tokens[:, 1:]
        mask_token = self.mask_token.to(visible.dtype)
        if visible_padding is not None:
            visible = torch.where(visible_padding[..., None], mask_token,
                                  visible)
        # (B, H * W, D): mask tokens, with visible tokens in their slots.
        slots = mask_token.expand(batch, num_patches, -1).clone()
        index = visible_ids[..., None].expand(-1, -1, slots.shape[-1])
        slots = slots.scatter(1, index, visible)
        reference = self.decoder_embed(reference_cls)[:, None]  # (B, 1, D)

        cls_pos, reference_pos, slot_pos = self.decoder_positions(grid)
        sequence = torch.cat(
            (cls_token + cls_pos, reference + reference_pos,
             slots + slot_pos),
            dim=1)  # (B, 2 + H * W, D)
        if pred_ids is None:
            for layer in self.decoder_layers:
                sequence, _ = encoder_layer_forward(layer, sequence)
            return self.decoder_pred(self.decoder_norm(sequence[:, 2:]))

        # Slot n of the grid is token n + 2, after the two class tokens.
        query_ids = pred_ids + 2
        for layer in self.decoder_layers[:-1]:
            sequence, _ = encoder_layer_forward(layer, sequence)
        if len(self.decoder_layers) > 0:
            # (B, 2 + H * W, D) -> (B, M, D)
            sequence, _ = encoder_layer_forward(
                self.decoder_layers[-1], sequence, query_ids=query_ids)
        else:
            sequence = gather_tokens(sequence, query_ids)
        return self.decoder_pred(self.decoder_norm(sequence))

    @staticmethod
    def hidden_patch_ids(hidden: torch.Tensor) -> torch.Tensor:
        """List the hidden patches of each sample, for ``pred_ids``.

        Args:
            hidden (Tensor): Bool (B, H * W), True for hidden patches.

        Returns:
            Tensor: Long (B, M), M the largest hidden count in the batch (at
            least 1): each row lists its hidden patches in grid order, then
            visible patches as padding. The loss gives padding entries
            weight 0, because they are not hidden.
        """
        num_ids = max(int(hidden.sum(dim=1).max()), 1)
        # Stable sort on 0 (hidden) / 1 (visible): hidden first, in order.
        order = (~hidden).int().argsort(dim=1, stable=True)
        return order[:, :num_ids]

    def patchify(self, images: torch.Tensor,
                 grid: Tuple[int, int]) -> torch.Tensor:
        """Cut images into patches.

        Args:
            images (Tensor): Shape (B, C, H_img, W_img); pixels outside the
                patch grid (a partial last row or column) are dropped.
            grid (tuple[int, int]): Patch grid (H, W).

        Returns:
            Tensor: Shape (B, H * W, P * P * C), each patch row-major over
            (P, P, C).
        """
        size = self.patch_size
        height, width = grid
        images = images[:, :, :height * size, :width * size]
        batch, channels = images.shape[:2]
        patches = images.reshape(batch, channels, height, size, width, size)
        # (B, C, H, P, W, P) -> (B, H, W, P, P, C)
        patches = patches.permute(0, 2, 4, 3, 5, 1)
        return patches.reshape(batch, height * width, size * size * channels)

    def loss(self,
             pred: torch.Tensor,
             target_images: torch.Tensor,
             hidden: torch.Tensor,
             grid: Tuple[int, int],
             pred_ids: Optional[torch.Tensor] = None
             ) -> Dict[str, torch.Tensor]:
        """Compute ``loss_csr`` over the hidden patches.

        Args:
            pred (Tensor): Shape (B, H * W, P * P * C), or (B, M, P * P * C)
                with ``pred_ids``.
            target_images (Tensor): Normalised masked view before masking,
                shape (B, C, H_img, W_img).
            hidden (Tensor): Bool (B, H * W), True for hidden patches.
            grid (tuple[int, int]): Patch grid (H, W).
            pred_ids (Tensor, optional): Long (B, M), the patch of each row
                of ``pred``, as passed to :meth:`forward`. Defaults to None
                (``pred`` covers every patch in grid order).

        Returns:
            dict[str, Tensor]: ``loss_csr``.
        """
        target = self.patchify(target_images, grid).float()
        weight = hidden.float()
        if pred_ids is not None:
            # (B, H * W, P * P * C) -> (B, M, P * P * C)
            target = gather_tokens(target, pred_ids)
            weight = weight.gather(1, pred_ids)
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6)**.5
        per_patch = ((pred.float() - target)**2).mean(dim=-1)  # (B, M)
        loss = (per_patch * weight).sum() / weight.sum().clamp_min(1.)
        return dict(loss_csr=self.loss_weight * loss)
