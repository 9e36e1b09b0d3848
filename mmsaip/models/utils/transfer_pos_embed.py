"""Position-embedding adaptation for loading a pretrained ViT on new grids.

A downstream model keeps one position per patch of its own input grid. A
SAIP backbone learned on the 16 x 8 grid of 256 x 128 crops is therefore
resized, for example to 16 x 12 for 256 x 192 pose crops.

Alignment: the resize is bilinear with ``align_corners=False``, so the
centre of each target cell samples the source at the same relative image
position (centres map to centres). A position embedding that is a linear
function of the normalised cell centre, ((i + 0.5) / H, (j + 0.5) / W),
therefore stays that linear function on the new grid. The exceptions are
target cells whose centre lies outside the outermost source centres: PyTorch
clamps there and repeats the border value. Bicubic resizing (mmpretrain's
default) does not keep a linear ramp even in the interior, because PyTorch's
cubic kernel (a = -0.75) does not reproduce linear functions.
"""
from typing import Optional, Sequence, Tuple

import torch

from .pos_embed import resize_pos_embed_to_grid

# Interpolation used when a SAIP backbone is moved to a new patch grid.
TRANSFER_INTERPOLATE_MODE = 'bilinear'


def resolve_patch_grid(num_patches: int,
                       grid_hint: Optional[Sequence[int]] = None
                       ) -> Tuple[int, int]:
    """Find the patch grid (H, W) that a flattened position embedding has.

    Args:
        num_patches (int): Number of patch positions L.
        grid_hint (Sequence[int], optional): The expected grid (H, W), used
            when H * W equals ``num_patches``. Defaults to None.

    Returns:
        tuple[int, int]: ``grid_hint`` when it fits, else the square grid.

    Raises:
        ValueError: If neither the hint nor a square grid has ``num_patches``
            cells.
    """
    if grid_hint is not None:
        hint = (int(grid_hint[0]), int(grid_hint[1]))
        if hint[0] * hint[1] == num_patches:
            return hint
    side = int(round(num_patches**0.5))
    if side * side == num_patches:
        return side, side
    raise ValueError(
        f'Cannot infer the patch grid of a position embedding with '
        f'{num_patches} patch positions: it is not {grid_hint} and not '
        'square. Convert the checkpoint with tools/convert_checkpoint.py, '
        "which records the grid in meta['patch_grid'], or set the "
        "backbone's pretrain_img_size to the pretraining input size.")


def adapt_pos_embed(pos_embed: torch.Tensor,
                    src_grid: Sequence[int],
                    dst_grid: Sequence[int],
                    src_extra_tokens: int = 1,
                    dst_extra_tokens: int = 1,
                    mode: str = TRANSFER_INTERPOLATE_MODE) -> torch.Tensor:
    """Move a position embedding to another patch grid and token layout.

    The extra-token positions (the class token) are copied unchanged, or
    dropped when the target has none. Patch positions are resized on the 2-D
    grid; see the module docstring for the alignment.

    Args:
        pos_embed (Tensor): Shape (1, E_src + H_src * W_src, C).
        src_grid (Sequence[int]): Source patch grid (H_src, W_src).
        dst_grid (Sequence[int]): Target patch grid (H_dst, W_dst).
        src_extra_tokens (int): Leading extra positions E_src in
            ``pos_embed``. Defaults to 1.
        dst_extra_tokens (int): Extra positions E_dst to keep, 0 or
            ``src_extra_tokens``. Defaults to 1.
        mode (str): Interpolation mode of ``F.interpolate``.
            Defaults to 'bilinear'.

    Returns:
        Tensor: Shape (1, E_dst + H_dst * W_dst, C).

    Raises:
        ValueError: If the shape does not match ``src_grid``, or the target
            requests extra positions that the source lacks.
    """
    src_grid = (int(src_grid[0]), int(src_grid[1]))
    dst_grid = (int(dst_grid[0]), int(dst_grid[1]))
    expected = src_extra_tokens + src_grid[0] * src_grid[1]
    if pos_embed.dim() != 3 or pos_embed.shape[1] != expected:
        raise ValueError(
            f'pos_embed of shape {tuple(pos_embed.shape)} does not fit a '
            f'{src_grid[0]}x{src_grid[1]} grid with {src_extra_tokens} extra '
            f'token(s): expected (1, {expected}, C).')
    if dst_extra_tokens not in (0, src_extra_tokens):
        raise ValueError(
            f'dst_extra_tokens must be 0 or {src_extra_tokens} (the extra '
            f'positions in the source), got {dst_extra_tokens}. A checkpoint '
            'exported without the class token cannot provide its position.')
    # (1, E_src + L, C) -> (1, E_dst + L, C): drop the class position.
    pos_embed = pos_embed[:, src_extra_tokens - dst_extra_tokens:]
    return resize_pos_embed_to_grid(pos_embed, src_grid, dst_grid, '2d',
                                    dst_extra_tokens, mode)
