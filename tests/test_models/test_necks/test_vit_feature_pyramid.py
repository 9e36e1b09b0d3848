import pytest
import torch
from mmpretrain.registry import MODELS

from mmsaip.models.necks import ViTFeaturePyramid

pytestmark = pytest.mark.usefixtures('seeded')

IN_CHANNELS = 16
OUT_CHANNELS = 8
GRID = (6, 4)  # (H, W) of the ViT map, not square


def build_neck(**kwargs) -> ViTFeaturePyramid:
    cfg = dict(
        type='ViTFeaturePyramid',
        in_channels=IN_CHANNELS,
        out_channels=OUT_CHANNELS)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_default_levels():
    neck = build_neck()
    features = torch.randn(2, IN_CHANNELS, *GRID)

    outputs = neck([torch.randn(2, IN_CHANNELS, 1, 1), features])
    # strides 4, 8, 16, 32 and the extra 64 for a stride-16 input
    expected_sizes = [(24, 16), (12, 8), (6, 4), (3, 2), (2, 1)]
    assert [tuple(out.shape[2:]) for out in outputs] == expected_sizes
    for out in outputs:
        assert out.shape[:2] == (2, OUT_CHANNELS)
        assert torch.isfinite(out).all()


def test_quarter_scale_for_8_pixel_patches():
    neck = build_neck(
        scale_factors=(2.0, 1.0, 0.5, 0.25), num_extra_levels=0)

    outputs = neck([torch.randn(1, IN_CHANNELS, 8, 12)])
    assert [tuple(out.shape[2:]) for out in outputs] == [(16, 24), (8, 12),
                                                         (4, 6), (2, 3)]


def test_gradients_reach_every_level():
    neck = build_neck()
    features = torch.randn(1, IN_CHANNELS, *GRID, requires_grad=True)

    outputs = neck([features])
    sum(out.sum() for out in outputs).backward()
    for rescale, projection in zip(neck.rescales, neck.projections):
        assert projection[0].weight.grad.abs().sum() > 0
        for param in rescale.parameters():
            assert param.grad.abs().sum() > 0
    assert features.grad.abs().sum() > 0


def test_invalid_scale_rejected():
    with pytest.raises(ValueError, match='got 3'):
        build_neck(scale_factors=(3, 1))


def test_negative_extra_levels_rejected():
    with pytest.raises(ValueError, match='num_extra_levels'):
        build_neck(num_extra_levels=-1)


def test_channel_mismatch_rejected():
    neck = build_neck()

    with pytest.raises(ValueError, match='Expected 16 input channels'):
        neck([torch.randn(1, IN_CHANNELS + 1, *GRID)])
