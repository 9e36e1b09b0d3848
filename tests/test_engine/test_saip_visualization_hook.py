"""SAIPVisualizationHook in short real trainings on the person crops."""
import json
import os
import os.path as osp

import cv2
import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS
from saip_tiny_run import DEMO_CONFIG, tiny_train_cfg

import mmsaip  # noqa: F401
from mmsaip.utils import setup_checkpoint_loading

MAX_ITERS = 4
PANELS = ('views', 'css', 'csr', 'attention')
LOSS_KEYS = ('loss_csm', 'loss_csm_attn', 'loss_csr', 'loss_css_inst',
             'loss_css_roi')


def train(work_dir, data_root, custom_hooks):
    setup_checkpoint_loading()
    cfg = tiny_train_cfg(work_dir, data_root, MAX_ITERS, custom_hooks)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def read_scalars(runner):
    path = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope='module')
def runs(tmp_path_factory, shared_data_root):
    """The same tiny training with and without the hook."""
    data_root = osp.join(shared_data_root, 'person_crops')
    with_hook = train(
        str(tmp_path_factory.mktemp('with_hook')), data_root, [
            dict(type='SAIPTeacherHook'),
            dict(type='SAIPVisualizationHook', interval=2, num_samples=2)
        ])
    without_hook = train(
        str(tmp_path_factory.mktemp('without_hook')), data_root,
        [dict(type='SAIPTeacherHook')])
    return with_hook, without_hook


@pytest.mark.integration
def test_hook_writes_panels(runs):
    runner = runs[0]
    image_dir = osp.join(runner.log_dir, 'vis_data', 'vis_image')
    expected = sorted(f'saip_{panel}_sample{sample}_{step}.png'
                      for panel in PANELS for sample in (0, 1)
                      for step in (2, 4))
    assert sorted(os.listdir(image_dir)) == expected
    for name in expected:
        image = cv2.imread(osp.join(image_dir, name))
        assert image is not None, name
        assert image.std() > 10., name
    # The tiny canvas (56x56) is drawn 4x enlarged, four tiles in a row.
    css = cv2.imread(osp.join(image_dir, 'saip_css_sample0_2.png'))
    assert css.shape[:2] == (18 + 224 + 16, 4 * 224 + 5 * 8)


@pytest.mark.integration
def test_hook_keeps_training_random_stream(runs):
    with_hook, without_hook = (read_scalars(runner) for runner in runs)
    assert len(with_hook) == len(without_hook) == MAX_ITERS
    for record_a, record_b in zip(with_hook, without_hook):
        for key in LOSS_KEYS:
            assert record_a[key] == record_b[key], (record_a['iter'], key)


@pytest.mark.parametrize('kwargs, message', [
    (dict(interval=0), 'interval'),
    (dict(num_samples=0), 'num_samples'),
    (dict(branch='ema'), 'branch'),
    (dict(panels=('views', 'loss')), 'panels'),
])
def test_hook_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HOOKS.build(dict(type='SAIPVisualizationHook', **kwargs))


def test_hook_config_keeps_base_hooks(tmp_path):
    # The pattern that docs/pretrain.md gives for turning the hook on.
    config = tmp_path / 'with_visualization.py'
    config.write_text(
        f'_base_ = [{DEMO_CONFIG!r}]\n'
        'custom_hooks = [\n'
        '    *_base_.custom_hooks,\n'
        "    dict(type='SAIPVisualizationHook', interval=5),\n"
        ']\n',
        encoding='utf-8')
    hooks = Config.fromfile(str(config)).custom_hooks
    base_hooks = Config.fromfile(DEMO_CONFIG).custom_hooks
    assert hooks[:-1] == base_hooks
    assert dict(type='SAIPTeacherHook') in hooks
    hook = HOOKS.build(hooks[-1])
    assert hook.interval == 5
    assert hook.panels == PANELS
