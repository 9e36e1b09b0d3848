import pytest
import torch

from mmsaip.models.utils import adapt_pos_embed, resolve_patch_grid

SRC_GRID = (16, 8)
CLS_VALUE = (7.0, -3.0, 0.5)


def ramp_pos_embed(grid, with_cls: bool = True) -> torch.Tensor:
    """Positions that are linear in the normalised cell centre.

    Channel 0 is y = (i + 0.5) / H, channel 1 is x = (j + 0.5) / W and
    channel 2 is 2y - 3x + 1, so both axes and a mix are checked.
    """
    height, width = grid
    y = ((torch.arange(height) + 0.5) / height)[:, None].expand(height, width)
    x = ((torch.arange(width) + 0.5) / width)[None, :].expand(height, width)
    patches = torch.stack((y, x, 2 * y - 3 * x + 1), dim=-1)
    patches = patches.reshape(1, height * width, 3)  # row-major, as a ViT
    if not with_cls:
        return patches
    return torch.cat((torch.tensor(CLS_VALUE).view(1, 1, 3), patches), dim=1)


def patch_grid_of(pos_embed: torch.Tensor, grid, extra: int) -> torch.Tensor:
    return pos_embed[0, extra:].reshape(grid[0], grid[1], -1)


@pytest.mark.parametrize('dst_grid', [(16, 12), (32, 16)])
def test_ramp_kept_in_interior(dst_grid):
    resized = adapt_pos_embed(ramp_pos_embed(SRC_GRID), SRC_GRID, dst_grid)

    assert resized.shape == (1, 1 + dst_grid[0] * dst_grid[1], 3)
    got = patch_grid_of(resized, dst_grid, 1)
    expected = patch_grid_of(ramp_pos_embed(dst_grid), dst_grid, 1)
    # Interior: every cell whose centre lies between the outermost source
    # centres. On an axis that keeps its size, that is every cell.
    rows = slice(None) if dst_grid[0] == SRC_GRID[0] else slice(1, -1)
    cols = slice(None) if dst_grid[1] == SRC_GRID[1] else slice(1, -1)
    torch.testing.assert_close(got[rows, cols], expected[rows, cols])


def test_ramp_border_repeats_source_edge():
    dst_grid = (16, 12)
    resized = adapt_pos_embed(ramp_pos_embed(SRC_GRID), SRC_GRID, dst_grid)

    got = patch_grid_of(resized, dst_grid, 1)
    source = patch_grid_of(ramp_pos_embed(SRC_GRID), SRC_GRID, 1)
    # Outside the outermost source centres, PyTorch clamps to the edge.
    torch.testing.assert_close(got[:, 0], source[:, 0])
    torch.testing.assert_close(got[:, -1], source[:, -1])


def test_cls_position_unchanged():
    resized = adapt_pos_embed(ramp_pos_embed(SRC_GRID), SRC_GRID, (32, 16))

    assert resized[0, 0].tolist() == list(CLS_VALUE)


def test_cls_position_dropped():
    with_cls = adapt_pos_embed(ramp_pos_embed(SRC_GRID), SRC_GRID, (16, 12))
    without_cls = adapt_pos_embed(
        ramp_pos_embed(SRC_GRID),
        SRC_GRID, (16, 12),
        src_extra_tokens=1,
        dst_extra_tokens=0)

    assert without_cls.shape == (1, 16 * 12, 3)
    assert torch.equal(without_cls, with_cls[:, 1:])


def test_source_without_cls():
    resized = adapt_pos_embed(
        ramp_pos_embed(SRC_GRID, with_cls=False),
        SRC_GRID, (32, 16),
        src_extra_tokens=0,
        dst_extra_tokens=0)

    expected = ramp_pos_embed((32, 16), with_cls=False)
    got = resized.reshape(32, 16, 3)
    torch.testing.assert_close(got[1:-1, 1:-1],
                               expected.reshape(32, 16, 3)[1:-1, 1:-1])


def test_same_grid_is_identity():
    source = ramp_pos_embed(SRC_GRID)

    assert torch.equal(adapt_pos_embed(source, SRC_GRID, SRC_GRID), source)


def test_bicubic_bends_ramp():
    # Why the transfer uses bilinear: PyTorch's cubic kernel does not
    # reproduce a linear ramp, not even away from the border.
    dst_grid = (16, 12)
    resized = adapt_pos_embed(
        ramp_pos_embed(SRC_GRID), SRC_GRID, dst_grid, mode='bicubic')

    got = patch_grid_of(resized, dst_grid, 1)[:, 1:-1]
    expected = patch_grid_of(ramp_pos_embed(dst_grid), dst_grid, 1)[:, 1:-1]
    assert (got - expected).abs().max() > 1e-3


def test_cls_position_cannot_be_added():
    source = ramp_pos_embed(SRC_GRID, with_cls=False)

    with pytest.raises(ValueError, match='dst_extra_tokens must be 0 or 0'):
        adapt_pos_embed(source, SRC_GRID, (16, 12), 0, 1)


def test_wrong_source_grid_rejected():
    with pytest.raises(ValueError, match='does not fit a 8x8 grid'):
        adapt_pos_embed(ramp_pos_embed(SRC_GRID), (8, 8), (16, 12))


def test_resolve_grid_uses_hint():
    assert resolve_patch_grid(128, (16, 8)) == (16, 8)
    assert resolve_patch_grid(128, [8, 16]) == (8, 16)


def test_resolve_grid_square_fallback():
    assert resolve_patch_grid(196, (16, 8)) == (14, 14)
    assert resolve_patch_grid(64) == (8, 8)


def test_resolve_grid_rejects_unknown():
    with pytest.raises(ValueError, match='128 patch positions'):
        resolve_patch_grid(128, (12, 12))
