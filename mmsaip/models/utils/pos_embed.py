"""Position-embedding resampling for ViT inputs of other sizes."""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.utils import resize_pos_embed

POS_INTERP_MODES = ('2d', 'flat1d')


def resize_pos_embed_flat1d(pos_embed: torch.Tensor, num_patches: int,
                            num_extra_tokens: int = 1,
                            mode: str = 'bicubic') -> torch.Tensor:
    """Resample the flattened patch positions along the token axis.

    This reproduces the reference SAIP code, which treats the row-major
    patch sequence as a 1-D signal and resamples it to the new token count.
    Positions are then not geometrically meaningful for other grids; it is
    kept only for strict reproduction.

    Args:
        pos_embed (Tensor): Position embedding of shape (1, E + L, C), with
            E extra tokens first.
        num_patches (int): Number of patch tokens L' of the new input.
        num_extra_tokens (int): Number of leading extra tokens E.
            Defaults to 1.
        mode (str): Interpolation mode. 'bicubic' is run as a (1, L) image.
            Defaults to 'bicubic'.

    Returns:
        Tensor: Position embedding of shape (1, E + L', C).
    """
    extra_tokens = pos_embed[:, :num_extra_tokens]
    patch_pos = pos_embed[:, num_extra_tokens:]
    if patch_pos.shape[1] == num_patches:
        return pos_embed
    channels = patch_pos.shape[-1]
    # (1, L, C) -> (1, C, 1, L): a one-row image so bicubic is available.
    signal = patch_pos.transpose(1, 2).unsqueeze(2).float()
    resized = F.interpolate(
        signal, size=(1, num_patches), mode=mode, align_corners=False)
    resized = resized.squeeze(2).transpose(1, 2).to(pos_embed.dtype)
    assert resized.shape == (1, num_patches, channels)
    return torch.cat((extra_tokens, resized), dim=1)


def resize_pos_embed_to_grid(pos_embed: torch.Tensor,
                             src_grid: Tuple[int, int],
                             dst_grid: Tuple[int, int],
                             pos_interp: str = '2d',
                             num_extra_tokens: int = 1,
                             mode: str = 'bicubic') -> torch.Tensor:
    """Resize a position embedding from one patch grid to another.

    Args:
        pos_embed (Tensor): Shape (1, E + H_src * W_src, C).
        src_grid (tuple[int, int]): Source patch grid (H, W).
        dst_grid (tuple[int, int]): Target patch grid (H, W).
        pos_interp (str): '2d' resizes the (H, W) grid, which keeps
            positions geometrically meaningful; 'flat1d' resamples the
            flattened sequence as the reference code does.
            Defaults to '2d'.
        num_extra_tokens (int): Number of leading extra tokens E.
            Defaults to 1.
        mode (str): Interpolation mode. Defaults to 'bicubic'.

    Returns:
        Tensor: Shape (1, E + H_dst * W_dst, C).
    """
    if pos_interp not in POS_INTERP_MODES:
        raise ValueError(f'pos_interp must be one of {POS_INTERP_MODES}, '
                         f'got {pos_interp!r}')
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    if pos_interp == 'flat1d':
        return resize_pos_embed_flat1d(pos_embed, dst_grid[0] * dst_grid[1],
                                       num_extra_tokens, mode)
    return resize_pos_embed(pos_embed, tuple(src_grid), tuple(dst_grid),
                            mode, num_extra_tokens)
