# A short SAIP run on a CPU, for trying the pipeline end to end: the full
# ViT-Tiny recipe, 8 images per step, 40 iterations.
# Point it at a folder of person crops with
#   --cfg-options train_dataloader.dataset.data_root=/path/to/crops
_base_ = ['./saip_vit-tiny_lupsub.py']

batch_size = 8
max_iters = 40
warmup_iters = 5

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(data_root='data/person_crops'))

# The paper's lr scaled to 8 images (2.5e-4 * 8 / 256 = 7.8e-6) barely moves
# the weights in 40 steps, so the demo uses a larger one without
# accumulation.
optim_wrapper = dict(
    type='SAIPOptimWrapper',
    _delete_=True,
    max_consecutive_nonfinite=20,
    optimizer=dict(
        type='AdamW',
        lr=5e-4,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        fused=True),
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-2,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - warmup_iters,
        eta_min=0.,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, _delete_=True)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(
        type='AtomicCheckpointHook',
        by_epoch=False,
        interval=20,
        max_keep_ckpts=2,
        save_last=True))
log_processor = dict(window_size=5, by_epoch=False)
auto_scale_lr = dict(base_batch_size=batch_size, enable=False)
