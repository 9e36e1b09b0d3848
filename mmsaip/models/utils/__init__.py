from .anchor_mask import AnchorMask, anchor_grid_mask
from .cosine_momentum_ema import CosineMomentumEMA
from .pos_embed import resize_pos_embed_flat1d, resize_pos_embed_to_grid
from .transfer_pos_embed import adapt_pos_embed, resolve_patch_grid
from .weight_normalized_linear import weight_normalized_linear

__all__ = [
    'AnchorMask', 'anchor_grid_mask', 'CosineMomentumEMA',
    'resize_pos_embed_flat1d', 'resize_pos_embed_to_grid', 'adapt_pos_embed',
    'resolve_patch_grid', 'weight_normalized_linear'
]
