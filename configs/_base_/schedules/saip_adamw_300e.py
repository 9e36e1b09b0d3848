# AdamW, 10 warm-up epochs, then a half-cycle cosine to 0 over 300 epochs.
base_lr = 2.5e-4  # per 256 images
total_batch_size = 2048  # 8 GPUs x 64 images x 4 accumulation steps
accumulative_counts = 4

optim_wrapper = dict(
    # Autocast and a gradient scaler on GPUs; fp32 on a CPU-only machine.
    type='SAIPAmpOptimWrapper',
    loss_scale='dynamic',
    max_consecutive_nonfinite=20,
    accumulative_counts=accumulative_counts,
    # The pretraining heads have about ten times the backbone's parameters,
    # so the optimizer step is a visible share of an iteration. The fused
    # AdamW kernel (CUDA and CPU) updates all of them in one pass. On a
    # 2-core CPU it took 0.08 s per step, the per-parameter loop 0.22 s
    # (docs/benchmark.md).
    optimizer=dict(
        type='AdamW',
        lr=base_lr * total_batch_size / 256,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        fused=True),
    # No decay on norms, biases and tokens. The reference code decays the
    # 3-D tokens; excluding them follows mmpretrain's MAE configs.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        flat_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
        }))

warmup_epochs = 10
max_epochs = 300
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=0.,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# mmengine scales by world_size x batch_size and does not count gradient
# accumulation, hence 2048 / 4.
auto_scale_lr = dict(
    base_batch_size=total_batch_size // accumulative_counts, enable=False)
