import logging

import pytest
import torch
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS
from transfer_test_utils import (TINY_ARCH, TINY_PATCH_SIZE,
                                 TINY_PRETRAIN_SIZE, export_to,
                                 saip_training_checkpoint)

from mmsaip.models import SAIPViT, SAIPViTBackbone
from mmsaip.models.utils import adapt_pos_embed

pytestmark = pytest.mark.usefixtures('seeded')

PRETRAIN_GRID = (TINY_PRETRAIN_SIZE[0] // TINY_PATCH_SIZE,
                 TINY_PRETRAIN_SIZE[1] // TINY_PATCH_SIZE)  # 8 x 4
TASK_SIZE = (64, 48)
TASK_GRID = (8, 6)


@pytest.fixture
def log_records():
    """INFO records of the current MMLogger during the test."""
    records = []
    handler = logging.Handler(level=logging.INFO)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture
def training_checkpoint(tmp_path):
    path = str(tmp_path / 'saip.pth')
    state_dict = saip_training_checkpoint(path)
    return path, state_dict


@pytest.fixture
def export(tmp_path, training_checkpoint):
    """Teacher backbone exported on the pretraining grid, with class token."""
    path = str(tmp_path / 'export.pth')
    weights = export_to(training_checkpoint[0], path)
    return path, weights


def build_backbone(checkpoint=None, **kwargs) -> SAIPViTBackbone:
    cfg = dict(
        type='SAIPViTBackbone',
        arch=dict(TINY_ARCH),
        img_size=TASK_SIZE,
        patch_size=TINY_PATCH_SIZE,
        pretrain_img_size=TINY_PRETRAIN_SIZE)
    if checkpoint is not None:
        cfg['init_cfg'] = dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_build_from_registry():
    backbone = build_backbone()

    assert isinstance(backbone, SAIPViTBackbone)
    assert backbone.patch_resolution == TASK_GRID
    assert backbone.pos_embed.shape == (1, 1 + 8 * 6, TINY_ARCH['embed_dims'])


def test_forward_featmap_shapes():
    backbone = build_backbone(out_indices=(1, 3))
    backbone.init_weights()

    outputs = backbone(torch.randn(2, 3, *TASK_SIZE))
    assert len(outputs) == 2
    for output in outputs:
        assert output.shape == (2, TINY_ARCH['embed_dims'], *TASK_GRID)
    # Another input size resizes the positions on the fly.
    outputs = backbone(torch.randn(1, 3, 96, 32))
    assert outputs[0].shape == (1, TINY_ARCH['embed_dims'], 12, 4)


def test_pretrained_loads_teacher(export, training_checkpoint, log_records):
    path, weights = export
    source = training_checkpoint[1]
    backbone = build_backbone(path)
    backbone.init_weights()

    state_dict = backbone.state_dict()
    assert set(state_dict) == set(weights)
    for key in weights:
        if key != 'pos_embed':
            assert torch.equal(state_dict[key], weights[key]), key
    assert torch.equal(state_dict['layers.2.attn.qkv.weight'],
                       source['teacher.module.backbone.layers.2.attn.qkv.'
                              'weight'])
    expected_pos = adapt_pos_embed(weights['pos_embed'], PRETRAIN_GRID,
                                   TASK_GRID)
    assert torch.equal(state_dict['pos_embed'], expected_pos)

    messages = [record.getMessage() for record in log_records]
    loaded = [m for m in messages if m.startswith('SAIPViTBackbone: loaded')]
    assert len(loaded) == 1
    assert 'with 0 missing and 0 unexpected keys' in loaded[0]
    assert 'from the 8x4 grid to 8x6' in loaded[0]


def test_pretrained_without_cls_token(export):
    path, weights = export
    backbone = build_backbone(path, with_cls_token=False)
    backbone.init_weights()

    assert backbone.cls_token is None
    assert 'cls_token' not in backbone.state_dict()
    expected_pos = adapt_pos_embed(weights['pos_embed'], PRETRAIN_GRID,
                                   TASK_GRID, 1, 0)
    assert torch.equal(backbone.pos_embed.data, expected_pos)


def test_export_without_cls_token(tmp_path, training_checkpoint):
    path = str(tmp_path / 'no_cls.pth')
    weights = export_to(
        training_checkpoint[0], path, img_size=TASK_SIZE,
        with_cls_token=False)
    backbone = build_backbone(path, with_cls_token=False)
    backbone.init_weights()

    assert torch.equal(backbone.pos_embed.data, weights['pos_embed'])
    with pytest.raises(ValueError, match='with_cls_token=False'):
        build_backbone(path).init_weights()


def test_training_checkpoint_rejected(training_checkpoint):
    backbone = build_backbone(training_checkpoint[0])

    with pytest.raises(ValueError, match='convert_checkpoint.py'):
        backbone.init_weights()


def test_wrong_prefix_rejected(export):
    backbone = build_backbone(export[0])
    backbone.pretrained_cfg['prefix'] = 'model.backbone.'

    with pytest.raises(ValueError, match="keys start with \\['backbone'\\]"):
        backbone.init_weights()


def test_arch_mismatch_rejected(export):
    backbone = build_backbone(
        export[0], arch=dict(TINY_ARCH, num_layers=TINY_ARCH['num_layers'] -
                             1))

    with pytest.raises(ValueError, match='unexpected keys'):
        backbone.init_weights()


def test_init_cfg_list_rejected():
    with pytest.raises(ValueError, match='single dict'):
        build_backbone(init_cfg=[dict(type='Pretrained', checkpoint='x')])


def test_load_state_dict_resizes_pos_embed():
    # A plain state dict (here a SAIPViT's) goes through the pre-hook,
    # which takes the source grid from pretrain_img_size.
    source = SAIPViT(
        arch=dict(TINY_ARCH),
        img_size=TINY_PRETRAIN_SIZE,
        patch_size=TINY_PATCH_SIZE,
        tap_index=1)
    source.init_weights()
    state_dict = {
        key: value
        for key, value in source.state_dict().items()
        if not key.startswith('inter_norm.')
    }
    backbone = build_backbone(with_cls_token=False)

    result = backbone.load_state_dict(state_dict, strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    expected_pos = adapt_pos_embed(source.pos_embed.data, PRETRAIN_GRID,
                                   TASK_GRID, 1, 0)
    assert torch.equal(backbone.pos_embed.data, expected_pos)


def test_features_match_pretraining_encoder(export, training_checkpoint):
    # On the pretraining input size the loaded backbone computes the same
    # final-norm tokens as the SAIP teacher it came from.
    teacher = SAIPViT(
        arch=dict(TINY_ARCH),
        img_size=TINY_PRETRAIN_SIZE,
        patch_size=TINY_PATCH_SIZE,
        tap_index=1)
    prefix = 'teacher.module.backbone.'
    teacher.load_state_dict({
        key[len(prefix):]: value
        for key, value in training_checkpoint[1].items()
        if key.startswith(prefix)
    })
    backbone = build_backbone(
        export[0], img_size=TINY_PRETRAIN_SIZE, out_type='raw')
    backbone.init_weights()
    teacher.eval()
    backbone.eval()

    images = torch.randn(2, 3, *TINY_PRETRAIN_SIZE)
    with torch.no_grad():
        expected = teacher.forward_views(images).final_tokens
        got = backbone(images)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
