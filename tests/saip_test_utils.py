"""Helpers shared by the test modules: paths and tiny SAIP configs."""
import os.path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


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

