import pytest
import torch

from mmsaip.models.utils import anchor_grid_mask

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')

ANCHOR_GRID = (16, 8)
VIEW_GRID = (20, 10)
BATCH = 8


def nearest_source(size_in: int, size_out: int) -> list:
    """Nearest source index floor(dst * in / out) of every output index."""
    return [dst * size_in // size_out for dst in range(size_out)]


def upsample_by_hand(keep_anchor: torch.Tensor) -> torch.Tensor:
    """(B, 16, 8) anchor keep-mask -> (B, 20 * 10) view keep-mask."""
    rows = nearest_source(ANCHOR_GRID[0], VIEW_GRID[0])
    cols = nearest_source(ANCHOR_GRID[1], VIEW_GRID[1])
    return keep_anchor[:, rows][:, :, cols].flatten(1)


def recover_anchor_keep(hidden: torch.Tensor) -> torch.Tensor:
    """Read the anchor keep-mask back from the first view cell that each
    anchor cell maps to: (B, 20 * 10) -> (B, 16, 8)."""
    keep = ~hidden.view(-1, *VIEW_GRID)
    rows = nearest_source(ANCHOR_GRID[0], VIEW_GRID[0])
    cols = nearest_source(ANCHOR_GRID[1], VIEW_GRID[1])
    first_row = [rows.index(anchor) for anchor in range(ANCHOR_GRID[0])]
    first_col = [cols.index(anchor) for anchor in range(ANCHOR_GRID[1])]
    return keep[:, first_row][:, :, first_col]


def test_anchor_mask_hidden_is_upsampled_anchor():
    mask = anchor_grid_mask(BATCH, ANCHOR_GRID, VIEW_GRID, 0.75)
    assert mask.hidden.shape == (BATCH, 200)
    assert mask.hidden.dtype == torch.bool

    keep_anchor = recover_anchor_keep(mask.hidden)
    # int(128 * 0.25) = 32 anchor cells are kept in every sample.
    assert keep_anchor.flatten(1).sum(dim=1).tolist() == [32] * BATCH
    assert torch.equal(~mask.hidden, upsample_by_hand(keep_anchor))


def test_anchor_mask_from_mask_visible_ids():
    mask = anchor_grid_mask(BATCH, ANCHOR_GRID, VIEW_GRID, 0.75,
                            'from_mask')
    counts = (~mask.hidden).sum(dim=1)
    # The visible counts must differ, so that padding is exercised.
    assert counts.min() < counts.max()
    assert mask.visible_ids.shape == (BATCH, int(counts.max()))
    assert mask.visible_ids.dtype == torch.long
    assert mask.visible_padding.shape == mask.visible_ids.shape

    for sample in range(BATCH):
        ids = mask.visible_ids[sample]
        padding = mask.visible_padding[sample]
        visible_cells = torch.nonzero(~mask.hidden[sample]).flatten()
        used_ids = ids[~padding]
        assert int((~padding).sum()) == int(counts[sample])
        assert sorted(used_ids.tolist()) == visible_cells.tolist()
        assert len(set(ids.tolist())) == len(ids)
        # Padding comes last and points at hidden cells only.
        assert not padding[:int(counts[sample])].any()
        assert mask.hidden[sample, ids[padding]].all()


def test_anchor_mask_from_mask_no_padding():
    # On the anchor grid itself every sample shows exactly 32 cells.
    mask = anchor_grid_mask(2, ANCHOR_GRID, ANCHOR_GRID, 0.75, 'from_mask')
    assert mask.visible_padding is None
    assert mask.visible_ids.shape == (2, 32)
    for sample in range(2):
        assert not mask.hidden[sample, mask.visible_ids[sample]].any()


def test_anchor_mask_legacy_fixed():
    mask = anchor_grid_mask(BATCH, ANCHOR_GRID, VIEW_GRID, 0.75,
                            'legacy_fixed')
    # int(200 * 0.25) = 50 ids per sample, whatever the mask shows.
    assert mask.visible_ids.shape == (BATCH, 50)
    assert mask.visible_padding is None

    counts = (~mask.hidden).sum(dim=1)
    assert counts.min() < 50 < counts.max()
    for sample in range(BATCH):
        ids = mask.visible_ids[sample]
        shown_hidden = mask.hidden[sample, ids]
        num_visible = min(int(counts[sample]), 50)
        assert len(set(ids.tolist())) == 50
        assert not shown_hidden[:num_visible].any()
        assert shown_hidden[num_visible:].all()


def test_anchor_mask_same_seed_same_mask():
    torch.manual_seed(3)
    first = anchor_grid_mask(2, ANCHOR_GRID, VIEW_GRID)
    torch.manual_seed(3)
    second = anchor_grid_mask(2, ANCHOR_GRID, VIEW_GRID)
    assert torch.equal(first.hidden, second.hidden)
    assert torch.equal(first.visible_ids, second.visible_ids)


@pytest.mark.parametrize('kwargs', [
    dict(visible_count='fixed'),
    dict(mask_ratio=0.),
    dict(mask_ratio=1.),
    dict(mask_ratio=1.5),
    dict(mask_ratio=0.999),
])
def test_anchor_mask_invalid_args(kwargs):
    with pytest.raises(ValueError):
        anchor_grid_mask(2, ANCHOR_GRID, VIEW_GRID, **kwargs)
