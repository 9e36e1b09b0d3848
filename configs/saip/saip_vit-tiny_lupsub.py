# SAIP ViT-Tiny/16 on a LUPerson subset: the paper's recipe.
# 8 GPUs x 64 images x 4 accumulation steps = 2048 images per update,
# 300 epochs, AMP.
_base_ = [
    '../_base_/models/saip_vit-tiny.py',
    '../_base_/datasets/lupsub_saip.py',
    '../_base_/schedules/saip_adamw_300e.py',
    '../_base_/default_runtime.py',
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    # Keep a copy every 20 epochs and the last 3, as the reference run does.
    checkpoint=dict(
        type='AtomicCheckpointHook', interval=20, max_keep_ckpts=3,
        save_last=True))
