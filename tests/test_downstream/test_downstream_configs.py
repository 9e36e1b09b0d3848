"""Downstream configs: recipe values, datasets, and the full-size models
built from an exported checkpoint."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmcv import imread
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DATASETS, MODELS, TRANSFORMS, DefaultScope
from transfer_test_utils import (DOWNSTREAM_CONFIGS, config_path, export_to,
                                 full_size_training_checkpoint)

import mmsaip  # noqa: F401
from mmsaip.models.utils import adapt_pos_embed

pytestmark = pytest.mark.usefixtures('seeded')

TEACHER = 'teacher.module.backbone.'
PRETRAIN_GRID = (16, 8)
EMBED_DIMS = 192
# (config key, input (H, W) of the forward check)
FORWARD_SIZES = {
    'pose': (256, 192),
    'crowdhuman': (128, 160),
    'coco_person': (128, 160),
    'lip': (64, 64),
    'cihp': (64, 64),
}


@pytest.fixture(scope='module')
def full_size_export(tmp_path_factory):
    """Full ViT-Tiny teacher export and the training checkpoint's tensors."""
    folder = tmp_path_factory.mktemp('full_size')
    source = str(folder / 'saip.pth')
    state_dict = full_size_training_checkpoint(source)
    export = str(folder / 'teacher.pth')
    weights = export_to(source, export)
    return export, weights, state_dict


def build_model(task: str, checkpoint: str):
    cfg = Config.fromfile(config_path(task))
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, revert_sync_batchnorm(model).eval()


@pytest.mark.parametrize('task', sorted(DOWNSTREAM_CONFIGS))
def test_config_recipe(task):
    cfg = Config.fromfile(config_path(task))

    assert cfg.custom_imports == dict(
        imports=['mmsaip'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type == 'mmpretrain.SAIPViTBackbone'
    assert backbone.arch == 'deit-tiny'
    assert backbone.init_cfg.type == 'Pretrained'
    assert backbone.init_cfg.prefix == 'backbone.'
    assert cfg.optim_wrapper.constructor == (
        'mmpretrain.BackboneLayerDecayOptimWrapperConstructor')
    # tools/train.py --auto-scale-lr needs it.
    assert cfg.auto_scale_lr.base_batch_size > 0
    assert not osp.isabs(cfg.train_dataloader.dataset.data_root)
    assert cfg.train_dataloader.dataset.data_root.startswith('data/')


@pytest.mark.integration
@pytest.mark.parametrize('task', sorted(DOWNSTREAM_CONFIGS))
def test_full_size_model_from_export(task, full_size_export):
    export, weights, source = full_size_export
    cfg, model = build_model(task, export)

    # Every backbone tensor comes from the export: none missing, none left.
    loaded = model.backbone.state_dict()
    with_cls_token = cfg.model.backbone.get('with_cls_token', True)
    expected_keys = set(weights) - (set() if with_cls_token else
                                    {'cls_token'})
    assert set(loaded) == expected_keys
    for key, value in loaded.items():
        if key != 'pos_embed':
            assert torch.equal(value, weights[key]), key
    patch_size = cfg.model.backbone.patch_size
    img_size = cfg.model.backbone.img_size
    task_grid = (img_size[0] // patch_size, img_size[1] // patch_size)
    expected_pos = adapt_pos_embed(weights['pos_embed'], PRETRAIN_GRID,
                                   task_grid, 1, int(with_cls_token))
    assert torch.equal(loaded['pos_embed'], expected_pos)
    # The teacher branch of the training checkpoint, not the student.
    name = 'layers.7.ffn.layers.0.0.weight'
    assert torch.equal(loaded[name], source[TEACHER + name])
    assert not torch.equal(loaded[name], source['backbone.' + name])

    # A forward pass through the task's neck and head.
    height, width = FORWARD_SIZES[task]
    images = torch.randn(1, 3, height, width)
    with torch.no_grad():
        features = model.extract_feat(images)
        if task == 'pose':
            # stride-16 map upsampled 4x: heatmaps at a quarter of the input
            heatmaps = model.head.forward(features)
            assert heatmaps.shape == (1, 17, height // 4, width // 4)
        elif task in ('crowdhuman', 'coco_person'):
            strides = (4, 8, 16, 32, 64)
            assert [tuple(f.shape[2:]) for f in features] == [
                (-(-height // s), -(-width // s)) for s in strides
            ]
            assert all(f.shape[1] == 256 for f in features)
        else:
            assert len(features) == 4
            logits = model.decode_head.forward(features)
            assert logits.shape == (1, 20, height // 4, width // 4)


def test_pose_codec_matches_backbone():
    cfg = Config.fromfile(config_path('pose'))

    height, width = cfg.model.backbone.img_size
    assert (height, width) == (256, 192)
    assert cfg.codec.input_size == (width, height)
    assert cfg.model.backbone.with_cls_token is False
    assert cfg.val_evaluator.type == 'CocoMetric'


def test_detection_evaluators():
    crowdhuman = Config.fromfile(config_path('crowdhuman'))
    coco_person = Config.fromfile(config_path('coco_person'))

    assert crowdhuman.val_evaluator.type == 'CrowdHumanMetric'
    assert crowdhuman.val_evaluator.metric == ['AP', 'MR', 'JI']
    assert crowdhuman.train_cfg.max_epochs == 30
    assert coco_person.val_evaluator.type == 'CocoMetric'
    assert coco_person.val_evaluator.metric == 'bbox'
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = coco_person[loader].dataset
        assert dataset.metainfo.classes == ('person', )
    assert coco_person.model.roi_head.bbox_head.num_classes == 1


def test_lip_flip_swaps_left_and_right(shared_data_root):
    cfg = Config.fromfile(config_path('lip'))
    flip_cfg = next(t for t in cfg.train_dataloader.dataset.pipeline
                    if t['type'] == 'RandomFlip')
    with DefaultScope.overwrite_default_scope('mmseg'):
        flip = TRANSFORMS.build(dict(flip_cfg, prob=1.0))
    label = imread(
        osp.join(shared_data_root, 'LIP', 'train_segmentations',
                 '684_2150041.png'), 'unchanged')
    image = np.zeros((*label.shape, 3), dtype=np.uint8)

    flipped = flip(dict(img=image, gt_seg_map=label.copy(),
                        seg_fields=['gt_seg_map']))['gt_seg_map']
    mirrored = label[:, ::-1]
    # This image has both arms (14 left, 15 right) and a face (13).
    assert (mirrored == 14).any()
    assert (mirrored == 15).any()
    assert np.array_equal(flipped == 15, mirrored == 14)
    assert np.array_equal(flipped == 14, mirrored == 15)
    assert np.array_equal(flipped == 13, mirrored == 13)


def test_cihp_dataset_reads_release_layout(shared_data_root):
    cfg = Config.fromfile(config_path('cihp'))
    dataset_cfg = cfg.val_dataloader.dataset
    dataset_cfg.data_root = osp.join(shared_data_root, 'CIHP')

    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 5
    assert len(dataset.metainfo['classes']) == 20
    assert dataset.metainfo['classes'][10] == 'Torso-skin'
    sample = dataset[0]
    labels = np.unique(sample['data_samples'].gt_sem_seg.data.numpy())
    assert labels.min() >= 0
    assert labels.max() < 20
    assert osp.basename(sample['data_samples'].seg_map_path) == '0002190.png'
