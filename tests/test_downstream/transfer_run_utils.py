"""Checks shared by the fine-tuning tests."""
import glob
import json
import math
import os.path as osp
from typing import List

from mmengine.runner import Runner


def read_train_losses(runner: Runner) -> List[float]:
    """The 'loss' of every logged training iteration."""
    path = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    with open(path, encoding='utf-8') as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [record['loss'] for record in records if 'loss' in record]


def read_log_lines(runner: Runner, text: str) -> List[str]:
    """Lines of the run's text log that contain ``text``."""
    (path, ) = glob.glob(osp.join(runner.log_dir, '*.log'))
    with open(path, encoding='utf-8') as f:
        return [line for line in f if text in line]


def check_run(runner: Runner, num_iters: int) -> None:
    """The backbone loaded cleanly and every step gave a finite loss."""
    loaded = read_log_lines(runner, 'SAIPViTBackbone: loaded')
    assert len(loaded) == 1, loaded
    assert 'with 0 missing and 0 unexpected keys' in loaded[0]
    losses = read_train_losses(runner)
    assert len(losses) == num_iters
    assert all(math.isfinite(loss) for loss in losses), losses
