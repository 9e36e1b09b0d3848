# SAIP with a ViT-Tiny/16 student at 256x128 (16x8 patches).
embed_dims = 192
num_prototypes = 65536
decoder_dims = 512
patch_size = 16
img_size = (256, 128)
# '2d' resizes position embeddings on the patch grid; 'flat1d' reproduces
# the reference code's resampling of the flattened sequence.
pos_interp = '2d'

model = dict(
    type='SAIP',
    data_preprocessor=dict(
        type='SAIPDataPreprocessor',
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375)),
    backbone=dict(
        type='SAIPViT',
        arch='deit-tiny',
        img_size=img_size,
        patch_size=patch_size,
        tap_index=6,
        pos_interp=pos_interp,
        drop_path_rate=0.),
    neck=dict(
        type='CSMProjector',
        in_channels=embed_dims,
        hidden_channels=2048,
        bottleneck_channels=256,
        out_channels=num_prototypes),
    csm_head=dict(
        type='CSMHead',
        out_channels=num_prototypes,
        student_temp=0.1,
        teacher_temp=0.04,
        warmup_teacher_temp=0.04,
        teacher_temp_warmup_epochs=0,
        center_momentum=0.9,
        loss_weight=1.0),
    attn_distill_loss=dict(type='AttentionDistillLoss', loss_weight=1.0),
    csr_head=dict(
        type='CSRHead',
        in_channels=embed_dims,
        embed_dims=decoder_dims,
        num_layers=8,
        num_heads=16,
        patch_size=patch_size,
        anchor_grid=(img_size[0] // patch_size, img_size[1] // patch_size),
        pos_interp=pos_interp,
        norm_pix=True,
        loss_weight=1.0),
    css_head=dict(
        type='CSSHead',
        in_channels=embed_dims,
        embed_dims=decoder_dims,
        num_query_layers=2,
        num_heads=16,
        loss_weight_inst=1.0,
        loss_weight_roi=1.0),
    # mmengine convention: the student's weight, 0.004 = DINO's 0.996.
    teacher=dict(
        momentum=0.004, end_momentum=0., momentum_indexing='global'),
    rescale_factors=(0.75, 0.875, 1.125, 1.25),
    csr_scale=1.25,
    mask_ratio=0.75,
    csr_visible_count='from_mask',
    resize_mode='nearest')
