# Runtime shared by the mmsaip configs.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmsaip'], allow_failed_imports=False)

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Writes through a temporary file and a rename, so a kill during a save
    # never leaves a broken latest checkpoint.
    checkpoint=dict(
        type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# SAIPTeacherHook updates the EMA teacher after every applied optimizer step;
# a config that replaces custom_hooks must keep it. TorchRNGStateHook makes
# --resume repeat the masks and rescale factors of an uninterrupted run.
custom_hooks = [
    dict(type='SAIPTeacherHook'),
    dict(type='TorchRNGStateHook'),
    dict(type='CSMCollapseHook', patience=200, tolerance=0.02),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo on machines without CUDA.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_processor = dict(window_size=10)
log_level = 'INFO'
load_from = None
resume = False
# Each rank draws its own augmentations and rescale factors.
randomness = dict(seed=0, diff_rank_seed=True)
