"""The CrowdHuman config's dataset and metric on the real odgt record."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS, METRICS, DefaultScope
from transfer_test_utils import config_path

import mmsaip  # noqa: F401

RECORD_ID = '283554,35288000868e92d4'
# The record's image is not available. A size that contains every full-body
# box keeps the metric from clipping them.
IMAGE_HEIGHT, IMAGE_WIDTH = 2048, 1800


@pytest.fixture
def odgt_root(shared_data_root) -> str:
    return osp.join(shared_data_root, 'crowdhuman_odgt_sample')


@pytest.fixture
def image_sizes(tmp_path) -> str:
    """The id -> (height, width) cache that CrowdHumanDataset reads."""
    path = tmp_path / 'id_hw.json'
    path.write_text(json.dumps({RECORD_ID: [IMAGE_HEIGHT, IMAGE_WIDTH]}))
    return str(path)


def load_record(odgt_root: str) -> dict:
    with open(osp.join(odgt_root, 'annotation_train.odgt')) as f:
        return json.loads(f.readline())


def test_dataset_parses_record(odgt_root, image_sizes):
    cfg = Config.fromfile(config_path('crowdhuman'))
    dataset_cfg = cfg.val_dataloader.dataset
    dataset_cfg.update(
        data_root=odgt_root,
        ann_file='annotation_train.odgt',
        extra_ann_file=image_sizes,
        pipeline=[])

    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 1
    info = dataset.get_data_info(0)
    assert info['img_id'] == RECORD_ID
    assert (info['height'], info['width']) == (IMAGE_HEIGHT, IMAGE_WIDTH)
    instances = info['instances']
    # six people and one 'mask' region, which is ignored
    assert len(instances) == 7
    assert [inst['ignore_flag'] for inst in instances] == [0] * 6 + [1]
    x, y, w, h = load_record(odgt_root)['gtboxes'][1]['fbox']
    assert instances[1]['bbox'] == [x, y, x + w, y + h]


def test_metric_on_ground_truth_boxes(odgt_root):
    cfg = Config.fromfile(config_path('crowdhuman'))
    metric_cfg = dict(
        cfg.val_evaluator,
        ann_file=osp.join(odgt_root, 'annotation_train.odgt'),
        num_ji_process=1)
    with DefaultScope.overwrite_default_scope('mmdet'):
        metric = METRICS.build(metric_cfg)
    metric.dataset_meta = dict(classes=('person', ))
    people = [
        box['fbox'] for box in load_record(odgt_root)['gtboxes']
        if box['tag'] == 'person'
    ]
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in people],
                         dtype=torch.float32)

    metric.process({}, [
        dict(
            img_id=RECORD_ID,
            ori_shape=(IMAGE_HEIGHT, IMAGE_WIDTH),
            pred_instances=dict(
                bboxes=boxes, scores=torch.linspace(0.9, 0.5, len(people))))
    ])
    results = metric.evaluate(size=1)
    # Every person found once, nothing else. CrowdHuman's AP integrates the
    # precision-recall curve from the first detection on, so N perfect
    # detections score (N - 1) / N. JI is full and nothing is missed.
    num_people = len(people)
    assert num_people == 6
    assert results['crowd_human/mAP'] == pytest.approx(
        (num_people - 1) / num_people, abs=1e-4)
    assert results['crowd_human/mMR'] == pytest.approx(0.0)
    assert results['crowd_human/JI'] == pytest.approx(1.0)
