"""Non-finite losses during a real training run."""
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS
from saip_test_utils import tiny_demo_cfg

import mmsaip  # noqa: F401
from mmsaip.engine.optimizers import NonFiniteLossError
from mmsaip.utils import setup_checkpoint_loading


@HOOKS.register_module(force=True)
class InjectNaNForTestHook(Hook):
    """Test-only: make the CSR prediction NaN on chosen iterations and
    record whether the student and the teacher changed."""

    priority = 'LOWEST'  # after SAIPTeacherHook has updated the teacher

    def __init__(self, nan_iters):
        self.nan_iters = set(nan_iters)
        self.handle = None
        self.changes = {}

    @staticmethod
    def probes(model):
        return (model.backbone.pos_embed.detach().clone(),
                model.teacher.module['backbone'].pos_embed.detach().clone())

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = runner.model
        if runner.iter in self.nan_iters:
            self.handle = model.csr_head.register_forward_hook(
                lambda module, args, output: output * float('nan'))
        self.before = self.probes(model)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        student, teacher = self.probes(runner.model)
        self.changes[runner.iter] = (
            not torch.equal(student, self.before[0]),
            not torch.equal(teacher, self.before[1]))


def build_runner(work_dir, data_root, max_iters, nan_iters, max_consecutive):
    cfg = tiny_demo_cfg(work_dir, data_root, max_iters)
    cfg.optim_wrapper.max_consecutive_nonfinite = max_consecutive
    cfg.default_hooks.checkpoint.interval = 2
    cfg.custom_hooks.append(
        dict(type='InjectNaNForTestHook', nan_iters=nan_iters))
    runner = Runner.from_cfg(cfg)
    probe = next(h for h in runner.hooks
                 if isinstance(h, InjectNaNForTestHook))
    return runner, probe


@pytest.mark.integration
def test_nan_step_skips_student_and_teacher(tmp_path, shared_data_root):
    runner, probe = build_runner(
        str(tmp_path), osp.join(shared_data_root, 'person_crops'),
        max_iters=6, nan_iters=[2, 3], max_consecutive=3)
    runner.train()
    assert probe.changes[2] == (False, False)
    assert probe.changes[3] == (False, False)
    for step in (0, 1, 4, 5):
        assert probe.changes[step] == (True, True), step
    assert runner.optim_wrapper.num_nonfinite_steps == 2


@pytest.mark.integration
def test_consecutive_nan_stops_run(tmp_path, shared_data_root):
    setup_checkpoint_loading()
    runner, probe = build_runner(
        str(tmp_path), osp.join(shared_data_root, 'person_crops'),
        max_iters=10, nan_iters=range(2, 10), max_consecutive=3)
    with pytest.raises(NonFiniteLossError, match='3 consecutive steps'):
        runner.train()
    # Iterations 2 and 3 were skipped, iteration 4 raised: the checkpoint
    # written after iteration 3 contains the weights of the last good step.
    with open(osp.join(str(tmp_path), 'last_checkpoint')) as f:
        last = f.read()
    assert last == osp.join(str(tmp_path), 'iter_4.pth')
    good = torch.load(osp.join(str(tmp_path), 'iter_2.pth'),
                      map_location='cpu')['state_dict']
    latest = torch.load(last, map_location='cpu')['state_dict']
    for key in ('backbone.pos_embed', 'teacher.module.backbone.pos_embed'):
        assert torch.equal(good[key], latest[key]), key
        assert torch.isfinite(latest[key]).all(), key
