# UPerNet on a plain SAIP ViT-Tiny for human parsing (mmseg scope). Four
# depths of the ViT (blocks 4, 6, 8 and 12) are rescaled to strides 4, 8,
# 16 and 32 by mmseg's MultiLevelNeck and fused by a UPerHead. An FCN head
# on the stride-16 level adds an auxiliary loss. Export the pretrained
# backbone first:
#   python tools/convert_checkpoint.py SAIP_CHECKPOINT \
#       checkpoints/saip_vit-tiny_teacher.pth
_base_ = ['mmseg::_base_/models/upernet_vit-b16_ln_mln.py']

pretrained = 'checkpoints/saip_vit-tiny_teacher.pth'
embed_dims = 192
num_levels = 4
num_classes = 20  # background and 19 body parts or clothes, LIP and CIHP

# Leaves set backbone.img_size and data_preprocessor.size to the crop size.
model = dict(
    # The backbone loads its own weights through init_cfg.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SAIPViTBackbone',
        arch='deit-tiny',
        patch_size=16,
        out_indices=(3, 5, 7, 11),
        out_type='featmap',
        with_cls_token=True,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(
        in_channels=[embed_dims] * num_levels,
        out_channels=embed_dims,
        scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        in_channels=[embed_dims] * num_levels, num_classes=num_classes),
    auxiliary_head=dict(
        in_channels=embed_dims, in_index=2, num_classes=num_classes))
