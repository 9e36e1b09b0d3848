"""Every config under configs/ parses and builds its model."""
import glob
import os.path as osp

import pytest
from saip_test_utils import REPO_ROOT
from mmengine.config import Config

CONFIG_FILES = sorted(
    glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True))
LEAF_CONFIGS = [path for path in CONFIG_FILES if '_base_' not in path]


def test_configs_found():
    assert osp.join(REPO_ROOT, 'configs', 'saip',
                    'saip_vit-tiny_lupsub.py') in LEAF_CONFIGS


@pytest.mark.parametrize(
    'path', CONFIG_FILES, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_config_parses(path):
    cfg = Config.fromfile(path)
    assert isinstance(cfg.to_dict(), dict)


@pytest.mark.parametrize(
    'path', [p for p in LEAF_CONFIGS if osp.sep + 'saip' + osp.sep in p],
    ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_saip_config_recipe(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(
        imports=['mmsaip'], allow_failed_imports=False)
    assert cfg.default_scope == 'mmpretrain'
    hook_types = [hook['type'] for hook in cfg.custom_hooks]
    assert 'SAIPTeacherHook' in hook_types
    assert 'TorchRNGStateHook' in hook_types
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.model.type == 'SAIP'
    assert cfg.model.backbone.img_size == (256, 128)


def test_lupsub_recipe_values():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'saip', 'saip_vit-tiny_lupsub.py'))
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.lr == pytest.approx(2.5e-4 * 2048 / 256)
    assert optimizer.betas == (0.9, 0.95)
    assert optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.type == 'SAIPAmpOptimWrapper'
    assert cfg.optim_wrapper.accumulative_counts == 4
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.param_scheduler[0].end == 10
    assert cfg.train_dataloader.dataset.data_root == 'data/lupsub'
    assert cfg.model.neck.out_channels == 65536
    assert cfg.model.teacher.momentum == pytest.approx(1 - 0.996)
