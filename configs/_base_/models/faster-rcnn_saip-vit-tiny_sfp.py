# Faster R-CNN with a plain SAIP ViT-Tiny backbone (mmdet scope). As in
# ViTDet, only the last, stride-16 feature map is used: a simple feature
# pyramid turns it into strides 4 to 64 for mmdet's RPN and RoI heads.
# One class: person. Export the pretrained backbone first:
#   python tools/convert_checkpoint.py SAIP_CHECKPOINT \
#       checkpoints/saip_vit-tiny_teacher.pth
_base_ = ['mmdet::_base_/models/faster-rcnn_r50_fpn.py']

pretrained = 'checkpoints/saip_vit-tiny_teacher.pth'
embed_dims = 192
# The position embedding is stored for this input size (H, W). Inputs of
# other sizes resize it at every forward pass.
backbone_img_size = (800, 1344)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SAIPViTBackbone',
        arch='deit-tiny',
        img_size=backbone_img_size,
        patch_size=16,
        out_type='featmap',
        with_cls_token=True,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='mmpretrain.ViTFeaturePyramid',
        in_channels=embed_dims,
        # the width that the base config's RPN and RoI heads take
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_extra_levels=1),
    roi_head=dict(bbox_head=dict(num_classes=1)))
