"""A tiny SAIP training config on the real person crops, for tool and hook
tests that need a trained checkpoint or a real Runner."""
import os.path as osp
from typing import List, Optional

from mmengine.config import Config
from saip_test_utils import REPO_ROOT, tiny_saip_model_cfg, tiny_saip_view_cfg

DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'saip',
                       'saip_vit-tiny_1xb8-40it_demo.py')


def tiny_train_cfg(work_dir: str,
                   data_root: str,
                   max_iters: int,
                   custom_hooks: Optional[List[dict]] = None) -> Config:
    """The demo config with the tiny model and views, batch 2, a constant
    learning rate and one checkpoint at ``max_iters``.

    Args:
        work_dir (str): Run folder.
        data_root (str): Folder of person images.
        max_iters (int): Training iterations.
        custom_hooks (list[dict], optional): Replaces the config's
            custom_hooks. None keeps the config's hooks.
    """
    cfg = Config.fromfile(DEMO_CONFIG)
    model = tiny_saip_model_cfg()
    model['data_preprocessor'] = cfg.model.data_preprocessor
    cfg.model = model
    cfg.train_dataloader.dataset.pipeline[1] = tiny_saip_view_cfg()
    cfg.train_dataloader.update(
        batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_cfg.max_iters = max_iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.log_processor.window_size = 1
    if custom_hooks is not None:
        cfg.custom_hooks = custom_hooks
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    return cfg
