"""Fine-tune a short-pretrained SAIP backbone for person detection on CPU."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from transfer_run_utils import check_run
from transfer_test_utils import (TINY_ARCH, config_path, export_to,
                                 tiny_backbone)

import mmsaip  # noqa: F401

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures('single_thread')
]

IMG_SCALE = (160, 128)  # (W, H) limits of the keep-ratio resize
# The keep-ratio resize of COCO photos fits in 128 x 160 (H, W) after
# padding to 32.
BACKBONE_SIZE = (128, 160)
# 8-pixel patches give a stride-8 map: scales 2 to 0.25 make strides 4-32.
SCALE_FACTORS = (2.0, 1.0, 0.5, 0.25)
WIDTH = 32
BATCH_SIZE = 2
TRAIN_IMAGES = 8


def tiny_detection_cfg(work_dir: str, checkpoint: str,
                       data_root: str) -> Config:
    """The COCO-person config with a tiny model, on coco_mini."""
    cfg = Config.fromfile(config_path('coco_person'))
    model = cfg.model
    model.backbone = tiny_backbone(model.backbone, checkpoint, BACKBONE_SIZE)
    model.neck.update(
        in_channels=TINY_ARCH['embed_dims'],
        out_channels=WIDTH,
        scale_factors=SCALE_FACTORS)
    model.rpn_head.update(in_channels=WIDTH, feat_channels=WIDTH)
    model.roi_head.bbox_roi_extractor.out_channels = WIDTH
    model.roi_head.bbox_head.update(in_channels=WIDTH, fc_out_channels=WIDTH)

    # coco_mini: 36 COCO train2017 images with person boxes, used for both
    # the short training and the evaluation.
    coco_root = osp.join(data_root, 'coco_mini')
    ann_file = 'annotations/person_keypoints_train2017.json'
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(
            batch_size=BATCH_SIZE, num_workers=0, persistent_workers=False)
        loader.dataset.update(
            data_root=coco_root,
            ann_file=ann_file,
            data_prefix=dict(img='train2017/'))
        for transform in loader.dataset.pipeline:
            if transform['type'] == 'Resize':
                transform['scale'] = IMG_SCALE
    cfg.train_dataloader.dataset.indices = TRAIN_IMAGES
    cfg.val_evaluator.ann_file = osp.join(coco_root, ann_file)
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


def test_detection_finetune_and_evaluate(tmp_path, shared_data_root,
                                         pretraining_checkpoint):
    checkpoint = str(tmp_path / 'backbone.pth')
    exported = export_to(pretraining_checkpoint, checkpoint)
    runner = Runner.from_cfg(
        tiny_detection_cfg(str(tmp_path), checkpoint, shared_data_root))

    runner.train()
    metrics = runner.test()

    check_run(runner, TRAIN_IMAGES // BATCH_SIZE)
    backbone = runner.model.backbone
    assert not torch.equal(backbone.layers[0].attn.qkv.weight.detach(),
                           exported['layers.0.attn.qkv.weight'])
    assert runner.test_dataloader.dataset.metainfo['classes'] == ('person', )
    assert len(runner.test_dataloader.dataset) == 36
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
