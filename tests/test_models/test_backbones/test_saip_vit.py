import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

from mmsaip.models.backbones import SAIPViT
from mmsaip.models.backbones.saip_vit import encoder_layer_forward
from mmsaip.models.utils import (resize_pos_embed_flat1d,
                                 resize_pos_embed_to_grid)

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')

TINY_ARCH = dict(
    embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
PATCH = 8
IMG_SIZE = (32, 16)  # a 4 x 2 patch grid
ATOL = 1e-5


def build_backbone(**kwargs) -> SAIPViT:
    cfg = dict(
        type='SAIPViT',
        arch=TINY_ARCH,
        img_size=IMG_SIZE,
        patch_size=PATCH,
        tap_index=0)
    cfg.update(kwargs)
    backbone = MODELS.build(cfg)
    backbone.init_weights()
    # BaseBackbone.train() returns None in mmpretrain 1.2.0, so eval() is
    # not chained.
    backbone.eval()
    return backbone


def embed_by_hand(backbone: SAIPViT, images: torch.Tensor) -> torch.Tensor:
    """Patch convolution, class token and the unresized position
    embedding, written with plain torch ops."""
    proj = backbone.patch_embed.projection
    patches = F.conv2d(images, proj.weight, proj.bias, stride=PATCH)
    patches = patches.flatten(2).transpose(1, 2)  # (B, L, C)
    cls = backbone.cls_token.expand(images.shape[0], -1, -1)
    return torch.cat((cls, patches), dim=1) + backbone.pos_embed


def split_heads(tokens: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, C) -> (B, heads, L, C / heads)."""
    batch, length, channels = tokens.shape
    return tokens.view(batch, length, num_heads,
                       channels // num_heads).permute(0, 2, 1, 3)


def attention_maps_by_hand(layer, tokens: torch.Tensor):
    """Query-key and value-value softmax maps of one mmpretrain layer."""
    channels = tokens.shape[-1]
    heads = layer.attn.num_heads
    qkv = F.linear(layer.ln1(tokens), layer.attn.qkv.weight,
                   layer.attn.qkv.bias)
    query = split_heads(qkv[..., :channels], heads)
    key = split_heads(qkv[..., channels:2 * channels], heads)
    value = split_heads(qkv[..., 2 * channels:], heads)
    scale = math.sqrt(channels // heads)
    query_key = torch.softmax(
        torch.einsum('bhqd,bhkd->bhqk', query, key) / scale, dim=-1)
    value_value = torch.softmax(
        torch.einsum('bhqd,bhkd->bhqk', value, value) / scale, dim=-1)
    return query_key, value_value


def test_saip_vit_build_from_registry():
    backbone = build_backbone()
    assert isinstance(backbone, SAIPViT)
    assert isinstance(backbone.inter_norm, nn.LayerNorm)
    assert backbone.inter_norm.eps == 1e-6
    assert backbone.ln1.eps == 1e-6
    assert tuple(backbone.patch_resolution) == (4, 2)
    assert backbone.pos_embed.shape == (1, 9, 32)
    assert backbone.tap_index == 0


@pytest.mark.parametrize('kwargs', [
    dict(pos_interp='bilinear'),
    dict(pos_embed_init='zeros'),
    dict(tap_index=2),
    dict(tap_index=-1),
    dict(final_norm=False),
    dict(with_cls_token=False, out_type='raw'),
])
def test_saip_vit_invalid_args(kwargs):
    with pytest.raises(ValueError):
        build_backbone(**kwargs)


def test_forward_views_shapes():
    backbone = build_backbone()
    images = torch.randn(2, 3, *IMG_SIZE)

    out = backbone.forward_views(images)
    assert out.final_tokens.shape == (2, 9, 32)
    assert out.tap_tokens.shape == (2, 9, 32)
    assert out.attn_maps is None
    assert out.patch_resolution == (4, 2)
    assert torch.isfinite(out.final_tokens).all()

    with_maps = backbone.forward_views(images, return_attn=True)
    assert with_maps.attn_maps.query_key.shape == (2, 2, 9, 9)
    assert with_maps.attn_maps.value_value.shape == (2, 2, 9, 9)

    tap_only = backbone.forward_views(images, stop_at_tap=True)
    assert tap_only.final_tokens is None
    assert tap_only.tap_tokens.shape == (2, 9, 32)


def test_forward_views_attn_needs_full_depth():
    backbone = build_backbone()
    with pytest.raises(ValueError):
        backbone.forward_views(
            torch.randn(2, 3, *IMG_SIZE), stop_at_tap=True, return_attn=True)


def test_forward_views_matches_layer_forward():
    backbone = build_backbone()
    images = torch.randn(2, 3, *IMG_SIZE)
    with torch.no_grad():
        # Give the two norms different weights, so that using one in place
        # of the other shows.
        for norm in (backbone.inter_norm, backbone.ln1):
            norm.weight.normal_(1., 0.5)
            norm.bias.normal_(0., 0.5)
        out = backbone.forward_views(images, return_attn=True)

        tokens = embed_by_hand(backbone, images)
        after_first = backbone.layers[0](tokens)
        expected_tap = backbone.inter_norm(after_first)
        expected_final = backbone.ln1(backbone.layers[1](after_first))
        query_key, value_value = attention_maps_by_hand(
            backbone.layers[1], after_first)

    torch.testing.assert_close(out.tap_tokens, expected_tap, atol=ATOL,
                               rtol=0)
    torch.testing.assert_close(out.final_tokens, expected_final, atol=ATOL,
                               rtol=0)
    torch.testing.assert_close(out.attn_maps.query_key, query_key,
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(out.attn_maps.value_value, value_value,
                               atol=ATOL, rtol=0)


def test_forward_views_stop_at_tap():
    backbone = build_backbone()
    images = torch.randn(2, 3, *IMG_SIZE)
    with torch.no_grad():
        full = backbone.forward_views(images)
        tap_only = backbone.forward_views(images, stop_at_tap=True)
    torch.testing.assert_close(tap_only.tap_tokens, full.tap_tokens,
                               atol=1e-6, rtol=0)


def test_forward_views_other_sizes():
    backbone = build_backbone()
    # 40 x 24 is a 5 x 3 grid.
    out = backbone.forward_views(torch.randn(2, 3, 40, 24))
    assert out.patch_resolution == (5, 3)
    assert out.final_tokens.shape == (2, 16, 32)

    # A width of 20 is not a multiple of 8: the last 4 columns are
    # dropped by the strided convolution instead of padded.
    images = torch.randn(2, 3, 40, 20)
    with torch.no_grad():
        truncated = backbone.forward_views(images)
        cropped = backbone.forward_views(images[..., :16])
    assert truncated.patch_resolution == (5, 2)
    torch.testing.assert_close(truncated.final_tokens, cropped.final_tokens,
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize('pos_interp', ['2d', 'flat1d'])
def test_pos_embed_for_grid_modes(pos_interp):
    backbone = build_backbone(pos_interp=pos_interp)
    resized = backbone.pos_embed_for_grid((5, 3))
    if pos_interp == '2d':
        expected = resize_pos_embed_to_grid(backbone.pos_embed, (4, 2),
                                            (5, 3), '2d')
    else:
        expected = resize_pos_embed_flat1d(backbone.pos_embed, 15)
    assert resized.shape == (1, 16, 32)
    torch.testing.assert_close(resized, expected, atol=0, rtol=0)
    assert backbone.pos_embed_for_grid((4, 2)) is backbone.pos_embed


def test_plain_vit_loads_state_dict():
    backbone = build_backbone()
    state_dict = {
        name: value
        for name, value in backbone.state_dict().items()
        if not name.startswith('inter_norm.')
    }
    plain = VisionTransformer(
        arch=TINY_ARCH, img_size=IMG_SIZE, patch_size=PATCH, out_type='raw')
    result = plain.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
    plain.eval()

    images = torch.randn(2, 3, *IMG_SIZE)
    with torch.no_grad():
        plain_tokens = plain(images)[0]
        saip_tokens = backbone.forward_views(images).final_tokens
    assert plain_tokens.shape == (2, 9, 32)
    torch.testing.assert_close(plain_tokens, saip_tokens, atol=ATOL, rtol=0)


def test_init_weights_reference_scheme():
    backbone = build_backbone()
    for module in backbone.modules():
        if isinstance(module, nn.Linear):
            fan_out, fan_in = module.weight.shape
            bound = math.sqrt(6. / (fan_in + fan_out))
            assert module.weight.abs().max() <= bound
            assert module.weight.std() > bound / 4
            assert torch.count_nonzero(module.bias) == 0
        elif isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1)
            assert torch.count_nonzero(module.bias) == 0

    proj = backbone.patch_embed.projection
    bound = math.sqrt(6. / (3 * PATCH * PATCH + 32))
    assert proj.weight.abs().max() <= bound
    assert proj.weight.std() > bound / 4
    assert torch.count_nonzero(proj.bias) == 0

    assert backbone.pos_embed.min() >= 0
    assert backbone.pos_embed.max() < 1
    assert abs(backbone.pos_embed.mean().item() - 0.5) < 0.1
    assert 0.005 < backbone.cls_token.std().item() < 0.05


def test_init_weights_trunc_normal_pos_embed():
    backbone = build_backbone(pos_embed_init='trunc_normal')
    assert backbone.pos_embed.min() < 0
    assert 0.005 < backbone.pos_embed.std().item() < 0.05


def test_init_weights_pretrained(tmp_path):
    source = build_backbone()
    checkpoint = tmp_path / 'backbone.pth'
    torch.save(source.state_dict(), checkpoint)

    target = build_backbone(
        init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)))
    for name, value in source.state_dict().items():
        torch.testing.assert_close(
            target.state_dict()[name], value, atol=0, rtol=0, msg=name)


def test_load_square_pos_embed_resized():
    # A 32 x 32 input with patch 8 gives a square 4 x 4 grid.
    square = build_backbone(img_size=(32, 32))
    state_dict = square.state_dict()
    source = state_dict['pos_embed'].clone()

    backbone = build_backbone()
    backbone.load_state_dict(state_dict, strict=True)

    # Bicubic 2-D resize of the (4, 4) grid to (4, 2), class token first.
    grid = source[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    resized = F.interpolate(
        grid, size=(4, 2), mode='bicubic', align_corners=False)
    expected = torch.cat((source[:, :1], resized.flatten(2).transpose(1, 2)),
                         dim=1)
    torch.testing.assert_close(
        backbone.pos_embed.data, expected, atol=1e-6, rtol=0)


def test_load_non_square_pos_embed_raises():
    # 24 x 16 gives a 3 x 2 grid: 6 patches, not a square number.
    other = build_backbone(img_size=(24, 16))
    with pytest.raises(ValueError):
        build_backbone().load_state_dict(other.state_dict())


@pytest.mark.parametrize('need_maps', [False, True])
def test_encoder_layer_forward_matches_layer(need_maps):
    layer = build_backbone().layers[0]
    tokens = torch.randn(2, 7, 32)
    with torch.no_grad():
        expected = layer(tokens)
        output, maps = encoder_layer_forward(
            layer, tokens, need_maps=need_maps)
    torch.testing.assert_close(output, expected, atol=ATOL, rtol=0)
    assert (maps is not None) == need_maps


def test_encoder_layer_forward_maps_are_softmax():
    layer = build_backbone().layers[0]
    tokens = torch.randn(2, 7, 32)
    with torch.no_grad():
        _, maps = encoder_layer_forward(layer, tokens, need_maps=True)
        query_key, value_value = attention_maps_by_hand(layer, tokens)
    ones = torch.ones(2, 2, 7)
    torch.testing.assert_close(maps.query_key.sum(-1), ones, atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(maps.value_value.sum(-1), ones, atol=1e-6,
                               rtol=0)
    assert maps.query_key.min() >= 0
    assert maps.value_value.min() >= 0
    torch.testing.assert_close(maps.query_key, query_key, atol=1e-6, rtol=0)
    torch.testing.assert_close(maps.value_value, value_value, atol=1e-6,
                               rtol=0)


@pytest.mark.parametrize('need_maps', [False, True])
def test_encoder_layer_forward_key_mask(need_maps):
    layer = build_backbone().layers[0]
    visible = torch.randn(1, 5, 32)
    padded = torch.cat((visible, 100 * torch.randn(1, 3, 32)), dim=1)
    # True where a key may be attended to: the first 5 tokens.
    attn_mask = torch.tensor([[True] * 5 + [False] * 3])[:, None, None, :]
    with torch.no_grad():
        expected, expected_maps = encoder_layer_forward(
            layer, visible, need_maps=need_maps)
        output, maps = encoder_layer_forward(
            layer, padded, attn_mask, need_maps=need_maps)
    torch.testing.assert_close(output[:, :5], expected, atol=ATOL, rtol=0)
    if need_maps:
        torch.testing.assert_close(maps.query_key[..., :5, :5],
                                   expected_maps.query_key, atol=1e-6,
                                   rtol=0)
        torch.testing.assert_close(maps.value_value[..., :5, :5],
                                   expected_maps.value_value, atol=1e-6,
                                   rtol=0)
        assert torch.count_nonzero(maps.query_key[..., 5:]) == 0
        assert torch.count_nonzero(maps.value_value[..., 5:]) == 0


def test_forward_views_visible_ids_padding():
    backbone = build_backbone()
    images = torch.randn(2, 3, *IMG_SIZE)
    # Sample 0 shows 3 patches plus one padding entry, sample 1 shows 4.
    visible_ids = torch.tensor([[6, 1, 3, 0], [2, 7, 4, 5]])
    visible_padding = torch.tensor([[False, False, False, True],
                                    [False, False, False, False]])
    with torch.no_grad():
        padded = backbone.forward_views(
            images,
            return_attn=True,
            visible_ids=visible_ids,
            visible_padding=visible_padding)
        first = backbone.forward_views(
            images[:1], return_attn=True, visible_ids=visible_ids[:1, :3])
        second = backbone.forward_views(
            images[1:], return_attn=True, visible_ids=visible_ids[1:])

    assert padded.final_tokens.shape == (2, 5, 32)
    torch.testing.assert_close(padded.final_tokens[:1, :4],
                               first.final_tokens, atol=ATOL, rtol=0)
    torch.testing.assert_close(padded.tap_tokens[:1, :4], first.tap_tokens,
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(padded.final_tokens[1:], second.final_tokens,
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(padded.attn_maps.query_key[:1, :, :4, :4],
                               first.attn_maps.query_key, atol=1e-6, rtol=0)
    assert torch.count_nonzero(padded.attn_maps.query_key[0, :, :, 4]) == 0


def test_forward_views_visible_ids_select_tokens():
    backbone = build_backbone()
    images = torch.randn(2, 3, *IMG_SIZE)
    visible_ids = torch.tensor([[5, 0], [1, 6]])
    with torch.no_grad():
        out = backbone.forward_views(images, visible_ids=visible_ids)
        tokens = embed_by_hand(backbone, images)
        # Class token, then the listed patches (patch i is token i + 1).
        kept = torch.stack((tokens[0, [0, 6, 1]], tokens[1, [0, 2, 7]]))
        expected = backbone.ln1(backbone.layers[1](backbone.layers[0](kept)))
    torch.testing.assert_close(out.final_tokens, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize('with_mask', [False, True])
def test_encoder_layer_forward_query_ids_rows(with_mask):
    layer = build_backbone().layers[0]
    tokens = torch.randn(2, 7, 32, requires_grad=True)
    # Rows in any order, one repeated.
    query_ids = torch.tensor([[0, 4, 2], [6, 1, 1]])
    attn_mask = None
    if with_mask:
        # Sample 0 may not attend to its last two tokens.
        attn_mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
        attn_mask[0, ..., 5:] = False
    row_weights = torch.randn(2, 3, 32)

    full, _ = encoder_layer_forward(layer, tokens, attn_mask)
    expected = torch.stack((full[0, [0, 4, 2]], full[1, [6, 1, 1]]))
    (expected * row_weights).sum().backward()
    expected_grads = [tokens.grad.clone()] + [
        param.grad.clone() for param in layer.parameters()
    ]
    tokens.grad = None
    layer.zero_grad()

    selected, _ = encoder_layer_forward(
        layer, tokens, attn_mask, query_ids=query_ids)
    assert selected.shape == (2, 3, 32)
    torch.testing.assert_close(selected, expected, atol=ATOL, rtol=0)
    (selected * row_weights).sum().backward()
    grads = [tokens.grad] + [param.grad for param in layer.parameters()]
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, atol=ATOL, rtol=1e-4)


def test_encoder_layer_forward_query_ids_with_maps_raises():
    layer = build_backbone().layers[0]
    with pytest.raises(ValueError, match='query_ids'):
        encoder_layer_forward(
            layer,
            torch.randn(1, 5, 32),
            need_maps=True,
            query_ids=torch.zeros(1, 1, dtype=torch.long))
