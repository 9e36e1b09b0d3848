"""Anchor-grid masking of cross-scale reconstruction (CSR)."""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

VISIBLE_COUNT_MODES = ('from_mask', 'legacy_fixed')


class AnchorMask(NamedTuple):
    """Masking of one batch of rescaled views.

    Attributes:
        hidden (Tensor): Bool (B, H * W) on the view's patch grid, True where
            a patch is hidden and reconstructed (the loss mask).
        visible_ids (Tensor): Long (B, N), indices of the patches given to
            the encoder, in row-major order of the grid.
        visible_padding (Tensor, optional): Bool (B, N), True where an entry
            of ``visible_ids`` is padding, not a visible patch. None when
            every entry is used.
    """
    hidden: torch.Tensor
    visible_ids: torch.Tensor
    visible_padding: Optional[torch.Tensor]


def anchor_grid_mask(batch_size: int,
                     anchor_grid: Tuple[int, int],
                     view_grid: Tuple[int, int],
                     mask_ratio: float = 0.75,
                     visible_count: str = 'from_mask',
                     device: Optional[torch.device] = None) -> AnchorMask:
    """Draw a random mask on the anchor grid and map it to the view's grid.

    The keep/hide decision is drawn on the anchor grid (the patch grid of
    the base-scale view, 16 x 8 for 256 x 128), keeping
    ``int(H_a * W_a * (1 - mask_ratio))`` cells per sample, then resized
    with nearest-neighbour to the patch grid of the rescaled view. The
    hidden patches therefore cover the same image areas as they would at
    base scale.

    After resizing, the number of visible patches varies per sample.
    ``visible_count='from_mask'`` gives the encoder exactly the visible
    patches, padding the shorter rows. ``'legacy_fixed'`` reproduces the
    reference code: every sample passes ``int(H * W * (1 - mask_ratio))``
    patches, visible ones first, so some visible patches are dropped and,
    when fewer are visible, some hidden patches are shown to the encoder
    although the loss still counts them.

    Args:
        batch_size (int): B.
        anchor_grid (tuple[int, int]): Anchor patch grid (H_a, W_a).
        view_grid (tuple[int, int]): Patch grid (H, W) of the rescaled view.
        mask_ratio (float): Fraction of anchor cells hidden. Defaults to
            0.75.
        visible_count (str): 'from_mask' or 'legacy_fixed'. Defaults to
            'from_mask'.
        device (torch.device, optional): Device of the outputs.

    Returns:
        AnchorMask: The hidden map and the encoder's token indices.
    """
    if visible_count not in VISIBLE_COUNT_MODES:
        raise ValueError(f'visible_count must be one of '
                         f'{VISIBLE_COUNT_MODES}, got {visible_count!r}')
    if not 0. < mask_ratio < 1.:
        raise ValueError(f'mask_ratio must be in (0, 1), got {mask_ratio}')
    num_anchors = anchor_grid[0] * anchor_grid[1]
    num_keep = int(num_anchors * (1 - mask_ratio))
    if num_keep < 1:
        raise ValueError(f'mask_ratio {mask_ratio} keeps no cell of the '
                         f'{anchor_grid} anchor grid')

    # Keep the num_keep cells with the smallest noise: (B, H_a * W_a).
    noise = torch.rand(batch_size, num_anchors, device=device)
    keep_ids = noise.argsort(dim=1)[:, :num_keep]
    keep_anchor = torch.zeros(
        batch_size, num_anchors, dtype=torch.bool, device=device)
    keep_anchor.scatter_(1, keep_ids, True)

    # (B, 1, H_a, W_a) -> (B, 1, H, W) -> (B, H * W)
    keep = F.interpolate(
        keep_anchor.view(batch_size, 1, *anchor_grid).float(),
        size=tuple(view_grid),
        mode='nearest').flatten(1).bool()
    hidden = ~keep

    # Visible patches first, in random order within each group.
    sort_key = hidden.float() * 2. + torch.rand(
        hidden.shape, device=device)
    order = sort_key.argsort(dim=1)
    num_patches = hidden.shape[1]
    if visible_count == 'legacy_fixed':
        num_visible = int(num_patches * (1 - mask_ratio))
        return AnchorMask(hidden, order[:, :num_visible], None)

    counts = keep.sum(dim=1)  # (B,)
    num_visible = int(counts.max())
    visible_ids = order[:, :num_visible]
    padding = torch.arange(
        num_visible, device=device)[None, :] >= counts[:, None]
    return AnchorMask(hidden, visible_ids,
                      padding if bool(padding.any()) else None)
