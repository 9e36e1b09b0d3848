"""Evaluate a checkpoint with a config's test set and metrics."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmsaip.utils import (load_checkpoint_file, prepare_cpu_distributed,
                          setup_checkpoint_loading)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Evaluate a checkpoint on the test set of a config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file to evaluate')
    parser.add_argument(
        '--work-dir',
        help='folder for the evaluation logs; defaults to '
        './work_dirs/<config name>')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'test_dataloader.dataset.data_root=/data/coco')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main() -> None:
    args = parse_args()
    setup_checkpoint_loading()
    # Fail early, with the path in the message, on a missing or bad file.
    load_checkpoint_file(args.checkpoint)

    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if cfg.get('test_dataloader') is None or cfg.get('test_cfg') is None:
        raise ValueError(
            f'{args.config} defines no test_dataloader/test_cfg, so there '
            'is nothing to evaluate. Pretraining configs have no test set: '
            'convert the checkpoint with tools/convert_checkpoint.py and '
            'evaluate a downstream config.')
    prepare_cpu_distributed(cfg)

    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
