# CIHP multi-person parsing, 20 classes (mmseg scope), in this layout:
# data/CIHP/images/<id>.jpg, labels/<id>.png and list files with one image
# id per line (list/train_id.txt, list/val_id.txt). mmseg has no CIHP
# class, so the generic BaseSegDataset reads it.
_base_ = ['./lip_parsing.py']

dataset_type = 'BaseSegDataset'
data_root = 'data/CIHP/'
# Classes 0 to 19 of CIHP. Only class 10 differs from LIP's list.
metainfo = dict(
    classes=('Background', 'Hat', 'Hair', 'Glove', 'Sunglasses',
             'UpperClothes', 'Dress', 'Coat', 'Socks', 'Pants', 'Torso-skin',
             'Scarf', 'Skirt', 'Face', 'Left-arm', 'Right-arm', 'Left-leg',
             'Right-leg', 'Left-shoe', 'Right-shoe'))
cihp_dataset = dict(
    _delete_=True,
    type=dataset_type,
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    data_prefix=dict(img_path='images', seg_map_path='labels'))

train_dataloader = dict(
    dataset=dict(
        cihp_dataset,
        ann_file='list/train_id.txt',
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        cihp_dataset,
        ann_file='list/val_id.txt',
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
