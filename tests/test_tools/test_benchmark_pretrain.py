"""tools/analysis/benchmark_pretrain.py run as a user runs it."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from saip_test_utils import DEMO_CONFIG, REPO_ROOT

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'benchmark_pretrain.py')
STEP_KEYS = {
    'batch_size', 'step_seconds', 'step_seconds_median', 'images_per_s',
    'flops_per_step', 'forward_flops', 'backward_flops',
    'achieved_flops_per_s', 'mfu', 'peak_memory_bytes', 'hand_count'
}


def run_benchmark(tmp_path, shared_data_root, *extra_args) -> dict:
    # One thread: with two, other jobs on a shared CPU can slow every
    # parallel region by a scheduler time slice.
    out = tmp_path / 'benchmark.json'
    command = [
        sys.executable, TOOL, DEMO_CONFIG, '--batch-size', '1', '--iters',
        '1', '--warmup', '0', '--num-images', '2', '--threads', '1',
        '--device', 'cpu', '--out',
        str(out), *extra_args, '--cfg-options',
        'train_dataloader.dataset.data_root=' +
        osp.join(shared_data_root, 'person_crops'),
        'train_dataloader.num_workers=0'
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'MFU vs measured matmul' in result.stdout
    with open(out, encoding='utf-8') as f:
        return json.load(f)


def check_step_figures(figures: dict) -> None:
    assert STEP_KEYS <= set(figures)
    assert figures['batch_size'] == 1
    assert len(figures['step_seconds']) == 1
    for key in ('step_seconds_median', 'images_per_s', 'flops_per_step',
                'forward_flops', 'backward_flops', 'achieved_flops_per_s',
                'mfu', 'peak_memory_bytes'):
        assert figures[key] > 0, key
    assert figures['forward_flops'] < figures['flops_per_step']
    # One timed step: its MFU is its FLOP/s over the matmul rate measured
    # right before it.
    assert len(figures['matmul_flops_per_s_per_step']) == 1
    expected_mfu = (figures['flops_per_step'] / figures['step_seconds'][0] /
                    figures['matmul_flops_per_s_per_step'][0])
    assert figures['mfu'] == pytest.approx(expected_mfu, rel=1e-9)
    # The FLOP counter and the hand count of one ViT-Tiny forward at
    # 256x128 agree.
    assert figures['hand_count']['image_size'] == [256, 128]
    assert figures['hand_count']['ratio'] == pytest.approx(1., rel=0.02)


def test_benchmark_pretrain_saip_only(tmp_path, shared_data_root):
    report = run_benchmark(tmp_path, shared_data_root, '--skip-mae')

    assert 'mae' not in report
    assert report['device'] == 'cpu'
    assert report['amp'] == 'none'
    assert report['threads'] == 1
    assert report['batch_size'] == 1
    assert report['data']['num_images'] == 2
    assert report['data']['images_per_s'] > 0
    assert report['matmul_flops_per_s'] > 0
    check_step_figures(report['saip'])
    full = report['saip']['full_iteration']
    assert len(full['seconds']) == 1
    assert full['images_per_s'] > 0
    assert report['saip']['optimizer']['type'] == 'AdamW'
    assert report['saip']['optimizer']['fused'] is True


@pytest.mark.integration
def test_benchmark_pretrain_with_mae(tmp_path, shared_data_root):
    report = run_benchmark(tmp_path, shared_data_root)

    check_step_figures(report['saip'])
    check_step_figures(report['mae'])
    # MAE encodes a quarter of one view and has no teacher: it costs
    # fewer FLOPs per image than SAIP.
    assert report['mae']['flops_per_step'] < report['saip']['flops_per_step']
