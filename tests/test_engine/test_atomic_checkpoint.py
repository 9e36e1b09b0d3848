"""Crash-safe checkpoint writing."""
import os
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner
from saip_test_utils import tiny_demo_cfg

import mmsaip  # noqa: F401
from mmsaip.engine.fileio import atomic_write
from mmsaip.utils import setup_checkpoint_loading


def test_atomic_write_replaces_file(tmp_path):
    target = tmp_path / 'pointer'
    atomic_write(b'first', target)
    atomic_write(b'second', target)
    assert target.read_bytes() == b'second'
    assert os.listdir(tmp_path) == ['pointer']
    # Same permissions as a file made by open(): 0666 minus the umask.
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_failure_keeps_old(tmp_path, monkeypatch):
    target = tmp_path / 'checkpoint.pth'
    atomic_write(b'old content', target)

    def failing_fsync(descriptor):
        raise OSError('simulated disk failure')

    monkeypatch.setattr(os, 'fsync', failing_fsync)
    with pytest.raises(OSError, match='simulated disk failure'):
        atomic_write(b'new content that never lands', target)
    assert target.read_bytes() == b'old content'
    assert os.listdir(tmp_path) == ['checkpoint.pth']


@pytest.mark.integration
def test_kill_during_save_keeps_previous(tmp_path, shared_data_root,
                                         monkeypatch):
    setup_checkpoint_loading()
    cfg = tiny_demo_cfg(
        str(tmp_path), osp.join(shared_data_root, 'person_crops'),
        max_iters=4)
    cfg.default_hooks.checkpoint.interval = 2
    runner = Runner.from_cfg(cfg)

    real_fsync = os.fsync
    calls = []

    def fsync_failing_on_third_call(descriptor):
        # Call 1: iter_2.pth, call 2: last_checkpoint, call 3: iter_4.pth.
        calls.append(descriptor)
        if len(calls) == 3:
            raise KeyboardInterrupt('simulated kill during the save')
        real_fsync(descriptor)

    monkeypatch.setattr(os, 'fsync', fsync_failing_on_third_call)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    monkeypatch.setattr(os, 'fsync', real_fsync)

    previous = osp.join(str(tmp_path), 'iter_2.pth')
    written = sorted(
        name for name in os.listdir(tmp_path)
        if name.endswith(('.pth', '.tmp')) or name == 'last_checkpoint')
    # No iter_4.pth and no temporary file left behind.
    assert written == ['iter_2.pth', 'last_checkpoint']
    with open(osp.join(str(tmp_path), 'last_checkpoint')) as f:
        assert f.read() == previous
    checkpoint = torch.load(previous, map_location='cpu')
    assert checkpoint['meta']['iter'] == 2
    assert 'teacher.module.backbone.pos_embed' in checkpoint['state_dict']
