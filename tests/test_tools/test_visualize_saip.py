"""tools/analysis/visualize_saip.py on real crops with a tiny checkpoint."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from mmsaip.visualization.drawing import CAPTION_HEIGHT, PAD

PANELS = ('views', 'css', 'csr', 'attention')
# Pixel std below which a panel counts as blank.
MIN_STD = 10.
# The tiny config's canvas (56x56) is drawn 4x enlarged.
CANVAS_TILE = 56 * 4


@pytest.fixture(scope='module')
def tool(load_tool):
    return load_tool('analysis/visualize_saip.py')


def read_rgb(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def stem(path):
    return osp.splitext(osp.basename(path))[0]


def test_visualize_writes_panels(tool, tiny_run, person_crop_paths, tmp_path):
    images = [person_crop_paths[0], person_crop_paths[3]]
    out = str(tmp_path / 'vis')
    assert tool.main(
        [tiny_run.config, tiny_run.checkpoint, '--img', *images, '--out',
         out]) == 0

    expected = sorted(f'{stem(path)}_{panel}.png' for path in images
                      for panel in PANELS)
    assert sorted(os.listdir(out)) == expected
    for path in images:
        panels = {
            panel: read_rgb(osp.join(out, f'{stem(path)}_{panel}.png'))
            for panel in PANELS
        }
        for panel, image in panels.items():
            assert image.std() > MIN_STD, panel
        # Four canvas tiles in one row, and two attention rows of four.
        assert panels['css'].shape[:2] == (CAPTION_HEIGHT + CANVAS_TILE +
                                           2 * PAD, 4 * CANVAS_TILE + 5 * PAD)
        assert panels['attention'].shape[:2] == (2 * (CAPTION_HEIGHT + 256) +
                                                 3 * PAD, 4 * 128 + 5 * PAD)
        assert panels['csr'].shape[:2] == (CAPTION_HEIGHT + 240 + 2 * PAD,
                                           4 * 120 + 5 * PAD)

        # The ground-truth tile differs from the plain canvas tile.
        top = PAD + CAPTION_HEIGHT
        columns = [PAD + i * (CANVAS_TILE + PAD) for i in range(4)]
        tiles = [
            panels['css'][top:top + CANVAS_TILE,
                          left:left + CANVAS_TILE].astype(int)
            for left in columns
        ]
        changed = np.abs(tiles[1] - tiles[0]).sum(-1) > 0
        # Two pastes of 32x16 canvas pixels, each drawn 4x enlarged.
        assert changed.sum() == 2 * (32 * 4) * (16 * 4)
        for pred_tile in tiles[2:]:
            assert (np.abs(pred_tile - tiles[0]).sum(-1) > 0).any()


def test_visualize_same_seed_same_pictures(tool, tiny_run, person_crop_paths,
                                           tmp_path):
    args = [
        tiny_run.config, tiny_run.checkpoint, '--img', person_crop_paths[1],
        '--panels', 'views', 'csr'
    ]
    for name, seed in (('a', '3'), ('b', '3'), ('c', '4')):
        tool.main(args + ['--out', str(tmp_path / name), '--seed', seed])
    name = f'{stem(person_crop_paths[1])}_views.png'
    first = read_rgb(str(tmp_path / 'a' / name))
    assert np.array_equal(first, read_rgb(str(tmp_path / 'b' / name)))
    other = read_rgb(str(tmp_path / 'c' / name))
    assert first.shape != other.shape or not np.array_equal(first, other)
    assert sorted(os.listdir(tmp_path / 'a')) == sorted(
        f'{stem(person_crop_paths[1])}_{panel}.png'
        for panel in ('views', 'csr'))


def test_visualize_repeated_stems(tool, tiny_run, person_crop_paths, tmp_path):
    copy_dir = tmp_path / 'copy'
    copy_dir.mkdir()
    copy = copy_dir / osp.basename(person_crop_paths[0])
    copy.write_bytes(open(person_crop_paths[0], 'rb').read())
    out = tmp_path / 'vis'
    tool.main([
        tiny_run.config, tiny_run.checkpoint, '--img', person_crop_paths[0],
        str(copy), '--out',
        str(out), '--panels', 'css', '--branch', 'student'
    ])
    name = stem(person_crop_paths[0])
    assert sorted(os.listdir(out)) == [f'{name}_1_css.png', f'{name}_css.png']


def test_visualize_rejects_backbone_only(tool, tiny_run, person_crop_paths,
                                         tmp_path):
    state = torch.load(
        tiny_run.checkpoint, map_location='cpu',
        weights_only=False)['state_dict']
    backbone = {k: v for k, v in state.items() if k.startswith('backbone.')}
    path = str(tmp_path / 'backbone.pth')
    torch.save(dict(state_dict=backbone), path)
    with pytest.raises(ValueError, match='full SAIP training checkpoint'):
        tool.main([
            tiny_run.config, path, '--img', person_crop_paths[0], '--out',
            str(tmp_path / 'vis')
        ])


def test_visualize_missing_image(tool, tiny_run, tmp_path):
    missing = str(tmp_path / 'nobody.jpg')
    with pytest.raises(FileNotFoundError, match='nobody.jpg'):
        tool.main([
            tiny_run.config, tiny_run.checkpoint, '--img', missing, '--out',
            str(tmp_path / 'vis')
        ])
