"""Helpers for the transfer tests: a short SAIP pretraining, exports and
tiny downstream backbones."""
import os.path as osp
from typing import Dict, Optional, Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from saip_test_utils import REPO_ROOT, tiny_saip_model_cfg, tiny_saip_view_cfg

from mmsaip.utils import load_checkpoint_file, setup_checkpoint_loading
from mmsaip.utils.convert import export_backbone, save_exported_backbone

DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'saip',
                       'saip_vit-tiny_1xb8-40it_demo.py')
DOWNSTREAM_CONFIGS = {
    'pose':
    'configs/pose/td-hm_saip-vit-tiny-simple_8xb64-210e_coco-256x192.py',
    'crowdhuman':
    'configs/detection/faster-rcnn_saip-vit-tiny_sfp_8xb2-30e_crowdhuman.py',
    'coco_person':
    'configs/detection/faster-rcnn_saip-vit-tiny_sfp_8xb2-12e_coco-person.py',
    'lip': 'configs/parsing/upernet_saip-vit-tiny_8xb4-80k_lip-512x512.py',
    'cihp': 'configs/parsing/upernet_saip-vit-tiny_8xb4-80k_cihp-512x512.py',
}

# The tiny pretraining backbone: 4 blocks (so that parsing can tap four
# depths), 8-pixel patches on 64x32 crops, an 8x4 patch grid.
TINY_ARCH = dict(
    embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
TINY_PATCH_SIZE = 8
TINY_PRETRAIN_SIZE = (64, 32)
PRETRAIN_ITERS = 6


def config_path(task: str) -> str:
    """Absolute path of a downstream config."""
    return osp.join(REPO_ROOT, DOWNSTREAM_CONFIGS[task])


def short_pretraining_cfg(work_dir: str, data_root: str,
                          max_iters: int = PRETRAIN_ITERS) -> Config:
    """The demo config with a tiny 4-block model, for a few CPU steps."""
    cfg = Config.fromfile(DEMO_CONFIG)
    model = tiny_saip_model_cfg()
    model['backbone']['arch'] = dict(TINY_ARCH)
    model['data_preprocessor'] = cfg.model.data_preprocessor
    cfg.model = model
    cfg.train_dataloader.dataset.pipeline[1] = tiny_saip_view_cfg()
    cfg.train_dataloader.update(
        batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_cfg.max_iters = max_iters
    warmup_iters = max_iters // 2
    cfg.param_scheduler[0].end = warmup_iters
    cfg.param_scheduler[1].update(
        T_max=max_iters - warmup_iters, begin=warmup_iters, end=max_iters)
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    return cfg


def run_short_pretraining(work_dir: str, data_root: str) -> str:
    """Pretrain the tiny SAIP model for a few steps, once per folder.

    Returns:
        str: The path of the last training checkpoint.
    """
    checkpoint = osp.join(work_dir, f'iter_{PRETRAIN_ITERS}.pth')
    if not osp.isfile(checkpoint):
        setup_checkpoint_loading()
        # The Runner sets mmpretrain's default scope, and the context
        # manager removes it again afterwards.
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            runner = Runner.from_cfg(
                short_pretraining_cfg(work_dir, data_root))
            runner.train()
    return checkpoint


@pytest.fixture(scope='session')
def pretraining_checkpoint(tmp_path_factory, shared_data_root) -> str:
    """Training checkpoint of a short tiny SAIP pretraining on real crops,
    made once per test session."""
    work_dir = tmp_path_factory.getbasetemp() / 'saip_pretraining'
    return run_short_pretraining(
        str(work_dir), osp.join(shared_data_root, 'person_crops'))


def export_to(src: str,
              dst: str,
              branch: str = 'teacher',
              img_size: Optional[Tuple[int, int]] = None,
              with_cls_token: bool = True) -> Dict[str, torch.Tensor]:
    """Export a backbone as tools/convert_checkpoint.py does.

    Returns:
        dict[str, Tensor]: The exported weights, without prefix.
    """
    exported = export_backbone(
        load_checkpoint_file(src),
        branch=branch,
        img_size=img_size,
        with_cls_token=with_cls_token)
    save_exported_backbone(exported, dst)
    return exported.state_dict


def tiny_backbone(cfg_backbone: dict, checkpoint: str,
                  img_size: Tuple[int, int], **overrides) -> dict:
    """A config's backbone with the tiny arch, loading ``checkpoint``."""
    backbone = dict(cfg_backbone)
    backbone.update(
        arch=dict(TINY_ARCH),
        patch_size=TINY_PATCH_SIZE,
        img_size=img_size,
        pretrain_img_size=TINY_PRETRAIN_SIZE,
        drop_path_rate=0.0)
    backbone['init_cfg'] = dict(backbone['init_cfg'], checkpoint=checkpoint)
    backbone.update(overrides)
    return backbone


def saip_training_checkpoint(path: str,
                             model_cfg: Optional[dict] = None) -> dict:
    """Save a SAIP model the way mmengine's Runner saves a checkpoint.

    The teacher backbone is shifted by +1 after building, so that the two
    branches hold different values (a fresh EMA teacher equals the
    student).

    Args:
        path (str): Output file.
        model_cfg (dict, optional): SAIP config. Defaults to the tiny model
            with :data:`TINY_ARCH`.

    Returns:
        dict: The saved state dict.
    """
    from mmpretrain.registry import MODELS
    if model_cfg is None:
        model_cfg = tiny_saip_model_cfg()
        model_cfg['backbone']['arch'] = dict(TINY_ARCH)
    model = MODELS.build(model_cfg)
    with torch.no_grad():
        for param in model.teacher.module['backbone'].parameters():
            param.add_(1.0)
    state_dict = model.state_dict()
    torch.save(
        {
            'meta': {
                'epoch': 0,
                'iter': 10,
                'cfg': Config(dict(model=model_cfg)).pretty_text,
            },
            'state_dict': state_dict,
            'message_hub': {},
            'optimizer': {},
        }, path)
    return state_dict


def full_size_training_checkpoint(path: str) -> dict:
    """Save full ViT-Tiny teacher and student backbones in the layout of an
    mmsaip training checkpoint (the large pretraining heads left out).

    Returns:
        dict: The saved state dict.
    """
    from mmsaip.models import SAIPViT
    state_dict = {}
    for seed, prefix in ((0, 'backbone.'), (1, 'teacher.module.backbone.')):
        torch.manual_seed(seed)
        backbone = SAIPViT()
        backbone.init_weights()
        state_dict.update({
            prefix + key: value
            for key, value in backbone.state_dict().items()
        })
    state_dict['csm_head.center'] = torch.zeros(1, 8)
    torch.save({'meta': {'iter': 10}, 'state_dict': state_dict}, path)
    return state_dict
