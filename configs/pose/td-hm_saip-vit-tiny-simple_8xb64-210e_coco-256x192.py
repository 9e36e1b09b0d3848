# Top-down heatmap pose estimation on COCO keypoints at 256x192, fine-tuned
# from a SAIP ViT-Tiny with ViTPose's simple decoder. The stride-16 feature
# map goes through a ReLU and a 4x bilinear upsampling, and one 3x3
# convolution predicts the heatmaps.
# Export the pretrained backbone first:
#   python tools/convert_checkpoint.py SAIP_CHECKPOINT \
#       checkpoints/saip_vit-tiny_teacher.pth
_base_ = ['mmpose::_base_/default_runtime.py']

custom_imports = dict(imports=['mmsaip'], allow_failed_imports=False)

pretrained = 'checkpoints/saip_vit-tiny_teacher.pth'
input_size = (256, 192)  # (H, W) of the person crops
patch_size = 16
heatmap_stride = 4
embed_dims = 192
num_keypoints = 17

# runtime
max_epochs = 210
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
default_hooks = dict(
    checkpoint=dict(save_best='coco/AP', rule='greater', max_keep_ckpts=1))

# optimizer: AdamW with layer-wise learning-rate decay over the 12 blocks
batch_size = 64
num_gpus = 8
base_batch_size = batch_size * num_gpus
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.75,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=1.0, norm_type=2))
param_scheduler = [
    dict(
        type='LinearLR', begin=0, end=500, start_factor=0.001,
        by_epoch=False),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        milestones=[170, 200],
        gamma=0.1,
        by_epoch=True),
]
auto_scale_lr = dict(base_batch_size=base_batch_size)

# codec: mmpose sizes are (W, H)
codec = dict(
    type='UDPHeatmap',
    input_size=(input_size[1], input_size[0]),
    heatmap_size=(input_size[1] // heatmap_stride,
                  input_size[0] // heatmap_stride),
    sigma=2)

# model
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='mmpretrain.SAIPViTBackbone',
        arch='deit-tiny',
        img_size=input_size,
        patch_size=patch_size,
        out_type='featmap',
        # As in ViTPose, the class token is not used for dense outputs.
        with_cls_token=False,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        type='FeatureMapProcessor',
        scale_factor=patch_size / heatmap_stride,
        apply_relu=True),
    head=dict(
        type='HeatmapHead',
        in_channels=embed_dims,
        out_channels=num_keypoints,
        deconv_out_channels=[],
        deconv_kernel_sizes=[],
        final_layer=dict(kernel_size=3, padding=1),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=False))

# data
dataset_type = 'CocoDataset'
data_mode = 'topdown'
data_root = 'data/coco/'
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=True),
    dict(type='PackPoseInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/person_keypoints_val2017.json',
        # The usual COCO protocol: person boxes of a detector with 56 AP.
        # Set bbox_file=None to evaluate on the ground-truth boxes.
        bbox_file=data_root + 'person_detection_results/'
        'COCO_val2017_detections_AP_H_56_person.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=val_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/person_keypoints_val2017.json')
test_evaluator = val_evaluator
