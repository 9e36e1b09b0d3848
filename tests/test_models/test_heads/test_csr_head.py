import pytest
import torch
from mmpretrain.registry import MODELS

from mmsaip.models.heads import CSRHead

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')

PATCH = 2
GRID = (4, 2)  # the anchor grid, on an 8 x 4 image
PIXELS = PATCH * PATCH * 3
ATOL = 1e-5


def build_head(**kwargs) -> CSRHead:
    cfg = dict(
        type='CSRHead',
        in_channels=32,
        embed_dims=32,
        num_layers=2,
        num_heads=2,
        mlp_ratio=2,
        patch_size=PATCH,
        in_pixels=3,
        anchor_grid=GRID)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    head.eval()
    return head


def patch_by_hand(image: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """Pixels of one patch of a (C, H, W) image, ordered (y, x, channel)."""
    values = []
    for y in range(row * PATCH, (row + 1) * PATCH):
        for x in range(col * PATCH, (col + 1) * PATCH):
            for channel in range(image.shape[0]):
                values.append(image[channel, y, x])
    return torch.stack(values)


def csr_loss_by_hand(pred, images, hidden, norm_pix=True):
    """Mean over hidden patches of the per-patch MSE, the target patch
    standardised with its unbiased variance and eps 1e-6."""
    errors = []
    for b in range(images.shape[0]):
        for n in range(GRID[0] * GRID[1]):
            if not hidden[b, n]:
                continue
            target = patch_by_hand(images[b], n // GRID[1], n % GRID[1])
            if norm_pix:
                mean = target.sum() / len(target)
                var = ((target - mean)**2).sum() / (len(target) - 1)
                target = (target - mean) / torch.sqrt(var + 1e-6)
            errors.append(((pred[b, n] - target)**2).sum() / len(target))
    return torch.stack(errors).mean()


def test_csr_head_build_from_registry():
    head = build_head()
    assert isinstance(head, CSRHead)
    assert head.decoder_pos_embed.shape == (1, 1 + 8, 32)
    assert head.decoder_pos_embed.min() >= 0
    assert head.decoder_pos_embed.max() < 1
    assert head.mask_token.shape == (1, 1, 32)
    assert 0.005 < head.mask_token.std().item() < 0.05
    assert head.decoder_pred.out_features == PIXELS
    assert torch.count_nonzero(head.decoder_embed.bias) == 0


def test_csr_head_invalid_pos_interp():
    with pytest.raises(ValueError):
        build_head(pos_interp='bilinear')


def test_csr_patchify_layout():
    head = build_head()
    # Pixel (channel c, row y, column x) is 100 * c + 10 * y + x.
    channel = torch.arange(2.)[:, None, None]
    row = torch.arange(4.)[None, :, None]
    col = torch.arange(4.)[None, None, :]
    image = (100 * channel + 10 * row + col)[None]  # (1, 2, 4, 4)

    patches = head.patchify(image, (2, 2))
    assert patches.shape == (1, 4, 8)
    # Patch 1 is row 0, column 1. Patch 2 is row 1, column 0.
    assert patches[0, 1].tolist() == [2, 102, 3, 103, 12, 112, 13, 113]
    assert patches[0, 2].tolist() == [20, 120, 21, 121, 30, 130, 31, 131]
    for n in range(4):
        assert torch.equal(patches[0, n], patch_by_hand(image[0], n // 2,
                                                        n % 2))


def test_csr_patchify_drops_partial_patches():
    head = build_head()
    image = torch.randn(2, 3, 9, 5)
    patches = head.patchify(image, GRID)
    assert patches.shape == (2, 8, PIXELS)
    assert torch.equal(patches, head.patchify(image[..., :8, :4], GRID))


@pytest.mark.parametrize('norm_pix', [True, False])
def test_csr_loss_by_hand(norm_pix):
    head = build_head(norm_pix=norm_pix)
    images = torch.randn(2, 3, 8, 4)
    pred = torch.randn(2, 8, PIXELS)
    hidden = torch.tensor([[True, False, True, True, False, False, True,
                            False],
                           [False, True, True, False, True, True, True,
                            True]])
    losses = head.loss(pred, images, hidden, GRID)
    assert set(losses) == {'loss_csr'}
    assert losses['loss_csr'].shape == ()
    expected = csr_loss_by_hand(pred, images, hidden, norm_pix)
    torch.testing.assert_close(losses['loss_csr'], expected, atol=1e-5,
                               rtol=1e-5)


def test_csr_loss_only_hidden_patches():
    head = build_head()
    images = torch.randn(2, 3, 8, 4)
    pred = torch.randn(2, 8, PIXELS)
    hidden = torch.zeros(2, 8, dtype=torch.bool)
    hidden[0, 3] = True
    hidden[1, 5] = True
    loss = head.loss(pred, images, hidden, GRID)['loss_csr']

    visible_changed = pred.clone()
    visible_changed[0, 2] += 5.
    visible_changed[1, 0] -= 3.
    assert torch.equal(
        head.loss(visible_changed, images, hidden, GRID)['loss_csr'], loss)

    hidden_changed = pred.clone()
    hidden_changed[1, 5] += 5.
    assert not torch.allclose(
        head.loss(hidden_changed, images, hidden, GRID)['loss_csr'], loss)


def test_csr_loss_no_hidden_patch():
    head = build_head()
    hidden = torch.zeros(2, 8, dtype=torch.bool)
    loss = head.loss(
        torch.randn(2, 8, PIXELS), torch.randn(2, 3, 8, 4), hidden,
        GRID)['loss_csr']
    assert loss.item() == 0.


def test_csr_loss_weight():
    images = torch.randn(2, 3, 8, 4)
    pred = torch.randn(2, 8, PIXELS)
    hidden = torch.rand(2, 8) < 0.5
    hidden[0, 0] = True
    plain = build_head().loss(pred, images, hidden, GRID)['loss_csr']
    weighted = build_head(loss_weight=3.).loss(pred, images, hidden,
                                               GRID)['loss_csr']
    torch.testing.assert_close(weighted, 3. * plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize('pos_interp', ['2d', 'flat1d'])
def test_csr_forward_shape(pos_interp):
    head = build_head(pos_interp=pos_interp)
    # A 5 x 3 grid, 4 visible patches per sample.
    visible_ids = torch.tensor([[0, 4, 9, 14], [3, 2, 11, 7]])
    pred = head(
        torch.randn(2, 5, 32), torch.randn(2, 32), visible_ids, (5, 3))
    assert pred.shape == (2, 15, PIXELS)
    assert torch.isfinite(pred).all()


def test_csr_decoder_positions():
    head = build_head()
    cls_pos, reference_pos, slot_pos = head.decoder_positions(GRID)
    assert torch.equal(cls_pos, head.decoder_pos_embed[:, :1])
    assert torch.equal(reference_pos, head.decoder_pos_embed[:, :1])
    assert torch.equal(slot_pos, head.decoder_pos_embed[:, 1:])

    _, _, slot_pos = head.decoder_positions((5, 3))
    assert slot_pos.shape == (1, 15, 32)


def test_csr_decoder_positions_flat1d():
    head = build_head(pos_interp='flat1d')
    cls_pos, reference_pos, slot_pos = head.decoder_positions(GRID)
    # 8 anchor positions resampled to 1 + 8: the reference class token
    # takes the first resampled patch position.
    assert torch.equal(cls_pos, head.decoder_pos_embed[:, :1])
    assert reference_pos.shape == (1, 1, 32)
    assert slot_pos.shape == (1, 8, 32)
    assert not torch.allclose(reference_pos, cls_pos)


def test_csr_forward_by_hand():
    head = build_head()
    masked_tokens = torch.randn(2, 4, 32)
    reference_cls = torch.randn(2, 32)
    visible_ids = torch.tensor([[6, 1, 3], [0, 7, 2]])
    with torch.no_grad():
        pred = head(masked_tokens, reference_cls, visible_ids, GRID)

        pos = head.decoder_pos_embed
        rows = []
        for b in range(2):
            embedded = head.decoder_embed(masked_tokens[b])  # (1 + N, D)
            slots = [head.mask_token[0, 0]] * 8
            for entry, patch in enumerate(visible_ids[b].tolist()):
                slots[patch] = embedded[1 + entry]
            sequence = torch.cat(
                (embedded[:1] + pos[0, :1],
                 head.decoder_embed(reference_cls[b])[None] + pos[0, :1],
                 torch.stack(slots) + pos[0, 1:]))
            rows.append(sequence)
        sequence = torch.stack(rows)  # (B, 2 + 8, D)
        for layer in head.decoder_layers:
            sequence = layer(sequence)
        expected = head.decoder_pred(head.decoder_norm(sequence[:, 2:]))
    torch.testing.assert_close(pred, expected, atol=ATOL, rtol=0)


def test_csr_forward_visible_order_invariant():
    head = build_head()
    masked_tokens = torch.randn(2, 4, 32)
    reference_cls = torch.randn(2, 32)
    visible_ids = torch.tensor([[6, 1, 3], [0, 7, 2]])
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        pred = head(masked_tokens, reference_cls, visible_ids, GRID)
        shuffled = head(
            torch.cat((masked_tokens[:, :1], masked_tokens[:, 1:][:, order]),
                      dim=1), reference_cls, visible_ids[:, order], GRID)
    torch.testing.assert_close(shuffled, pred, atol=ATOL, rtol=0)


def test_csr_forward_padding_ignored():
    head = build_head()
    masked_tokens = torch.randn(2, 5, 32)
    reference_cls = torch.randn(2, 32)
    # Sample 0 shows patches 5, 1 and 6, then a padding entry on the
    # hidden patch 3. Sample 1 shows 4 patches.
    visible_ids = torch.tensor([[5, 1, 6, 3], [0, 2, 4, 7]])
    visible_padding = torch.tensor([[False, False, False, True],
                                    [False, False, False, False]])
    with torch.no_grad():
        pred = head(masked_tokens, reference_cls, visible_ids, GRID,
                    visible_padding)

        other_token = masked_tokens.clone()
        other_token[0, 4] = 100 * torch.randn(32)
        pred_other_token = head(other_token, reference_cls, visible_ids,
                                GRID, visible_padding)

        other_id = visible_ids.clone()
        other_id[0, 3] = 7
        pred_other_id = head(masked_tokens, reference_cls, other_id, GRID,
                             visible_padding)

        unpadded = head(masked_tokens[:1, :4], reference_cls[:1],
                        visible_ids[:1, :3], GRID)

    assert torch.equal(pred_other_token, pred)
    assert torch.equal(pred_other_id, pred)
    torch.testing.assert_close(pred[:1], unpadded, atol=ATOL, rtol=0)


def test_csr_hidden_patch_ids():
    hidden = torch.tensor([[False, True, False, True, True, False, False,
                            False],
                           [True, False, False, False, False, False, True,
                            False]])
    ids = CSRHead.hidden_patch_ids(hidden)
    # Up to 3 hidden patches per sample, in grid order; sample 1 has 2 and
    # is padded with its first visible patch.
    assert ids.tolist() == [[1, 3, 4], [0, 6, 1]]
    assert not hidden[1, ids[1, 2]]


def test_csr_hidden_patch_ids_none_hidden():
    ids = CSRHead.hidden_patch_ids(torch.zeros(2, 8, dtype=torch.bool))
    assert ids.shape == (2, 1)


@pytest.mark.parametrize('pos_interp', ['2d', 'flat1d'])
def test_csr_pred_ids_match_reference(pos_interp):
    # Predicting only the hidden patches gives the reference loss and
    # gradients of predicting every patch.
    from saip_reference import csr_loss_reference, csr_predict_reference
    head = build_head(pos_interp=pos_interp)
    masked_tokens = torch.randn(2, 5, 32, requires_grad=True)
    reference_cls = torch.randn(2, 32, requires_grad=True)
    visible_ids = torch.tensor([[5, 1, 6, 3], [0, 2, 4, 7]])
    visible_padding = torch.tensor([[False, False, False, True],
                                    [False, False, False, False]])
    hidden = torch.ones(2, 8, dtype=torch.bool)
    hidden[0, [5, 1, 6]] = False
    hidden[1, [0, 2, 4, 7]] = False
    images = torch.randn(2, 3, 8, 4)
    inputs = (masked_tokens, reference_cls)

    def gradients():
        grads = [tensor.grad.clone() for tensor in inputs]
        grads += [param.grad.clone() for param in head.parameters()]
        for tensor in inputs:
            tensor.grad = None
        head.zero_grad()
        return grads

    full = csr_predict_reference(head, masked_tokens, reference_cls,
                                 visible_ids, GRID, visible_padding)
    expected = csr_loss_reference(head, full, images, hidden, GRID)
    expected.backward()
    expected_grads = gradients()

    pred_ids = head.hidden_patch_ids(hidden)
    pred = head(masked_tokens, reference_cls, visible_ids, GRID,
                visible_padding, pred_ids)
    assert pred.shape == (2, 5, PIXELS)
    torch.testing.assert_close(
        pred, torch.stack([full[b, pred_ids[b]] for b in range(2)]),
        atol=ATOL, rtol=0)
    loss = head.loss(pred, images, hidden, GRID, pred_ids)['loss_csr']
    torch.testing.assert_close(loss, expected, atol=ATOL, rtol=1e-5)
    loss.backward()
    for grad, expected_grad in zip(gradients(), expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=ATOL, rtol=1e-4)
