"""ViT backbone with the extra outputs that SAIP pretraining reads."""
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.utils import build_norm_layer
from mmengine.logging import MMLogger
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.registry import MODELS

from ..utils.pos_embed import POS_INTERP_MODES, resize_pos_embed_to_grid


class AttentionMaps(NamedTuple):
    """Attention maps of one transformer block.

    Attributes:
        query_key (Tensor): softmax(Q K^T / sqrt(d)), shape (B, heads, L, L).
        value_value (Tensor): softmax(V V^T / sqrt(d)), the MiniLM-v2 value
            relation, shape (B, heads, L, L).
    """
    query_key: torch.Tensor
    value_value: torch.Tensor


class SAIPViTOutput(NamedTuple):
    """Tokens returned by :meth:`SAIPViT.forward_views`.

    Attributes:
        final_tokens (Tensor, optional): Output of the last block after the
            final norm, shape (B, 1 + L, C). None when the pass stopped at
            the tap layer.
        tap_tokens (Tensor): Output of block ``tap_index`` after
            ``inter_norm``, shape (B, 1 + L, C). Index 0 is the class token.
        attn_maps (AttentionMaps, optional): Maps of the last block, when
            requested.
        patch_resolution (tuple[int, int]): Patch grid (H, W) of the input.
    """
    final_tokens: Optional[torch.Tensor]
    tap_tokens: torch.Tensor
    attn_maps: Optional[AttentionMaps]
    patch_resolution: Tuple[int, int]


@MODELS.register_module()
class SAIPViT(VisionTransformer):
    """Vision Transformer used as the SAIP student and teacher.

    The parameters and their names are those of mmpretrain's
    :class:`VisionTransformer`, plus ``inter_norm``, so a pretrained
    backbone loads into a plain ``mmpretrain.VisionTransformer`` downstream
    once ``inter_norm`` is dropped. On top of the usual ``forward``, the
    pretraining path :meth:`forward_views` returns

    - the final-norm tokens, read by cross-scale matching (CSM);
    - the tokens after block ``tap_index`` through ``inter_norm`` (the
      "layer-7" features), read by cross-scale reconstruction (CSR) and
      cross-scale search (CSS);
    - the last block's query-key and value-value attention maps, which CSM
      distils from the teacher.

    Inputs of any size are accepted: the position embedding, learned on the
    ``img_size`` grid, is resized to the input's patch grid. ``pos_interp``
    applies to :meth:`forward_views`; the inherited ``forward`` keeps
    mmpretrain's behaviour and always resizes on the 2-D grid.

    Paper: `Scale-Aware Pre-Training for Human-Centric Visual Perception
    <https://arxiv.org/abs/2503.08201>`_.

    Args:
        arch (str | dict): ViT architecture, as in mmpretrain.
            Defaults to 'deit-tiny' (192 dims, 12 layers, 3 heads).
        img_size (int | tuple[int, int]): Pretraining input size (H, W), on
            whose patch grid the position embedding is learned.
            Defaults to (256, 128).
        patch_size (int): Patch size. Defaults to 16.
        tap_index (int): Index of the block whose output goes through
            ``inter_norm``. Defaults to 6 (the 7th block).
        pos_interp (str): How the position embedding is resized for inputs
            of other sizes: '2d' on the patch grid, or 'flat1d' along the
            flattened sequence as the reference code does. Defaults to '2d'.
        pos_embed_init (str): 'uniform' draws U[0, 1) as the reference code
            does; 'trunc_normal' uses std 0.02 as mmpretrain does.
            Defaults to 'uniform'.
        patch_cfg (dict): Extra arguments of the patch embedding. Defaults
            to ``dict(padding=0)``, so widths that are not multiples of the
            patch size are truncated by the strided convolution, as in the
            reference code, instead of zero-padded.
        **kwargs: Other arguments of mmpretrain's ``VisionTransformer``.
            ``interpolate_mode`` must be 'bicubic' or 'bilinear'.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'deit-tiny',
                 img_size: Union[int, Sequence[int]] = (256, 128),
                 patch_size: int = 16,
                 tap_index: int = 6,
                 pos_interp: str = '2d',
                 pos_embed_init: str = 'uniform',
                 patch_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if pos_interp not in POS_INTERP_MODES:
            raise ValueError(f'pos_interp must be one of {POS_INTERP_MODES},'
                             f' got {pos_interp!r}')
        interpolate_mode = kwargs.get('interpolate_mode', 'bicubic')
        if interpolate_mode not in ('bicubic', 'bilinear'):
            # Position resizing passes align_corners, which 'nearest' and
            # 'area' reject.
            raise ValueError("interpolate_mode must be 'bicubic' or "
                             f"'bilinear', got {interpolate_mode!r}")
        if pos_embed_init not in ('uniform', 'trunc_normal'):
            raise ValueError("pos_embed_init must be 'uniform' or "
                             f"'trunc_normal', got {pos_embed_init!r}")
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            patch_cfg=dict(padding=0) if patch_cfg is None else patch_cfg,
            norm_cfg=norm_cfg,
            init_cfg=init_cfg,
            **kwargs)
        if not 0 <= tap_index < self.num_layers:
            raise ValueError(f'tap_index must be in [0, {self.num_layers}), '
                             f'got {tap_index}')
        if not self.with_cls_token or not self.final_norm:
            raise ValueError('SAIPViT needs with_cls_token=True and '
                             'final_norm=True')
        self.tap_index = tap_index
        self.pos_interp = pos_interp
        self.pos_embed_init = pos_embed_init
        self.patch_size = patch_size
        self.inter_norm = build_norm_layer(norm_cfg, self.embed_dims)

    def init_weights(self) -> None:
        """Initialise as the reference SAIP code does.

        Linear layers and the flattened patch-embedding kernel use
        xavier-uniform with zero bias, norms (1, 0), the class token
        N(0, 0.02) and the position embedding as ``pos_embed_init`` selects.
        A ``Pretrained`` ``init_cfg`` loads weights instead.
        """
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            super().init_weights()
            return
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = self.patch_embed.projection
        # Xavier on the (C_out, C_in * P * P) view, as for a Linear layer.
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        if proj.bias is not None:
            nn.init.zeros_(proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        if self.pos_embed_init == 'uniform':
            nn.init.uniform_(self.pos_embed, 0.0, 1.0)
        else:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self._is_init = True

    def _prepare_pos_embed(self, state_dict: dict, prefix: str, *args,
                           **kwargs) -> None:
        """Resize a loaded position embedding with a square source grid.

        Embeddings of this backbone's own shape load unchanged, which covers
        resuming SAIP checkpoints. Others must come from a square grid, as
        in mmpretrain's hook. A non-square grid, such as SAIP's 16 x 8
        loaded into another ``img_size``, raises ``ValueError``: convert it
        with ``tools/convert_checkpoint.py`` first.
        """
        name = prefix + 'pos_embed'
        if name not in state_dict:
            return
        ckpt_pos_embed = state_dict[name]
        if ckpt_pos_embed.shape == self.pos_embed.shape:
            return
        num_patches = ckpt_pos_embed.shape[1] - self.num_extra_tokens
        side = int(round(num_patches**0.5))
        if side * side != num_patches:
            raise ValueError(
                f'Cannot infer the patch grid of {name} with shape '
                f'{tuple(ckpt_pos_embed.shape)}: it is not square. Convert '
                'the checkpoint with tools/convert_checkpoint.py, which '
                'resizes it for a given input size.')
        MMLogger.get_current_instance().info(
            f'Resize {name} from a {side}x{side} grid to '
            f'{self.patch_resolution}.')
        state_dict[name] = resize_pos_embed_to_grid(
            ckpt_pos_embed, (side, side), self.patch_resolution, '2d',
            self.num_extra_tokens, self.interpolate_mode)

    def pos_embed_for_grid(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Return the position embedding for a patch grid (H, W).

        Returns:
            Tensor: Shape (1, 1 + H * W, C).
        """
        return resize_pos_embed_to_grid(self.pos_embed, self.patch_resolution,
                                        grid, self.pos_interp,
                                        self.num_extra_tokens,
                                        self.interpolate_mode)

    def embed(self, images: torch.Tensor) -> Tuple[torch.Tensor,
                                                   Tuple[int, int]]:
        """Embed patches and add the class token and positions.

        Args:
            images (Tensor): Shape (B, C, H, W).

        Returns:
            tuple: Tokens of shape (B, 1 + L, C) and the patch grid (H, W).
        """
        patch_tokens, grid = self.patch_embed(images)  # (B, L, C)
        grid = tuple(grid)
        pos_embed = self.pos_embed_for_grid(grid)
        cls_token = self.cls_token.expand(patch_tokens.shape[0], -1, -1)
        tokens = torch.cat((cls_token, patch_tokens), dim=1) + pos_embed
        return self.drop_after_pos(tokens), grid

    def forward_views(self,
                      images: torch.Tensor,
                      stop_at_tap: bool = False,
                      return_attn: bool = False,
                      visible_ids: Optional[torch.Tensor] = None,
                      visible_padding: Optional[torch.Tensor] = None
                      ) -> SAIPViTOutput:
        """Encode a batch of views for pretraining.

        Args:
            images (Tensor): Shape (B, C, H, W).
            stop_at_tap (bool): Run only blocks 0 to ``tap_index``. Defaults
                to False.
            return_attn (bool): Return the last block's attention maps; the
                other blocks always use the fused attention kernel.
                Defaults to False.
            visible_ids (Tensor, optional): Indices of the patch tokens to
                keep, shape (B, N); the class token is always kept. Used for
                masked image modelling. Defaults to None (keep all).
            visible_padding (Tensor, optional): Bool (B, N), True where an
                entry of ``visible_ids`` is padding that no token may attend
                to. Defaults to None.

        Returns:
            SAIPViTOutput: The tokens and maps described there.
        """
        if return_attn and stop_at_tap:
            raise ValueError('return_attn needs the full depth; do not set '
                             'stop_at_tap with it')
        tokens, grid = self.embed(images)
        attn_mask = None
        if visible_ids is not None:
            cls_token, patch_tokens = tokens[:, :1], tokens[:, 1:]
            index = visible_ids.unsqueeze(-1).expand(-1, -1,
                                                     tokens.shape[-1])
            patch_tokens = torch.gather(patch_tokens, 1, index)  # (B, N, C)
            tokens = torch.cat((cls_token, patch_tokens), dim=1)
            if visible_padding is not None:
                keep = torch.cat((visible_padding.new_ones(
                    visible_padding.shape[0], 1), ~visible_padding), dim=1)
                # (B, 1, 1, 1 + N): True where a key may be attended to.
                attn_mask = keep[:, None, None, :]
        tokens = self.pre_norm(tokens)

        last = self.tap_index + 1 if stop_at_tap else self.num_layers
        tap_tokens = None
        attn_maps = None
        for index in range(last):
            need_maps = return_attn and index == self.num_layers - 1
            tokens, maps = encoder_layer_forward(self.layers[index], tokens,
                                                 attn_mask, need_maps)
            if maps is not None:
                attn_maps = maps
            if index == self.tap_index:
                tap_tokens = self.inter_norm(tokens)

        final_tokens = None if stop_at_tap else self.ln1(tokens)
        return SAIPViTOutput(final_tokens, tap_tokens, attn_maps, grid)


def gather_tokens(tokens: torch.Tensor,
                  token_ids: torch.Tensor) -> torch.Tensor:
    """Select tokens per sample.

    Args:
        tokens (Tensor): Shape (B, L, C).
        token_ids (Tensor): Long (B, M), indices into L.

    Returns:
        Tensor: Shape (B, M, C).
    """
    index = token_ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
    return torch.gather(tokens, 1, index)


def encoder_layer_forward(
        layer: TransformerEncoderLayer,
        tokens: torch.Tensor,
        attn_mask: Optional[torch.Tensor] = None,
        need_maps: bool = False,
        query_ids: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, Optional[AttentionMaps]]:
    """Run one mmpretrain encoder layer, with optional mask and maps.

    The maths equals ``TransformerEncoderLayer.forward``. This version adds
    a key mask for padded tokens. On request it computes the attention
    explicitly, so that the query-key and value-value maps can be returned.

    With ``query_ids``, only the listed tokens are updated: keys and values
    come from all L tokens, but the queries, the attention output, the
    projection and the FFN are computed for the M listed tokens alone. Each
    output token depends only on its own query and on all keys and values,
    so these M outputs equal the same rows of the full output.

    Args:
        layer (TransformerEncoderLayer): The layer whose weights are used.
        tokens (Tensor): Shape (B, L, C).
        attn_mask (Tensor, optional): Bool, broadcastable to (B, heads, L, L),
            or to (B, heads, M, L) with ``query_ids``, True where attention
            is allowed. Defaults to None.
        need_maps (bool): Return the attention maps. Defaults to False.
        query_ids (Tensor, optional): Long (B, M), the tokens whose outputs
            are needed. Cannot be combined with ``need_maps``. Defaults to
            None (all tokens).

    Returns:
        tuple: Output tokens, (B, L, C) or (B, M, C) with ``query_ids``, and
        the maps, or None.
    """
    if need_maps and query_ids is not None:
        raise ValueError('need_maps returns (B, heads, L, L) maps and needs '
                         'all queries; do not pass query_ids with it')
    attn = layer.attn
    batch, length, channels = tokens.shape
    num_heads, head_dims = attn.num_heads, attn.head_dims
    hidden = layer.ln1(tokens)
    if query_ids is None:
        # (B, L, 3C) -> (3, B, heads, L, C / heads)
        qkv = attn.qkv(hidden).reshape(batch, length, 3, num_heads,
                                       head_dims).permute(2, 0, 3, 1, 4)
        # unbind's backward stacks the three gradients; indexing would
        # zero-fill a (3, B, heads, L, C / heads) buffer for each of them.
        query, key, value = qkv.unbind(0)
    else:
        # The qkv weight stacks the query, key and value rows, C each.
        weight, bias = attn.qkv.weight, attn.qkv.bias
        query_bias = None if bias is None else bias[:channels]
        key_value_bias = None if bias is None else bias[channels:]
        tokens = gather_tokens(tokens, query_ids)  # (B, M, C)
        num_queries = tokens.shape[1]
        query = F.linear(
            gather_tokens(hidden, query_ids), weight[:channels], query_bias)
        # (B, M, C) -> (B, heads, M, C / heads)
        query = query.reshape(batch, num_queries, num_heads,
                              head_dims).transpose(1, 2)
        # (B, L, 2C) -> (2, B, heads, L, C / heads)
        key_value = F.linear(hidden, weight[channels:],
                             key_value_bias).reshape(batch, length, 2,
                                                     num_heads, head_dims)
        key, value = key_value.permute(2, 0, 3, 1, 4).unbind(0)
    maps = None
    if need_maps:
        scale = head_dims**-0.5
        qk_logits = (query @ key.transpose(-2, -1)) * scale
        vv_logits = (value @ value.transpose(-2, -1)) * scale
        if attn_mask is not None:
            qk_logits = qk_logits.masked_fill(~attn_mask, float('-inf'))
            vv_logits = vv_logits.masked_fill(~attn_mask, float('-inf'))
        query_key = qk_logits.softmax(dim=-1)  # (B, heads, L, L)
        value_value = vv_logits.softmax(dim=-1)
        maps = AttentionMaps(query_key, value_value)
        attended = F.dropout(
            query_key, p=attn.attn_drop if layer.training else 0.) @ value
    else:
        attended = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=attn.attn_drop if layer.training else 0.)
    # (B, heads, M, C / heads) -> (B, M, C), M = L without query_ids
    attended = attended.transpose(1, 2).reshape(batch, -1, channels)
    out = attn.out_drop(attn.gamma1(attn.proj_drop(attn.proj(attended))))
    tokens = tokens + out
    tokens = layer.ffn(layer.ln2(tokens), identity=tokens)
    return tokens, maps
