"""Fine-tune a short-pretrained SAIP backbone for COCO pose on CPU."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from transfer_run_utils import check_run
from transfer_test_utils import (TINY_ARCH, TINY_PATCH_SIZE, config_path,
                                 export_to, tiny_backbone)

import mmsaip  # noqa: F401

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures('single_thread')
]

INPUT_SIZE = (64, 48)  # (H, W)
HEATMAP_STRIDE = 4
BATCH_SIZE = 2
TRAIN_INSTANCES = 8


def tiny_pose_cfg(work_dir: str, checkpoint: str, data_root: str) -> Config:
    """The pose config with the tiny backbone and small real data sets."""
    cfg = Config.fromfile(config_path('pose'))
    height, width = INPUT_SIZE
    codec = dict(
        cfg.codec,
        input_size=(width, height),
        heatmap_size=(width // HEATMAP_STRIDE, height // HEATMAP_STRIDE))
    cfg.model.backbone = tiny_backbone(cfg.model.backbone, checkpoint,
                                       INPUT_SIZE)
    cfg.model.neck.scale_factor = TINY_PATCH_SIZE / HEATMAP_STRIDE
    cfg.model.head.update(in_channels=TINY_ARCH['embed_dims'], decoder=codec)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(
            batch_size=BATCH_SIZE, num_workers=0, persistent_workers=False)
        for transform in loader.dataset.pipeline:
            if transform['type'] == 'TopdownAffine':
                transform['input_size'] = codec['input_size']
            if transform['type'] == 'GenerateTarget':
                transform['encoder'] = codec

    # Train on the first person instances of coco_mini (COCO train2017),
    # evaluate on mmpose's four COCO val2017 images with their true boxes.
    cfg.train_dataloader.dataset.update(
        data_root=osp.join(data_root, 'coco_mini'), indices=TRAIN_INSTANCES)
    val_root = osp.join(data_root, 'mmpose_testdata', 'coco')
    cfg.val_dataloader.dataset.update(
        data_root=val_root,
        ann_file='test_coco.json',
        data_prefix=dict(img=''),
        bbox_file=None)
    cfg.val_evaluator.ann_file = osp.join(val_root, 'test_coco.json')
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator

    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.param_scheduler[0].end = 2  # a short warm-up for a short run
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = work_dir
    # The toolboxes name their visualizer 'visualizer', and mmengine returns
    # an existing instance of that name: a second run in this process would
    # log its scalars into the first run's folder.
    cfg.visualizer.name = work_dir
    cfg.randomness = dict(seed=0)
    return cfg


def test_pose_finetune_and_evaluate(tmp_path, shared_data_root,
                                    pretraining_checkpoint):
    checkpoint = str(tmp_path / 'backbone.pth')
    exported = export_to(pretraining_checkpoint, checkpoint)
    runner = Runner.from_cfg(
        tiny_pose_cfg(str(tmp_path), checkpoint, shared_data_root))

    runner.train()
    metrics = runner.test()

    check_run(runner, TRAIN_INSTANCES // BATCH_SIZE)
    backbone = runner.model.backbone
    # Fine-tuning moved the pretrained weights. The class token was dropped.
    assert not torch.equal(backbone.layers[0].attn.qkv.weight.detach(),
                           exported['layers.0.attn.qkv.weight'])
    assert backbone.cls_token is None
    for key in ('coco/AP', 'coco/AP .5', 'coco/AR'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
