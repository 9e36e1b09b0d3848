"""Fixtures of the tool tests: a loader for the scripts under tools/ and a
tiny SAIP run on the real person crops."""
import importlib.util
import os.path as osp
import sys
from types import ModuleType
from typing import Callable, NamedTuple

import pytest
from mmengine.runner import Runner
from saip_test_utils import REPO_ROOT
from saip_tiny_run import tiny_train_cfg

import mmsaip  # noqa: F401
from mmsaip.utils import setup_checkpoint_loading

TINY_RUN_ITERS = 2


class TinyRun(NamedTuple):
    """Files of a finished tiny training run."""
    config: str
    checkpoint: str
    scalars: str


@pytest.fixture(scope='session')
def load_tool() -> Callable[[str], ModuleType]:
    """Import a script under tools/ by its path relative to tools/."""

    def load(relative_path: str) -> ModuleType:
        path = osp.join(REPO_ROOT, 'tools', relative_path)
        name = osp.splitext(osp.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        # Registered by name so that worker processes can unpickle the
        # tool's functions.
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory, shared_data_root) -> TinyRun:
    """Train the tiny SAIP model for two iterations and return its config,
    checkpoint and scalars.json."""
    setup_checkpoint_loading()
    work_dir = str(tmp_path_factory.mktemp('tiny_run'))
    cfg = tiny_train_cfg(work_dir, osp.join(shared_data_root, 'person_crops'),
                         TINY_RUN_ITERS)
    config_path = osp.join(work_dir, 'tiny_saip.py')
    cfg.dump(config_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    checkpoint = osp.join(work_dir, f'iter_{TINY_RUN_ITERS}.pth')
    scalars = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    assert osp.isfile(checkpoint), checkpoint
    assert osp.isfile(scalars), scalars
    return TinyRun(config_path, checkpoint, scalars)
