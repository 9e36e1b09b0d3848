"""Helpers shared by the test modules: paths and tiny SAIP configs."""
import os.path as osp

from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'saip',
                       'saip_vit-tiny_1xb8-40it_demo.py')


def tiny_saip_model_cfg(**overrides) -> dict:
    """A SAIP model config small enough for CPU tests.

    Views: global 64x32, local 32x16, canvas 56x56, patch 8, so the grids are
    8x4 (global), 4x2 (local), 10x5 (CSR view at 1.25x) and 7x7 (canvas).
    """
    embed_dims, num_prototypes, patch_size = 32, 64, 8
    cfg = dict(
        type='SAIP',
        backbone=dict(
            type='SAIPViT',
            arch=dict(
                embed_dims=embed_dims,
                num_layers=3,
                num_heads=2,
                feedforward_channels=64),
            img_size=(64, 32),
            patch_size=patch_size,
            tap_index=1),
        neck=dict(
            type='CSMProjector',
            in_channels=embed_dims,
            hidden_channels=64,
            bottleneck_channels=16,
            out_channels=num_prototypes),
        csm_head=dict(type='CSMHead', out_channels=num_prototypes),
        csr_head=dict(
            type='CSRHead',
            in_channels=embed_dims,
            embed_dims=32,
            num_layers=2,
            num_heads=2,
            patch_size=patch_size,
            anchor_grid=(8, 4)),
        css_head=dict(
            type='CSSHead', in_channels=embed_dims, embed_dims=32,
            num_heads=2))
    cfg.update(overrides)
    return cfg


def tiny_saip_view_cfg() -> dict:
    """SAIPMultiView arguments that match :func:`tiny_saip_model_cfg`."""
    return dict(
        type='SAIPMultiView',
        global_size=(64, 32),
        local_size=(32, 16),
        canvas_size=(56, 56),
        num_local_views=2)


def tiny_demo_cfg(work_dir: str, data_root: str, max_iters: int) -> Config:
    """The demo config with the tiny model and views, for CPU tests."""
    cfg = Config.fromfile(DEMO_CONFIG)
    model = tiny_saip_model_cfg()
    model['data_preprocessor'] = cfg.model.data_preprocessor
    cfg.model = model
    pipeline = cfg.train_dataloader.dataset.pipeline
    pipeline[1] = tiny_saip_view_cfg()
    cfg.train_dataloader.update(
        batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_cfg.max_iters = max_iters
    warmup_iters = min(5, max_iters // 2)
    cfg.param_scheduler[0].end = warmup_iters
    cfg.param_scheduler[1].update(
        T_max=max_iters - warmup_iters, begin=warmup_iters, end=max_iters)
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = max_iters // 2
    cfg.log_processor.window_size = 1
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    return cfg
