"""Export the backbone of a SAIP checkpoint for mmpose, mmdet and mmseg.

    python tools/convert_checkpoint.py SRC DST [--branch teacher|student]
        [--img-size H W] [--no-cls-token] [--pretrain-img-size H W]

SRC is an mmsaip training checkpoint or a checkpoint of the reference SAIP
code. DST contains the chosen branch's backbone with mmpretrain ViT names under
``backbone.``, for ``init_cfg=dict(type='Pretrained', checkpoint=DST,
prefix='backbone.')``. Only convert checkpoints you trust: reading them
unpickles Python objects.
"""
import argparse
import os
import os.path as osp
import sys

from mmsaip.utils import load_checkpoint_file, setup_checkpoint_loading
from mmsaip.utils.convert import (BRANCHES, export_backbone, group_keys,
                                  save_exported_backbone)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export the backbone of a SAIP pretraining checkpoint '
        'in the key layout of mmpretrain.models.VisionTransformer')
    parser.add_argument('src', help='mmsaip or reference SAIP checkpoint')
    parser.add_argument('dst', help='output file (.pth)')
    parser.add_argument(
        '--branch',
        choices=BRANCHES,
        default='teacher',
        help='which backbone to export: the EMA teacher (default, the one '
        'the SAIP authors fine-tune) or the student')
    parser.add_argument(
        '--img-size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='resize the position embedding to the patch grid of this '
        'input size in pixels; by default it keeps the pretraining grid, '
        'which mmsaip\'s SAIPViTBackbone resizes when loading')
    parser.add_argument(
        '--no-cls-token',
        action='store_true',
        help='drop the class token and its position (for backbones built '
        'with with_cls_token=False)')
    parser.add_argument(
        '--pretrain-img-size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='pretraining input size in pixels; by default read from the '
        'checkpoint, else 256 128')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    setup_checkpoint_loading()
    try:
        checkpoint = load_checkpoint_file(args.src)
        exported = export_backbone(
            checkpoint,
            branch=args.branch,
            img_size=args.img_size,
            with_cls_token=not args.no_cls_token,
            pretrain_img_size=args.pretrain_img_size)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    dst_dir = osp.dirname(osp.abspath(args.dst))
    os.makedirs(dst_dir, exist_ok=True)
    save_exported_backbone(exported, args.dst)

    meta = exported.meta
    grid = meta['patch_grid']
    print(f'Read the {meta["branch"]} backbone of {args.src} '
          f'({meta["source_format"]} checkpoint).')
    print(f'Wrote {len(exported.state_dict)} tensors to {args.dst}: '
          f'pos_embed on a {grid[0]}x{grid[1]} grid '
          f'({meta["img_size"][0]}x{meta["img_size"][1]} input), class token '
          f'{"kept" if meta["with_cls_token"] else "dropped"}.')
    print(f'Dropped {len(exported.dropped_keys)} tensors:')
    for label, count in group_keys(exported.dropped_keys,
                                   exported.source_prefix):
        print(f'  {label}: {count}')
    print("Load it with init_cfg=dict(type='Pretrained', "
          f"checkpoint='{args.dst}', prefix='backbone.').")


if __name__ == '__main__':
    main()
