import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from mmsaip.models.necks import CSMProjector

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')


def build_projector(**kwargs) -> CSMProjector:
    cfg = dict(
        type='CSMProjector',
        in_channels=32,
        hidden_channels=48,
        bottleneck_channels=16,
        out_channels=64,
        num_layers=3)
    cfg.update(kwargs)
    projector = MODELS.build(cfg)
    projector.init_weights()
    return projector


def test_csm_projector_build_from_registry():
    projector = build_projector()
    assert isinstance(projector, CSMProjector)
    linears = [m for m in projector.mlp if isinstance(m, nn.Linear)]
    assert [layer.out_features for layer in linears] == [48, 48, 16]
    assert projector.last_layer.weight.shape == (64, 16)
    assert projector.last_layer.bias is None


def test_csm_projector_cosines_by_hand():
    projector = build_projector()
    cls_token = torch.randn(2, 32)
    with torch.no_grad():
        logits = projector(cls_token)

        first, _, second, _, third = projector.mlp
        hidden = F.gelu(cls_token @ first.weight.T + first.bias)
        hidden = F.gelu(hidden @ second.weight.T + second.bias)
        bottleneck = hidden @ third.weight.T + third.bias  # (B, 16)
        prototypes = projector.last_layer.weight  # (K, 16)
        dots = bottleneck @ prototypes.T
        norms = bottleneck.norm(dim=1)[:, None] * prototypes.norm(dim=1)
        expected = dots / norms

    assert logits.shape == (2, 64)
    assert logits.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_csm_projector_aligned_prototype_scores_one():
    projector = build_projector()
    cls_token = torch.randn(2, 32)
    with torch.no_grad():
        bottleneck = projector.mlp(cls_token)
        projector.last_layer.weight[5] = 3. * bottleneck[0]
        projector.last_layer.weight[6] = -0.5 * bottleneck[1]
        logits = projector(cls_token)
    assert logits[0, 5].item() == pytest.approx(1., abs=1e-6)
    assert logits[1, 6].item() == pytest.approx(-1., abs=1e-6)


def test_csm_projector_row_scale_invariant():
    projector = build_projector()
    cls_token = torch.randn(2, 32)
    with torch.no_grad():
        before = projector(cls_token)
        projector.last_layer.weight.mul_(torch.rand(64, 1) * 10 + 0.1)
        after = projector(cls_token)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)


def test_csm_projector_one_layer():
    projector = build_projector(num_layers=1)
    assert len(projector.mlp) == 1
    assert projector.mlp[0].in_features == 32
    assert projector.mlp[0].out_features == 16
    assert projector(torch.randn(2, 32)).shape == (2, 64)


def test_csm_projector_invalid_layers():
    with pytest.raises(ValueError):
        build_projector(num_layers=0)
