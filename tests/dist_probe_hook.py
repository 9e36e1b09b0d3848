"""Test-only hook that records per-rank values of a distributed run."""
import json
import os.path as osp

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class RankRecorderForTestHook(Hook):
    """Append this rank's losses, CSM centre and teacher checksum to
    ``<work_dir>/rank<r>.jsonl`` after every iteration."""

    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        record = {key: float(value) for key, value in outputs.items()}
        record['iter'] = runner.iter
        record['center_sum'] = float(model.csm_head.center.double().sum())
        record['teacher_sum'] = float(
            sum(p.double().sum()
                for p in model.teacher.module.parameters()))
        record['student_sum'] = float(
            sum(p.double().sum() for p in model.backbone.parameters()))
        path = osp.join(runner.work_dir, f'rank{get_rank()}.jsonl')
        with open(path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')
