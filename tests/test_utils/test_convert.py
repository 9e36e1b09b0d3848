import argparse
import os.path as osp
import runpy
import sys

import pytest
import torch
from mmpretrain.models import VisionTransformer
from saip_test_utils import REPO_ROOT
from transfer_test_utils import (TINY_ARCH, TINY_PATCH_SIZE,
                                 TINY_PRETRAIN_SIZE, export_to,
                                 saip_training_checkpoint)

from mmsaip.models import SAIPViT, SAIPViTBackbone
from mmsaip.models.utils import adapt_pos_embed
from mmsaip.utils import load_checkpoint_file
from mmsaip.utils.convert import (detect_checkpoint_format, export_backbone,
                                  group_keys, map_reference_key,
                                  save_exported_backbone)

pytestmark = pytest.mark.usefixtures('seeded')

TOOL = osp.join(REPO_ROOT, 'tools', 'convert_checkpoint.py')
TEACHER = 'teacher.module.backbone.'
# ViT-Tiny/16 of the reference code at 256x128, as documented.
DIMS, DEPTH, MLP, GRID = 192, 12, 768, (16, 8)


def reference_backbone(depth: int = DEPTH) -> dict:
    """Backbone tensors under the reference code's timm names."""
    tensors = {
        'cls_token': (1, 1, DIMS),
        'pos_embed': (1, 1 + GRID[0] * GRID[1], DIMS),
        'patch_embed.proj.weight': (DIMS, 3, 16, 16),
        'patch_embed.proj.bias': (DIMS, ),
        'norm.weight': (DIMS, ),
        'norm.bias': (DIMS, ),
        'inter_norm.weight': (DIMS, ),
        'inter_norm.bias': (DIMS, ),
    }
    for index in range(depth):
        block = f'blocks.{index}.'
        tensors.update({
            block + 'norm1.weight': (DIMS, ),
            block + 'norm1.bias': (DIMS, ),
            block + 'attn.qkv.weight': (3 * DIMS, DIMS),
            block + 'attn.qkv.bias': (3 * DIMS, ),
            block + 'attn.proj.weight': (DIMS, DIMS),
            block + 'attn.proj.bias': (DIMS, ),
            block + 'norm2.weight': (DIMS, ),
            block + 'norm2.bias': (DIMS, ),
            block + 'mlp.fc1.weight': (MLP, DIMS),
            block + 'mlp.fc1.bias': (MLP, ),
            block + 'mlp.fc2.weight': (DIMS, MLP),
            block + 'mlp.fc2.bias': (DIMS, ),
        })
    return {
        'backbone.' + name: torch.randn(shape)
        for name, shape in tensors.items()
    }


def reference_checkpoint() -> dict:
    """A checkpoint in the layout of the reference SAIP code."""
    heads = {
        'csm_decoder.mlp.0.weight': torch.randn(4, DIMS),
        'csr_decoder.decoder_embed.weight': torch.randn(4, DIMS),
        'css_decoder.kernel_proj.weight': torch.randn(4, 4),
    }
    teacher = dict(reference_backbone(), **heads)
    student = {
        'module.' + key: value
        for key, value in dict(reference_backbone(), **heads).items()
    }
    return {
        'student': student,
        'teacher': teacher,
        'optimizer': {},
        'epoch': 100,
        'args': argparse.Namespace(height=256, width=128, batch_size=64),
        'csm_loss': {
            'center': torch.zeros(1, 8)
        },
    }


@pytest.fixture
def tiny_checkpoint(tmp_path):
    path = str(tmp_path / 'saip.pth')
    return path, saip_training_checkpoint(path)


def test_saip_vit_names_are_mmpretrain_names():
    saip = SAIPViT().state_dict()
    vit = VisionTransformer(
        arch='deit-tiny', img_size=(256, 128), patch_size=16).state_dict()

    assert set(saip) - set(vit) == {'inter_norm.weight', 'inter_norm.bias'}
    assert set(vit) <= set(saip)
    for key, value in vit.items():
        assert saip[key].shape == value.shape, key


def test_reference_key_map():
    table = {
        'cls_token': 'cls_token',
        'pos_embed': 'pos_embed',
        'patch_embed.proj.weight': 'patch_embed.projection.weight',
        'blocks.0.norm1.weight': 'layers.0.ln1.weight',
        'blocks.3.attn.qkv.bias': 'layers.3.attn.qkv.bias',
        'blocks.11.attn.proj.weight': 'layers.11.attn.proj.weight',
        'blocks.5.norm2.bias': 'layers.5.ln2.bias',
        'blocks.7.mlp.fc1.weight': 'layers.7.ffn.layers.0.0.weight',
        'blocks.7.mlp.fc2.bias': 'layers.7.ffn.layers.1.bias',
        'norm.weight': 'ln1.weight',
        'norm.bias': 'ln1.bias',
    }
    for source, target in table.items():
        assert map_reference_key(source) == target, source
    assert map_reference_key('blocks.0.mlp.fc3.weight') is None
    assert map_reference_key('head.weight') is None


def test_reference_teacher_export():
    checkpoint = reference_checkpoint()
    teacher = checkpoint['teacher']

    exported = export_backbone(checkpoint)
    weights = exported.state_dict
    vit = VisionTransformer(
        arch='deit-tiny', img_size=(256, 128), patch_size=16)
    assert set(weights) == set(vit.state_dict())
    vit.load_state_dict(weights, strict=True)
    pairs = {
        'layers.4.ffn.layers.0.0.weight': 'backbone.blocks.4.mlp.fc1.weight',
        'layers.11.ffn.layers.1.bias': 'backbone.blocks.11.mlp.fc2.bias',
        'layers.0.ln2.weight': 'backbone.blocks.0.norm2.weight',
        'ln1.bias': 'backbone.norm.bias',
        'patch_embed.projection.weight': 'backbone.patch_embed.proj.weight',
        'pos_embed': 'backbone.pos_embed',
    }
    for target, source in pairs.items():
        assert torch.equal(weights[target], teacher[source]), target
    assert exported.meta['source_format'] == 'reference'
    assert exported.meta['patch_grid'] == GRID
    assert exported.meta['source_epoch'] == 100


def test_reference_student_export():
    checkpoint = reference_checkpoint()

    exported = export_backbone(checkpoint, branch='student')
    assert torch.equal(
        exported.state_dict['layers.2.attn.qkv.weight'],
        checkpoint['student']['module.backbone.blocks.2.attn.qkv.weight'])
    assert exported.source_prefix == 'student.module.backbone.'


def test_reference_dropped_keys():
    exported = export_backbone(reference_checkpoint())

    groups = dict(group_keys(exported.dropped_keys, exported.source_prefix))
    student_tensors = len(reference_backbone()) + 3
    assert groups == {
        'student.module.backbone.*': student_tensors - 3,
        'student.module.csm_decoder.*': 1,
        'student.module.csr_decoder.*': 1,
        'student.module.css_decoder.*': 1,
        'teacher.backbone.inter_norm.*': 2,
        'teacher.csm_decoder.*': 1,
        'teacher.csr_decoder.*': 1,
        'teacher.css_decoder.*': 1,
    }


def test_reference_unknown_key_rejected():
    checkpoint = reference_checkpoint()
    checkpoint['teacher']['backbone.blocks.0.ls1.gamma'] = torch.ones(DIMS)

    with pytest.raises(ValueError, match='blocks.0.ls1.gamma'):
        export_backbone(checkpoint)


def test_reference_missing_branch_rejected():
    checkpoint = reference_checkpoint()
    del checkpoint['student']

    with pytest.raises(ValueError, match='no student backbone'):
        export_backbone(checkpoint, branch='student')


def test_mmsaip_teacher_and_student(tiny_checkpoint):
    checkpoint = load_checkpoint_file(tiny_checkpoint[0])
    source = tiny_checkpoint[1]

    teacher = export_backbone(checkpoint).state_dict
    student = export_backbone(checkpoint, branch='student').state_dict
    for key in teacher:
        assert torch.equal(teacher[key], source[TEACHER + key]), key
        assert torch.equal(student[key], source['backbone.' + key]), key
    assert not torch.equal(teacher['layers.0.attn.qkv.weight'],
                           student['layers.0.attn.qkv.weight'])
    assert 'inter_norm.weight' not in teacher


def test_mmsaip_meta_reads_config(tiny_checkpoint):
    exported = export_backbone(load_checkpoint_file(tiny_checkpoint[0]))

    meta = exported.meta
    assert meta['source_format'] == 'mmsaip'
    assert meta['branch'] == 'teacher'
    # (64, 32) pixels with 8-pixel patches, read from meta['cfg']
    assert meta['pretrain_patch_grid'] == (8, 4)
    assert meta['patch_grid'] == (8, 4)
    assert meta['img_size'] == TINY_PRETRAIN_SIZE
    assert meta['patch_size'] == TINY_PATCH_SIZE
    assert meta['with_cls_token'] is True
    assert meta['arch'] == dict(
        embed_dims=TINY_ARCH['embed_dims'],
        num_layers=TINY_ARCH['num_layers'],
        feedforward_channels=TINY_ARCH['feedforward_channels'])
    assert meta['source_iter'] == 10


def test_mmsaip_dropped_keys(tiny_checkpoint):
    exported = export_backbone(load_checkpoint_file(tiny_checkpoint[0]))

    groups = dict(group_keys(exported.dropped_keys, exported.source_prefix))
    assert groups[TEACHER + 'inter_norm.*'] == 2
    assert groups['teacher.steps'] == 1
    assert groups['backbone.*'] == len(exported.state_dict) + 2
    assert {'csm_head.*', 'csr_head.*', 'css_head.*', 'neck.*',
            'teacher.module.neck.*'} <= set(groups)
    assert len(exported.dropped_keys) + len(exported.state_dict) == len(
        tiny_checkpoint[1])


def test_saved_file_is_weights_only(tmp_path, tiny_checkpoint):
    exported = export_backbone(load_checkpoint_file(tiny_checkpoint[0]))
    path = str(tmp_path / 'export.pth')

    save_exported_backbone(exported, path)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}
    assert set(saved['state_dict']) == {
        'backbone.' + key
        for key in exported.state_dict
    }
    assert saved['meta']['patch_grid'] == (8, 4)


def test_img_size_and_no_cls_token(tiny_checkpoint):
    checkpoint = load_checkpoint_file(tiny_checkpoint[0])
    source_pos = tiny_checkpoint[1][TEACHER + 'pos_embed']

    exported = export_backbone(
        checkpoint, img_size=(64, 48), with_cls_token=False)
    assert 'cls_token' not in exported.state_dict
    assert TEACHER + 'cls_token' in exported.dropped_keys
    assert exported.meta['patch_grid'] == (8, 6)
    assert exported.meta['with_cls_token'] is False
    expected = adapt_pos_embed(source_pos, (8, 4), (8, 6), 1, 0)
    assert torch.equal(exported.state_dict['pos_embed'], expected)


def test_img_size_not_multiple_rejected(tiny_checkpoint):
    with pytest.raises(ValueError, match='multiple of the patch size 8'):
        export_backbone(
            load_checkpoint_file(tiny_checkpoint[0]), img_size=(60, 48))


def test_wrong_pretrain_size_rejected(tiny_checkpoint):
    with pytest.raises(ValueError, match='--pretrain-img-size'):
        export_backbone(
            load_checkpoint_file(tiny_checkpoint[0]),
            pretrain_img_size=(64, 64))


def test_missing_teacher_rejected(tiny_checkpoint):
    checkpoint = load_checkpoint_file(tiny_checkpoint[0])
    checkpoint['state_dict'] = {
        key: value
        for key, value in checkpoint['state_dict'].items()
        if not key.startswith('teacher.')
    }

    with pytest.raises(ValueError, match='--branch student'):
        export_backbone(checkpoint)


def test_incomplete_backbone_rejected(tiny_checkpoint):
    checkpoint = load_checkpoint_file(tiny_checkpoint[0])
    del checkpoint['state_dict'][TEACHER + 'pos_embed']

    with pytest.raises(ValueError, match="lacks \\['pos_embed'\\]"):
        export_backbone(checkpoint)


def test_foreign_checkpoint_rejected():
    classifier = {
        'state_dict': {
            'backbone.layers.0.ln1.weight': torch.ones(4),
            'head.fc.weight': torch.ones(2, 4),
        },
        'meta': {},
    }

    assert detect_checkpoint_format(reference_checkpoint()) == 'reference'
    with pytest.raises(ValueError, match="Expected either an mmsaip"):
        export_backbone(classifier)


def test_exported_checkpoint_gets_hint(tmp_path, tiny_checkpoint):
    path = str(tmp_path / 'export.pth')
    export_to(tiny_checkpoint[0], path)

    with pytest.raises(ValueError, match='exported backbone already'):
        export_backbone(torch.load(path, weights_only=True))


def test_invalid_branch_rejected(tiny_checkpoint):
    with pytest.raises(ValueError, match="branch must be one of"):
        export_backbone(
            load_checkpoint_file(tiny_checkpoint[0]), branch='ema')


def run_tool(monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, 'argv', [TOOL, *args])
    # The value the tool sets for its process, undone after the test.
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    runpy.run_path(TOOL, run_name='__main__')


def test_tool_reports_tensors_and_groups(tmp_path, monkeypatch, capsys,
                                         tiny_checkpoint):
    dst = str(tmp_path / 'out' / 'export.pth')

    run_tool(monkeypatch, tiny_checkpoint[0], dst, '--img-size', '64', '48')
    output = capsys.readouterr().out
    saved = torch.load(dst, weights_only=True)
    num_tensors = len(saved['state_dict'])
    assert f'Wrote {num_tensors} tensors to {dst}' in output
    assert 'pos_embed on a 8x6 grid (64x48 input), class token kept' in output
    assert f'  {TEACHER}inter_norm.*: 2\n' in output
    assert '  teacher.steps: 1\n' in output
    # Grouped: one line per module, not one per tensor.
    assert len(output.splitlines()) < 20


def test_tool_reference_checkpoint(tmp_path, monkeypatch, capsys):
    src = str(tmp_path / 'checkpoint.pth')
    dst = str(tmp_path / 'export.pth')
    torch.save(reference_checkpoint(), src)

    run_tool(monkeypatch, src, dst, '--branch', 'student', '--no-cls-token')
    output = capsys.readouterr().out
    assert 'Read the student backbone' in output
    assert '(reference checkpoint)' in output
    backbone = SAIPViTBackbone(
        img_size=(256, 192),
        with_cls_token=False,
        init_cfg=dict(type='Pretrained', checkpoint=dst, prefix='backbone.'))
    backbone.init_weights()
    assert backbone.pos_embed.shape == (1, 16 * 12, DIMS)


def test_tool_error_exits(tmp_path, monkeypatch):
    src = str(tmp_path / 'classifier.pth')
    torch.save({'state_dict': {'head.fc.weight': torch.ones(2, 2)}}, src)

    with pytest.raises(SystemExit, match='Not a SAIP pretraining checkpoint'):
        run_tool(monkeypatch, src, str(tmp_path / 'out.pth'))
    assert not osp.exists(tmp_path / 'out.pth')


@pytest.mark.integration
def test_round_trip_short_pretraining(tmp_path, pretraining_checkpoint):
    source = torch.load(
        pretraining_checkpoint, map_location='cpu',
        weights_only=False)['state_dict']
    path = str(tmp_path / 'export.pth')

    export_to(pretraining_checkpoint, path)
    backbone = SAIPViTBackbone(
        arch=dict(TINY_ARCH),
        img_size=TINY_PRETRAIN_SIZE,
        patch_size=TINY_PATCH_SIZE,
        init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    backbone.init_weights()
    loaded = backbone.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, source[TEACHER + key]), key
    # After a few EMA steps the teacher differs from the student.
    assert not torch.equal(loaded['layers.0.attn.qkv.weight'],
                           source['backbone.layers.0.attn.qkv.weight'])
