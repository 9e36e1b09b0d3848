import logging
import os.path as osp
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmpretrain.registry import DATASETS
from PIL import Image

import mmsaip.datasets  # noqa: F401  (registers the dataset)
from mmsaip.datasets import PersonImageDataset

FULL_PIPELINE = [
    dict(type='LoadPersonImage'),
    dict(type='SAIPMultiView'),
    dict(type='PackSAIPInputs'),
]


@pytest.fixture
def image_folder(tmp_path: Path, person_crop_paths: List[str]) -> Path:
    """Four real crops in nested folders, one with an upper-case extension,
    next to a text file that the scan must ignore."""
    root = tmp_path / 'images'
    (root / 'a').mkdir(parents=True)
    (root / 'b' / 'c').mkdir(parents=True)
    targets = ['a/p0.jpg', 'a/p1.JPG', 'b/p2.jpeg', 'b/c/p3.jpg']
    for source, target in zip(person_crop_paths, targets):
        shutil.copy(source, root / target)
    (root / 'b' / 'notes.txt').write_text('not an image\n')
    return root


@pytest.fixture
def background_folder(tmp_path: Path, person_crop_paths: List[str]) -> Path:
    root = tmp_path / 'backgrounds'
    root.mkdir()
    for index, source in enumerate(person_crop_paths[4:]):
        shutil.copy(source, root / f'bg{index}.jpg')
    return root


class _RecordList(logging.Handler):
    """Logging handler that keeps every record in ``self.records``."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def mmlogger_records() -> List[logging.LogRecord]:
    """Records of the current MMLogger. It has no parent logger, so pytest's
    caplog, which listens on the root logger, does not see them."""
    logger = MMLogger.get_current_instance()
    handler = _RecordList()
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def _write_mixed_folder(root: Path, crop_paths: List[str]) -> Dict[str, set]:
    """Write real crops, unusual but valid images and broken files.

    Returns:
        dict: ``good`` and ``bad`` sets of absolute file paths.
    """
    root.mkdir()
    good, bad = set(), set()
    for index, source in enumerate(crop_paths[:3]):
        target = root / f'real{index}.jpg'
        shutil.copy(source, target)
        good.add(str(target))

    gray = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    rgba = np.dstack([np.full((30, 20, 3), 90, np.uint8), gray])
    valid = {
        'gray.png': Image.fromarray(gray, 'L'),
        'palette.png': Image.fromarray(gray, 'L').convert('P'),
        'rgba.png': Image.fromarray(rgba, 'RGBA'),
        'cmyk.jpg': Image.new('CMYK', (20, 30), (10, 200, 30, 5)),
        'deep16.png': Image.fromarray((gray.astype(np.uint16) * 100)),
    }
    for name, image in valid.items():
        image.save(root / name)
        good.add(str(root / name))
    Image.fromarray(gray, 'L').convert('P').save(
        root / 'palette_transparent.png', transparency=3)
    good.add(str(root / 'palette_transparent.png'))

    jpeg_bytes = Path(crop_paths[3]).read_bytes()
    broken = {
        'truncated.jpg': jpeg_bytes[:len(jpeg_bytes) // 2],
        'zero_bytes.jpg': b'',
        'text.jpg': b'plain text, not a JPEG\n',
    }
    for name, data in broken.items():
        (root / name).write_bytes(data)
        bad.add(str(root / name))
    return dict(good=good, bad=bad)


def test_folder_scan(image_folder):
    dataset = DATASETS.build(
        dict(type='PersonImageDataset', data_root=str(image_folder)))
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    expected = sorted(
        str(image_folder / name)
        for name in ('a/p0.jpg', 'a/p1.JPG', 'b/p2.jpeg', 'b/c/p3.jpg'))
    assert paths == expected


def test_list_file(image_folder):
    (image_folder / 'train.txt').write_text(
        '# LUPerson subset\n\nb/c/p3.jpg\n  a/p0.jpg  \n# a/p1.JPG\n')
    dataset = PersonImageDataset(
        data_root=str(image_folder), ann_file='train.txt')
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    assert paths == [
        str(image_folder / 'b/c/p3.jpg'),
        str(image_folder / 'a/p0.jpg')
    ]


def test_list_file_missing_files(image_folder):
    names = [f'missing/{i}.jpg' for i in range(7)]
    (image_folder / 'train.txt').write_text('\n'.join(['a/p0.jpg'] + names))
    with pytest.raises(FileNotFoundError) as info:
        PersonImageDataset(data_root=str(image_folder), ann_file='train.txt')
    message = str(info.value)
    assert '7 of 8' in message
    for name in names[:5]:
        assert str(image_folder / name) in message
    assert names[5] not in message


def test_list_file_not_text(image_folder, person_crop_paths):
    shutil.copy(person_crop_paths[0], image_folder / 'train.txt')
    with pytest.raises(ValueError, match='train.txt'):
        PersonImageDataset(data_root=str(image_folder), ann_file='train.txt')


def test_list_file_not_found(image_folder):
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        PersonImageDataset(data_root=str(image_folder), ann_file='nope.txt')


def test_missing_data_root(tmp_path):
    missing = tmp_path / 'lupsub'
    with pytest.raises(FileNotFoundError) as info:
        PersonImageDataset(data_root=str(missing))
    assert str(missing) in str(info.value)
    assert 'train_dataloader.dataset.data_root=' in str(info.value)


def test_empty_data_root(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'readme.txt').write_text('no images here\n')
    with pytest.raises(FileNotFoundError) as info:
        PersonImageDataset(data_root=str(empty))
    assert str(empty) in str(info.value)
    assert 'train_dataloader.dataset.data_root=' in str(info.value)

    with pytest.raises(FileNotFoundError, match='data_root is empty'):
        PersonImageDataset(data_root='')


def test_background_from_same_dataset(image_folder):
    dataset = PersonImageDataset(data_root=str(image_folder))
    all_paths = {
        dataset.get_data_info(i)['img_path']
        for i in range(len(dataset))
    }
    np.random.seed(0)
    drawn = set()
    for _ in range(10):
        for idx in range(len(dataset)):
            sample = dataset[idx]
            assert sample['background_path'] != sample['img_path']
            assert sample['background_path'] in all_paths
            drawn.add(sample['background_path'])
    assert drawn == all_paths


def test_background_single_image(image_folder, person_crop_paths, tmp_path):
    single = tmp_path / 'single'
    single.mkdir()
    shutil.copy(person_crop_paths[0], single / 'only.jpg')
    sample = PersonImageDataset(data_root=str(single))[0]
    assert sample['background_path'] == sample['img_path']


def test_background_root(image_folder, background_folder):
    (background_folder / 'bg.txt').write_text('bg1.jpg\n')
    listed = PersonImageDataset(
        data_root=str(image_folder),
        background_root=str(background_folder),
        background_ann_file='bg.txt')
    scanned = PersonImageDataset(
        data_root=str(image_folder), background_root=str(background_folder))

    np.random.seed(0)
    for idx in range(len(listed)):
        assert listed[idx]['background_path'] == str(background_folder /
                                                     'bg1.jpg')
    scanned_backgrounds = {
        scanned[i % 4]['background_path']
        for i in range(40)
    }
    assert scanned_backgrounds == {
        str(background_folder / 'bg0.jpg'),
        str(background_folder / 'bg1.jpg')
    }

    with pytest.raises(FileNotFoundError, match='background_root'):
        PersonImageDataset(
            data_root=str(image_folder),
            background_root=str(background_folder / 'missing'))


def test_background_seed_reproducible(image_folder):
    dataset = PersonImageDataset(data_root=str(image_folder))
    np.random.seed(5)
    first = [dataset[i % 4]['background_path'] for i in range(20)]
    np.random.seed(5)
    second = [dataset[i % 4]['background_path'] for i in range(20)]
    assert first == second


def test_full_pipeline_sample(image_folder):
    dataset = PersonImageDataset(
        data_root=str(image_folder), pipeline=FULL_PIPELINE)
    np.random.seed(0)
    sample = dataset[1]
    inputs = sample['inputs']
    assert tuple(inputs['global_views'].shape) == (2, 3, 256, 128)
    assert tuple(inputs['local_views'].shape) == (6, 3, 128, 64)
    assert inputs['canvas'].dtype == torch.uint8
    assert inputs['inst_mask'].dtype == torch.bool
    data_sample = sample['data_samples']
    assert data_sample.img_path == str(image_folder / 'a/p1.JPG')
    assert data_sample.background_path != data_sample.img_path


def test_skips_broken_images(tmp_path, person_crop_paths, background_folder,
                             mmlogger_records):
    files = _write_mixed_folder(tmp_path / 'mixed', person_crop_paths)
    dataset = PersonImageDataset(
        data_root=str(tmp_path / 'mixed'),
        background_root=str(background_folder),
        pipeline=[dict(type='LoadPersonImage')])
    assert len(dataset) == len(files['good']) + len(files['bad'])

    np.random.seed(0)
    loaded, skipped = set(), set()
    for idx in range(len(dataset)):
        path = dataset.get_data_info(idx)['img_path']
        sample = dataset.prepare_data(idx)
        if sample is None:
            skipped.add(path)
            continue
        loaded.add(path)
        assert sample['img'].dtype == np.uint8
        assert sample['img'].ndim == 3
        assert sample['img'].shape[2] == 3

    assert loaded == files['good']
    assert skipped == files['bad']
    assert dataset.num_skipped == len(files['bad'])
    assert dataset.num_loaded == len(files['good'])
    assert dataset.num_attempts == len(dataset)

    warnings = [
        record.getMessage() for record in mmlogger_records
        if record.levelno == logging.WARNING
    ]
    assert len(warnings) == len(files['bad'])
    for path in files['bad']:
        assert any(path in message for message in warnings), path

    # Through __getitem__, broken samples are replaced by valid ones.
    for idx in range(len(dataset)):
        assert dataset[idx]['img_path'] in files['good']


def test_skip_ratio_limit(tmp_path, person_crop_paths, background_folder):
    files = _write_mixed_folder(tmp_path / 'mixed', person_crop_paths)
    dataset = PersonImageDataset(
        data_root=str(tmp_path / 'mixed'),
        background_root=str(background_folder),
        max_skip_ratio=0.02,
        pipeline=[dict(type='LoadPersonImage')])
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    good_idx = paths.index(sorted(files['good'])[0])
    bad_idx = paths.index(sorted(files['bad'])[0])

    np.random.seed(0)
    # 3 failures in 60 attempts: over 2 %, but below the 100-attempt minimum.
    for attempt in range(60):
        dataset.prepare_data(bad_idx if attempt % 20 == 0 else good_idx)
    assert dataset.num_skipped == 3
    for _ in range(39):
        dataset.prepare_data(good_idx)
    # The 100th attempt fails: 4 / 100 = 4 % > 2 %.
    with pytest.raises(RuntimeError) as info:
        dataset.prepare_data(bad_idx)
    message = str(info.value)
    assert '4 of 100' in message
    assert 'train_dataloader.dataset.max_skip_ratio' in message


def test_skip_ratio_all_initial_failures(tmp_path, background_folder):
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'empty.jpg').write_bytes(b'')
    dataset = PersonImageDataset(
        data_root=str(broken),
        background_root=str(background_folder),
        max_skip_ratio=1.0,
        pipeline=[dict(type='LoadPersonImage')])
    for _ in range(19):
        assert dataset.prepare_data(0) is None
    with pytest.raises(RuntimeError, match='20 of 20'):
        dataset.prepare_data(0)


def test_invalid_max_skip_ratio(image_folder):
    with pytest.raises(ValueError, match='max_skip_ratio'):
        PersonImageDataset(data_root=str(image_folder), max_skip_ratio=1.5)


def test_relative_data_root(image_folder, monkeypatch):
    monkeypatch.chdir(image_folder.parent)
    (image_folder / 'train.txt').write_text('a/p0.jpg\n')
    dataset = PersonImageDataset(data_root='images', ann_file='train.txt')
    path = dataset.get_data_info(0)['img_path']
    assert osp.isabs(path)
    assert path == str(image_folder / 'a/p0.jpg')
