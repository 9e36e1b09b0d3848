# Person detection on COCO with Faster R-CNN on a SAIP ViT-Tiny, 12 epochs
# at 8 GPUs x 2 images. Only the person category is trained and evaluated
# (CocoMetric, bbox), and images without a person are skipped in training.
_base_ = [
    '../_base_/models/faster-rcnn_saip-vit-tiny_sfp.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_layer-decay_12e_detection.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmsaip'], allow_failed_imports=False)

metainfo = dict(classes=('person', ), palette=[(220, 20, 60)])
train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo))
test_dataloader = val_dataloader
