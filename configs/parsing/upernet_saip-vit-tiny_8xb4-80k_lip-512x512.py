# Human parsing on LIP (20 classes) with UPerNet on a SAIP ViT-Tiny,
# 80k iterations at 8 GPUs x 4 crops of 512x512, evaluated with mIoU.
_base_ = [
    '../_base_/models/upernet_saip-vit-tiny.py',
    '../_base_/datasets/lip_parsing.py',
    '../_base_/schedules/adamw_layer-decay_80k_parsing.py',
    'mmseg::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmsaip'], allow_failed_imports=False)

# 8 GPUs x 4 crops. tools/train.py --auto-scale-lr scales the learning rate
# from this batch to the real one.
auto_scale_lr = dict(enable=False, base_batch_size=32)

crop_size = {{_base_.crop_size}}
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size))
