"""Fine-tune a short-pretrained SAIP backbone for human parsing on CPU."""
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

CROP_SIZE = (64, 64)
IMG_SCALE = (128, 64)  # (long, short) side limits of the resize
# The tiny backbone has 4 blocks, and each one is tapped.
OUT_INDICES = (0, 1, 2, 3)
MAX_ITERS = 4
# (config, folder under the shared data, number of validation images)
DATASETS = {'lip': ('LIP', 1), 'cihp': ('CIHP', 5)}


def tiny_parsing_cfg(task: str, work_dir: str, checkpoint: str,
                     data_root: str) -> Config:
    """A parsing config with a tiny model, on the small real data set."""
    cfg = Config.fromfile(config_path(task))
    channels = TINY_ARCH['embed_dims']
    model = cfg.model
    model.data_preprocessor.size = CROP_SIZE
    model.backbone = tiny_backbone(
        model.backbone, checkpoint, CROP_SIZE, out_indices=OUT_INDICES)
    model.neck.update(
        in_channels=[channels] * len(OUT_INDICES), out_channels=channels)
    model.decode_head.update(
        in_channels=[channels] * len(OUT_INDICES), channels=channels)
    model.auxiliary_head.update(in_channels=channels, channels=channels)

    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.data_root = osp.join(data_root, DATASETS[task][0])
        for transform in loader.dataset.pipeline:
            if transform['type'] in ('Resize', 'RandomResize'):
                transform['scale'] = IMG_SCALE
            if transform['type'] == 'RandomCrop':
                transform['crop_size'] = CROP_SIZE
    cfg.train_dataloader.batch_size = 2
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator

    cfg.train_cfg.update(max_iters=MAX_ITERS, val_interval=MAX_ITERS)
    cfg.param_scheduler[0].end = 2  # a short warm-up for a short run
    cfg.param_scheduler[1].update(begin=2, end=MAX_ITERS)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = MAX_ITERS
    cfg.work_dir = work_dir
    # The toolboxes name their visualizer 'visualizer', and mmengine returns
    # an existing instance of that name: a second run in this process would
    # log its scalars into the first run's folder.
    cfg.visualizer.name = work_dir
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.mark.parametrize('task', sorted(DATASETS))
def test_parsing_finetune_and_evaluate(task, tmp_path, shared_data_root,
                                       pretraining_checkpoint):
    checkpoint = str(tmp_path / 'backbone.pth')
    exported = export_to(pretraining_checkpoint, checkpoint)
    runner = Runner.from_cfg(
        tiny_parsing_cfg(task, str(tmp_path), checkpoint, shared_data_root))

    runner.train()
    metrics = runner.test()

    check_run(runner, MAX_ITERS)
    backbone = runner.model.backbone
    assert not torch.equal(backbone.layers[0].attn.qkv.weight.detach(),
                           exported['layers.0.attn.qkv.weight'])
    assert len(runner.test_dataloader.dataset) == DATASETS[task][1]
    assert len(runner.test_dataloader.dataset.metainfo['classes']) == 20
    # mmseg reports percentages.
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert 0.0 <= metrics[key] <= 100.0, (key, metrics[key])
