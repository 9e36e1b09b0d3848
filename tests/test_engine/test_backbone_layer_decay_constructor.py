import pytest
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

import mmsaip  # noqa: F401

BASE_LR = 1e-3
DECAY_RATE = 0.5
NUM_LAYERS = 3


class ToyDetector(nn.Module):
    """A backbone and a head, as mmdet, mmseg and mmpose models have."""

    def __init__(self):
        super().__init__()
        self.backbone = MODELS.build(
            dict(
                type='SAIPViTBackbone',
                arch=dict(
                    embed_dims=16,
                    num_layers=NUM_LAYERS,
                    num_heads=2,
                    feedforward_channels=32),
                img_size=(32, 16),
                patch_size=8))
        self.head = nn.Linear(16, 2)


def optim_cfg() -> dict:
    return dict(
        optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=0.05),
        constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(
            layer_decay_rate=DECAY_RATE,
            norm_decay_mult=0.0,
            bias_decay_mult=0.0,
            custom_keys={'.pos_embed': dict(decay_mult=0.0)}))


def groups_by_name(optim_wrapper) -> dict:
    return {
        group['param_name']: group
        for group in optim_wrapper.optimizer.param_groups
    }


def test_rates_decay_with_depth():
    model = ToyDetector()
    # Built from another toolbox's scope, as the downstream configs do.
    with DefaultScope.overwrite_default_scope('mmdet'):
        optim_wrapper = build_optim_wrapper(model, optim_cfg())
    groups = groups_by_name(optim_wrapper)

    # Depths: 0 for positions and patch embedding, i + 1 for block i, and
    # NUM_LAYERS + 1 for the final norm and everything outside the backbone.
    top = NUM_LAYERS + 1
    assert groups['head.weight']['lr'] == pytest.approx(BASE_LR)
    assert groups['backbone.ln1.weight']['lr'] == pytest.approx(BASE_LR)
    for index in range(NUM_LAYERS):
        group = groups[f'backbone.layers.{index}.attn.qkv.weight']
        assert group['lr'] == pytest.approx(BASE_LR *
                                            DECAY_RATE**(top - index - 1))
    for name in ('backbone.pos_embed', 'backbone.cls_token',
                 'backbone.patch_embed.projection.weight'):
        assert groups[name]['lr'] == pytest.approx(BASE_LR * DECAY_RATE**top)


def test_weight_decay_exemptions():
    optim_wrapper = build_optim_wrapper(ToyDetector(), optim_cfg())
    groups = groups_by_name(optim_wrapper)

    assert groups['backbone.layers.0.attn.qkv.weight'][
        'weight_decay'] == pytest.approx(0.05)
    assert groups['backbone.pos_embed']['weight_decay'] == 0.0
    assert groups['backbone.layers.0.ln1.weight']['weight_decay'] == 0.0
    assert groups['backbone.layers.0.attn.qkv.bias']['weight_decay'] == 0.0


def test_model_without_vit_backbone_rejected():
    model = nn.Module()
    model.backbone = nn.Linear(2, 2)

    with pytest.raises(ValueError, match='backbone is Linear'):
        build_optim_wrapper(model, optim_cfg())
