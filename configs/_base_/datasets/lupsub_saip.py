# Unlabeled person crops (a LUPerson subset) with the SAIP view set.
dataset_type = 'PersonImageDataset'
# A folder of images, searched recursively. To use a list file of paths
# relative to data_root, set ann_file. Point elsewhere with
#   --cfg-options train_dataloader.dataset.data_root=/path/to/lupsub
data_root = 'data/lupsub'

train_pipeline = [
    dict(type='LoadPersonImage'),
    dict(
        type='SAIPMultiView',
        global_size=(256, 128),
        local_size=(128, 64),
        canvas_size=(224, 224),
        num_local_views=6),
    dict(type='PackSAIPInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='',
        # Canvas backgrounds: None uses other images of this dataset.
        background_root=None,
        max_skip_ratio=0.01,
        pipeline=train_pipeline))
