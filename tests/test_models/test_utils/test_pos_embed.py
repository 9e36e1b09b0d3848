import pytest
import torch

from mmsaip.models.utils import (resize_pos_embed_flat1d,
                                 resize_pos_embed_to_grid)

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')


def grid_pos_embed(values: torch.Tensor) -> torch.Tensor:
    """Build a (1, 1 + H * W, C) embedding from an (H, W, C) grid, with a
    class token of -7 everywhere."""
    height, width, channels = values.shape
    cls = torch.full((1, 1, channels), -7.)
    return torch.cat((cls, values.reshape(1, height * width, channels)),
                     dim=1)


def patch_grid(pos_embed: torch.Tensor, grid: tuple) -> torch.Tensor:
    """(1, 1 + H * W, C) -> (H, W, C), dropping the class token."""
    return pos_embed[0, 1:].reshape(*grid, -1)


@pytest.mark.parametrize('pos_interp', ['2d', 'flat1d'])
def test_resize_to_grid_shape(pos_interp):
    pos_embed = torch.randn(1, 1 + 4 * 2, 8)
    resized = resize_pos_embed_to_grid(pos_embed, (4, 2), (5, 3), pos_interp)
    assert resized.shape == (1, 1 + 5 * 3, 8)
    assert torch.isfinite(resized).all()


@pytest.mark.parametrize('pos_interp', ['2d', 'flat1d'])
def test_resize_to_grid_identity(pos_interp):
    pos_embed = torch.randn(1, 1 + 4 * 2, 8)
    resized = resize_pos_embed_to_grid(pos_embed, (4, 2), (4, 2), pos_interp)
    assert torch.equal(resized, pos_embed)


def test_resize_flat1d_identity():
    pos_embed = torch.randn(1, 1 + 8, 8)
    assert torch.equal(resize_pos_embed_flat1d(pos_embed, 8), pos_embed)


@pytest.mark.parametrize('pos_interp', ['2d', 'flat1d'])
def test_resize_to_grid_keeps_cls(pos_interp):
    pos_embed = torch.randn(1, 1 + 4 * 2, 8)
    resized = resize_pos_embed_to_grid(pos_embed, (4, 2), (7, 3), pos_interp)
    assert torch.equal(resized[:, :1], pos_embed[:, :1])


def test_resize_flat1d_keeps_extra_tokens():
    pos_embed = torch.randn(1, 2 + 6, 4)
    resized = resize_pos_embed_flat1d(pos_embed, 9, num_extra_tokens=2)
    assert resized.shape == (1, 2 + 9, 4)
    assert torch.equal(resized[:, :2], pos_embed[:, :2])


def test_resize_2d_bilinear_by_hand():
    # Entry (h, w) of the 2 x 2 grid is 100 * h + 10 * w.
    values = torch.tensor([[0., 10.], [100., 110.]])[..., None]
    resized = resize_pos_embed_to_grid(
        grid_pos_embed(values), (2, 2), (2, 4), '2d', mode='bilinear')
    # Rows keep their source row. Along W the source positions are
    # (dst + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to
    # [0, 1].
    expected = torch.tensor([[0., 2.5, 7.5, 10.], [100., 102.5, 107.5,
                                                   110.]])
    torch.testing.assert_close(
        patch_grid(resized, (2, 4))[..., 0], expected, atol=1e-5, rtol=0)


def test_resize_flat1d_bilinear_by_hand():
    # The flattened sequence 0, 1, 2, 3 resampled to 6 entries: source
    # positions (dst + 0.5) * 4 / 6 - 0.5, clamped to [0, 3].
    pos_embed = torch.tensor([[-7.], [0.], [1.], [2.], [3.]])[None]
    resized = resize_pos_embed_flat1d(pos_embed, 6, mode='bilinear')
    expected = torch.tensor([0., 0.5, 7 / 6, 11 / 6, 2.5, 3.])
    torch.testing.assert_close(resized[0, 1:, 0], expected, atol=1e-6,
                               rtol=0)


@pytest.mark.parametrize('axis', [0, 1])
def test_resize_2d_keeps_constant_axis(axis):
    # A pattern that varies along one axis and is constant along the other.
    profile = torch.randn(4 if axis == 0 else 2, 8)
    values = profile[:, None] if axis == 0 else profile[None]
    values = values.expand(4, 2, 8).contiguous()
    resized = resize_pos_embed_to_grid(
        grid_pos_embed(values), (4, 2), (7, 5), '2d')
    grid = patch_grid(resized, (7, 5))
    constant_axis = 1 - axis
    spread = grid.amax(dim=constant_axis) - grid.amin(dim=constant_axis)
    assert spread.abs().max() < 1e-5
    # The varying axis still varies.
    assert (grid.amax(dim=axis) - grid.amin(dim=axis)).max() > 0.1


def test_resize_flat1d_mixes_rows():
    # Rows of the 4 x 2 grid are constant along W. Resampling the flattened
    # sequence blends neighbouring rows into one output row.
    profile = torch.tensor([0., 1., 5., 2.])
    values = profile[:, None, None].expand(4, 2, 1).contiguous()
    resized = resize_pos_embed_to_grid(
        grid_pos_embed(values), (4, 2), (4, 3), 'flat1d')
    grid = patch_grid(resized, (4, 3))
    spread = grid.amax(dim=1) - grid.amin(dim=1)
    assert spread.max() > 0.1


def test_resize_to_grid_invalid_mode():
    with pytest.raises(ValueError):
        resize_pos_embed_to_grid(torch.randn(1, 9, 8), (4, 2), (5, 3), '3d')
