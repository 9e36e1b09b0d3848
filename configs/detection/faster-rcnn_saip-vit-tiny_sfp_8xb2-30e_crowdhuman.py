# Pedestrian detection on CrowdHuman (full-body boxes) with Faster R-CNN on
# a SAIP ViT-Tiny, 30 epochs at 8 GPUs x 2 images, evaluated with
# CrowdHuman's AP, MR^-2 and JI.
_base_ = [
    '../_base_/models/faster-rcnn_saip-vit-tiny_sfp.py',
    '../_base_/datasets/crowdhuman_detection.py',
    '../_base_/schedules/adamw_layer-decay_12e_detection.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmsaip'], allow_failed_imports=False)

max_epochs = 30
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=800),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[24, 27],
        gamma=0.1),
]
