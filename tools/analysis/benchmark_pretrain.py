"""Benchmark SAIP pretraining: data pipeline, model step, FLOPs, memory.

Measures, for the config's model and data:

- the data pipeline in one process (decode and the full SAIP view set);
- the model step (forward, backward, optimizer step, EMA teacher update)
  on one real batch, with its FLOPs, the achieved fraction of this
  machine's measured matmul rate (``mfu``) and the peak memory;
- full iterations with the config's data loader;
- the same step figures for mmpretrain's MAE with a ViT-Tiny at the same
  input size, as a reference (``--skip-mae`` leaves it out).

Example::

    python tools/analysis/benchmark_pretrain.py \\
        configs/saip/saip_vit-tiny_1xb8-40it_demo.py --batch-size 8 \\
        --cfg-options train_dataloader.dataset.data_root=data/person_crops \\
        --out work_dirs/benchmark.json
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import DATASETS, MODELS

import mmsaip  # noqa: F401  (registers the SAIP modules)
from mmsaip.utils.benchmark import (AMP_DTYPES, PeakMemory, TrainStep,
                                    count_flops, measure_matmul_rate, median,
                                    synchronize, time_call,
                                    vit_forward_flops)

MATMUL_SIZE = 2048
# Torch seed of the first model step; step i uses STEP_SEED + i.
STEP_SEED = 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Measure the SAIP data pipeline and training step')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--batch-size', type=int, default=8,
        help='images per step (default: 8)')
    parser.add_argument(
        '--iters', type=int, default=3,
        help='timed steps and data-loader iterations (default: 3)')
    parser.add_argument(
        '--warmup', type=int, default=1,
        help='untimed steps before timing (default: 1)')
    parser.add_argument(
        '--num-images', type=int, default=100,
        help='images decoded and augmented for the data figure '
        '(default: 100)')
    parser.add_argument(
        '--amp', choices=tuple(AMP_DTYPES), default='none',
        help='autocast dtype of the step; the matmul rate is measured in '
        'the same dtype (default: none, i.e. fp32)')
    parser.add_argument(
        '--device', choices=('cpu', 'cuda'), default='cpu',
        help='device of the model step (default: cpu)')
    parser.add_argument(
        '--threads', type=int, default=None,
        help='torch intra-op threads (default: torch\'s choice)')
    parser.add_argument('--out', help='write the figures to this JSON file')
    parser.add_argument(
        '--skip-mae', action='store_true',
        help='do not measure the MAE reference')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. '
        'train_dataloader.dataset.data_root=/data/crops '
        'optim_wrapper.optimizer.fused=False')
    args = parser.parse_args()
    for name in ('batch_size', 'iters', 'num_images'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda was requested but CUDA is not available')
    return args


def build_optimizer(model: torch.nn.Module,
                    cfg: Config) -> torch.optim.Optimizer:
    """Build the config's optimizer and parameter groups, stepping every
    iteration (no accumulation, no AMP wrapper: the step handles AMP)."""
    wrapper_cfg = dict(
        type='OptimWrapper',
        optimizer=cfg.optim_wrapper.optimizer,
        paramwise_cfg=cfg.optim_wrapper.get('paramwise_cfg', None))
    constructor = cfg.optim_wrapper.get('constructor', None)
    if constructor is not None:
        wrapper_cfg['constructor'] = constructor
    return build_optim_wrapper(model, wrapper_cfg).optimizer


def optimizer_summary(optimizer: torch.optim.Optimizer) -> Dict:
    """Describe the optimizer's implementation choices."""
    defaults = optimizer.defaults
    return dict(
        type=type(optimizer).__name__,
        foreach=defaults.get('foreach'),
        fused=defaults.get('fused'))


def measure_data(dataset, num_images: int) -> Dict:
    """Time ``dataset[i]`` (decode and views) in this process."""
    dataset[0]  # opens files and warms caches
    start = time.perf_counter()
    for index in range(num_images):
        dataset[index % len(dataset)]
    seconds = time.perf_counter() - start
    return dict(num_images=num_images, images_per_s=num_images / seconds)


def hand_count_check(backbone: VisionTransformer, image_size: tuple,
                     device: torch.device) -> Dict:
    """Count one plain ViT forward of ``backbone`` with the FLOP counter
    and by hand."""
    arch = backbone.arch_settings
    patch_size = backbone.patch_embed.projection.kernel_size[0]
    images = torch.randn(1, 3, *image_size, device=device)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        _, counted = count_flops(
            lambda: VisionTransformer.forward(backbone, images))
    backbone.train(was_training)
    by_hand = vit_forward_flops(
        image_size,
        patch_size=patch_size,
        embed_dims=arch['embed_dims'],
        num_layers=arch['num_layers'],
        feedforward_channels=arch['feedforward_channels'])['total']
    return dict(
        image_size=list(image_size),
        counted_flops=counted,
        hand_flops=by_hand,
        ratio=counted / by_hand)


def measure_step(step: TrainStep, inputs, batch_size: int, args,
                 device: torch.device) -> Dict:
    """Time, count and measure the memory of ``step`` on ``inputs``.

    Step i starts from torch seed ``STEP_SEED + i``, so the FLOPs are
    counted on the same random draws (SAIP's rescale factors and masks,
    which change the token counts) as the timed steps, in a second run.

    The matmul rate that the MFU divides by is measured right before each
    timed step, in the step's precision. On a shared machine the speed
    changes from minute to minute, and a reference measured at another
    moment would move the MFU by as much as the code does. The MFU is the
    median over the timed steps of each step's FLOP/s over its own
    reference.

    The peak memory comes from one more step with the first timed seed.
    It is measured apart from the timed steps because, on CPU, the thread
    that samples the memory competes with the compute threads for the
    cores.
    """
    matmul_dtype = AMP_DTYPES[args.amp] or torch.float32
    seeds = iter(range(STEP_SEED, STEP_SEED + args.warmup + args.iters))
    matmul_rates = []

    def seeded_step() -> None:
        torch.manual_seed(next(seeds))
        step(inputs)

    def measure_reference() -> None:
        matmul_rates.append(
            measure_matmul_rate(
                MATMUL_SIZE, matmul_dtype, device, iters=3, warmup=1))

    seconds = time_call(
        seeded_step,
        args.iters,
        args.warmup,
        device,
        before_each=measure_reference)

    with PeakMemory(device) as memory:
        torch.manual_seed(STEP_SEED + args.warmup)
        step(inputs)
        synchronize(device)

    forward_flops, backward_flops = [], []
    for index in range(args.warmup, args.warmup + args.iters):
        torch.manual_seed(STEP_SEED + index)
        losses, flops = count_flops(lambda: step.forward(inputs))
        forward_flops.append(flops)
        _, flops = count_flops(lambda: step.update(losses))
        backward_flops.append(flops)
    step_flops = [
        forward + backward
        for forward, backward in zip(forward_flops, backward_flops)
    ]
    flops_per_step = sum(step_flops) / args.iters
    step_seconds = median(seconds)
    mfu_per_step = [
        flops / step_time / rate
        for flops, step_time, rate in zip(step_flops, seconds, matmul_rates)
    ]
    return dict(
        batch_size=batch_size,
        step_seconds=seconds,
        step_seconds_median=step_seconds,
        images_per_s=batch_size / step_seconds,
        flops_per_step=flops_per_step,
        flops_per_step_range=[min(step_flops), max(step_flops)],
        forward_flops=sum(forward_flops) / args.iters,
        backward_flops=sum(backward_flops) / args.iters,
        # The median time resists a step slowed down by other processes.
        achieved_flops_per_s=flops_per_step / step_seconds,
        matmul_flops_per_s_per_step=matmul_rates,
        matmul_flops_per_s=median(matmul_rates),
        mfu_per_step=mfu_per_step,
        mfu=median(mfu_per_step),
        peak_memory_bytes=memory.peak_bytes,
        peak_memory_source=memory.source,
        optimizer=optimizer_summary(step.optimizer))


def measure_full_iterations(cfg: Config, model, step: TrainStep,
                            args) -> Dict:
    """Time data loading plus the step with the config's data loader."""
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batches = iter(loader)

    def iteration() -> None:
        step(model.data_preprocessor(next(batches), True)['inputs'])

    seconds = time_call(iteration, args.iters, args.warmup, step.device)
    return dict(
        num_workers=cfg.train_dataloader.get('num_workers', 0),
        seconds=seconds,
        images_per_s=args.batch_size / median(seconds))


def benchmark_saip(cfg: Config, dataset, args,
                   device: torch.device) -> Dict:
    """Measure the SAIP model step and full iterations."""
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device).train()
    samples = [dataset[index % len(dataset)]
               for index in range(args.batch_size)]
    batch = model.data_preprocessor(pseudo_collate(samples), True)
    step = TrainStep(model, build_optimizer(model, cfg),
                     lambda inputs: model(inputs, mode='loss'), args.amp)
    results = measure_step(step, batch['inputs'], args.batch_size, args,
                           device)
    global_size = tuple(batch['inputs']['global_views'].shape[-2:])
    results['hand_count'] = hand_count_check(model.backbone, global_size,
                                             device)
    results['full_iteration'] = measure_full_iterations(
        cfg, model, step, args)
    return results


def mae_losses(model, images: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Compute MAE's loss, patchifying the target for rectangular images.

    ``MAEPretrainHead.patchify`` in mmpretrain 1.2.0 asserts square
    inputs. The target is therefore cut into patches here and passed to the
    head's loss module. The encoder and decoder are mmpretrain's.
    """
    latent, mask, ids_restore = model.backbone(images)
    pred = model.neck(latent, ids_restore)
    patch = model.head.patch_size
    batch, channels, height, width = images.shape
    grid = (height // patch, width // patch)
    # (B, C, H, W) -> (B, H_p * W_p, P * P * C), like MAE's patchify.
    target = images.reshape(batch, channels, grid[0], patch, grid[1], patch)
    target = target.permute(0, 2, 4, 3, 5, 1).reshape(
        batch, grid[0] * grid[1], patch * patch * channels)
    if model.head.norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.e-6)**.5
    return dict(loss=model.head.loss_module(pred, target, mask))


def build_mae(image_size: tuple) -> torch.nn.Module:
    """MAE with a ViT-Tiny/16 encoder and the standard 8-block decoder."""
    patch_size = 16
    num_patches = (image_size[0] // patch_size) * (image_size[1] //
                                                   patch_size)
    model = MODELS.build(
        dict(
            type='MAE',
            backbone=dict(
                type='MAEViT',
                arch='deit-tiny',
                img_size=image_size,
                patch_size=patch_size,
                mask_ratio=0.75),
            neck=dict(
                type='MAEPretrainDecoder',
                num_patches=num_patches,
                patch_size=patch_size,
                embed_dim=192,
                decoder_embed_dim=512,
                decoder_depth=8,
                decoder_num_heads=16),
            head=dict(
                type='MAEPretrainHead',
                norm_pix=True,
                patch_size=patch_size,
                loss=dict(type='PixelReconstructionLoss', criterion='L2'))))
    # NOTE: MAE's init_weights builds square sin-cos position tables and
    # fails for 256x128, so the default initialisation stays. Timings and
    # FLOPs do not depend on the weights.
    return model


def benchmark_mae(cfg: Config, dataset, args,
                  device: torch.device) -> Dict:
    """Measure mmpretrain's MAE step on the first global views."""
    samples = [dataset[index % len(dataset)]
               for index in range(args.batch_size)]
    global_views = torch.stack(
        [sample['inputs']['global_views'][0] for sample in samples])
    image_size = tuple(global_views.shape[-2:])
    model = build_mae(image_size).to(device).train()
    # Normalised by SAIP's preprocessor, so both models see the same pixels.
    preprocessor = MODELS.build(
        cfg.model.get('data_preprocessor',
                      dict(type='SAIPDataPreprocessor'))).to(device)
    images = preprocessor(dict(inputs=dict(images=global_views)),
                          True)['inputs']['images']  # (B, C, H, W)
    step = TrainStep(model, build_optimizer(model, cfg),
                     lambda data: mae_losses(model, data), args.amp)
    results = measure_step(step, images, args.batch_size, args, device)
    results['hand_count'] = hand_count_check(model.backbone, image_size,
                                             device)
    return results


def format_table(report: Dict) -> str:
    """Lay the main figures out as a text table."""
    models = [name for name in ('saip', 'mae') if name in report]
    rows = [('', *[name.upper() for name in models])]

    def add(label: str, key: str, fmt: str, scale: float = 1.) -> None:
        values = []
        for name in models:
            value = report[name]
            for part in key.split('.'):
                value = value.get(part) if isinstance(value, dict) else None
            values.append('-' if value is None else fmt.format(value *
                                                               scale))
        rows.append((label, *values))

    add('batch size', 'batch_size', '{:.0f}')
    add('step time median (s)', 'step_seconds_median', '{:.2f}')
    add('model step (images/s)', 'images_per_s', '{:.2f}')
    add('GFLOP per step', 'flops_per_step', '{:.1f}', 1e-9)
    add('  forward (teacher + student)', 'forward_flops', '{:.1f}', 1e-9)
    add('  backward', 'backward_flops', '{:.1f}', 1e-9)
    add('achieved GFLOP/s', 'achieved_flops_per_s', '{:.1f}', 1e-9)
    add('matmul GFLOP/s, median per step', 'matmul_flops_per_s', '{:.1f}',
        1e-9)
    add('MFU vs measured matmul', 'mfu', '{:.1%}')
    add('peak memory (MiB)', 'peak_memory_bytes', '{:.0f}', 2**-20)
    add('full iteration (images/s)', 'full_iteration.images_per_s',
        '{:.2f}')
    add('ViT fwd GFLOP counted', 'hand_count.counted_flops', '{:.3f}', 1e-9)
    add('ViT fwd GFLOP by hand', 'hand_count.hand_flops', '{:.3f}', 1e-9)
    add('counted / by hand', 'hand_count.ratio', '{:.4f}')
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        '  '.join(cell.ljust(width) for cell, width in zip(row, widths))
        for row in rows
    ]
    header = [
        f"device {report['device']}, threads {report['threads']}, amp "
        f"{report['amp']}, load average {report['load_average_start']} "
        f"on {report['cpu_count']} CPUs",
        f"data pipeline: {report['data']['images_per_s']:.1f} images/s "
        'per process',
        f"matmul {MATMUL_SIZE}x{MATMUL_SIZE}: "
        f"{report['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s",
    ]
    load = report['load_average_start']
    if load is not None and load[0] > report['cpu_count']:
        header.append(
            'NOTE: the load average exceeds the CPU count, so other '
            'processes share the CPU and the figures vary between runs. '
            'With several threads, try OMP_WAIT_POLICY=PASSIVE or '
            '--threads 1.')
    return '\n'.join(header + [''] + lines)


def load_average() -> Optional[List[float]]:
    """Return the 1, 5 and 15 minute load averages, or None where the OS
    has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Silence mmengine's per-parameter initialisation log and its warnings
    # about the frozen teacher parameters that the optimizer skips.
    MMLogger.get_instance('benchmark_pretrain', log_level='ERROR')
    init_default_scope('mmpretrain')
    set_random_seed(0)
    device = torch.device(args.device)

    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.train_dataloader.batch_size = args.batch_size
    if cfg.train_dataloader.get('num_workers', 0) == 0:
        cfg.train_dataloader.persistent_workers = False
    if args.device == 'cpu':
        cfg.train_dataloader.pin_memory = False

    report = dict(
        config=osp.abspath(args.config),
        device=str(device),
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'),
        amp=args.amp,
        batch_size=args.batch_size,
        torch_version=torch.__version__,
        load_average_start=load_average())
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    report['data'] = measure_data(dataset, args.num_images)

    report['saip'] = benchmark_saip(cfg, dataset, args, device)
    if not args.skip_mae:
        report['mae'] = benchmark_mae(cfg, dataset, args, device)
    # The per-step references of all models, for the table's header line.
    rates = [
        rate for name in ('saip', 'mae') if name in report
        for rate in report[name]['matmul_flops_per_s_per_step']
    ]
    report['matmul_flops_per_s_samples'] = rates
    report['matmul_flops_per_s'] = median(rates)
    report['load_average_end'] = load_average()

    print(format_table(report))
    if args.out:
        out_dir = osp.dirname(osp.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2)
        print(f'Figures written to {args.out}')


if __name__ == '__main__':
    main()
