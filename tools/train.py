"""Train a model from an mmsaip config with mmengine's Runner."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmsaip.utils import (check_resume_checkpoint, prepare_cpu_distributed,
                          setup_checkpoint_loading)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--work-dir',
        help='folder for logs and checkpoints; defaults to '
        './work_dirs/<config name>')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this training checkpoint; without a path, resume '
        'from the latest checkpoint in the work folder')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision (GPU only; fp32 on CPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the real batch size over '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='do not pin memory in the data loader')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='do not keep data loader workers alive between epochs')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'train_dataloader.dataset.data_root=/data/lupsub; lists as '
        'key="[a,b]" and tuples as key="(a,b)", without spaces')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to the config."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    cfg.launcher = args.launcher

    if args.amp:
        wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type in ('SAIPOptimWrapper', 'SAIPAmpOptimWrapper'):
            cfg.optim_wrapper.type = 'SAIPAmpOptimWrapper'
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        check_resume_checkpoint(args.resume)
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True

    for loader_name in ('train_dataloader', 'val_dataloader',
                        'test_dataloader'):
        loader = cfg.get(loader_name, None)
        if loader is None:
            continue
        if args.no_pin_memory:
            loader['pin_memory'] = False
        if args.no_persistent_workers:
            loader['persistent_workers'] = False
        # Persistent workers need at least one worker process.
        if loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False

    # NCCL needs GPUs: use gloo so the same launchers run on CPUs.
    prepare_cpu_distributed(cfg)
    return cfg


def main() -> None:
    args = parse_args()
    setup_checkpoint_loading()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = merge_args(cfg, args)
    runner = Runner.from_cfg(cfg)
    runner.train()
    report_outputs(runner)


def report_outputs(runner: Runner) -> None:
    """Log where the run wrote its checkpoints and logs."""
    last_pointer = osp.join(runner.work_dir, 'last_checkpoint')
    if osp.isfile(last_pointer):
        with open(last_pointer, encoding='utf-8') as f:
            runner.logger.info(f'Latest checkpoint: {f.read().strip()}')
    runner.logger.info(f'Logs and scalars: {runner.log_dir}')


if __name__ == '__main__':
    main()
