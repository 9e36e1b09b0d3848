"""Resuming a run repeats the uninterrupted run."""
import json
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from saip_test_utils import REPO_ROOT, tiny_demo_cfg

import mmsaip  # noqa: F401
from mmsaip.utils import check_resume_checkpoint

LOSS_KEYS = ('loss_csm', 'loss_csm_attn', 'loss_csr', 'loss_css_inst',
             'loss_css_roi')


def train(config: str, work_dir: str, *extra: str) -> None:
    result = subprocess.run(
        [sys.executable,
         osp.join(REPO_ROOT, 'tools', 'train.py'), config, '--work-dir',
         work_dir, *extra],
        capture_output=True,
        text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def losses_by_iter(work_dir: str) -> dict:
    """Read {iteration: record} from the newest run's scalars.json."""
    runs = sorted(
        path for path in (osp.join(work_dir, name)
                          for name in __import__('os').listdir(work_dir))
        if osp.isdir(path))
    with open(osp.join(runs[-1], 'vis_data', 'scalars.json')) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {r['iter']: r for r in records if 'loss' in r}


@pytest.mark.integration
def test_resume_matches_uninterrupted(tmp_path, shared_data_root):
    max_iters = 8
    cfg = tiny_demo_cfg(
        str(tmp_path / 'full'), osp.join(shared_data_root, 'person_crops'),
        max_iters)
    cfg.default_hooks.checkpoint.interval = max_iters // 2
    config = str(tmp_path / 'tiny_demo.py')
    cfg.dump(config)

    full_dir = str(tmp_path / 'full')
    train(config, full_dir)
    full = losses_by_iter(full_dir)
    assert sorted(full) == list(range(1, max_iters + 1))

    # An interrupted run would have left exactly this checkpoint behind.
    resumed_dir = str(tmp_path / 'resumed')
    shutil.copytree(full_dir, resumed_dir,
                    ignore=shutil.ignore_patterns('2*', f'iter_{max_iters}*'))
    train(config, resumed_dir, '--resume',
          osp.join(resumed_dir, f'iter_{max_iters // 2}.pth'))
    resumed = losses_by_iter(resumed_dir)
    assert sorted(resumed) == list(range(max_iters // 2 + 1, max_iters + 1))

    # Same process on the same CPU, with torch's random state restored:
    # the resumed iterations repeat the uninterrupted ones to float noise.
    for step in resumed:
        for key in LOSS_KEYS + ('ema_momentum', ):
            assert resumed[step][key] == pytest.approx(
                full[step][key], rel=1e-4, abs=1e-6), (step, key)


def test_resume_rejects_weights_only(tmp_path):
    weights = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': {'pos_embed': torch.zeros(1, 3, 4)}}, weights)
    with pytest.raises(ValueError, match='load_from'):
        check_resume_checkpoint(weights)


def test_resume_rejects_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        check_resume_checkpoint(str(tmp_path / 'missing.pth'))
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'not a checkpoint at all')
    with pytest.raises(ValueError, match='corrupt.pth'):
        check_resume_checkpoint(str(corrupt))
