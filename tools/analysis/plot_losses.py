"""Plot the SAIP losses and schedules of a training log.

Reads the ``vis_data/scalars.json`` that mmengine's ``LocalVisBackend``
writes (one JSON object per logged training iteration) and draws one PNG
with stacked axes that share the iteration axis (axes whose keys are not
in the log are left out):

1. the five loss terms, on a log scale because they differ by orders of
   magnitude (``loss_csm`` is of the order of ln(K) for K prototypes, while
   ``loss_csm_attn`` can be 1e-3). Zero values are not drawn;
2. the CSM teacher temperature ``csm_teacher_temp``;
3. the teacher EMA momentum ``ema_momentum`` (mmengine convention: the
   student's weight in the average, so DINO's 0.996 is 0.004);
4. the teacher entropy ``csm_teacher_entropy``;
5. the CSS mask IoUs ``css_inst_iou`` and ``css_roi_iou``.

Example::

    python tools/analysis/plot_losses.py \\
        work_dirs/saip_demo/20250101_120000/vis_data/scalars.json \\
        --out losses.png
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

LOSS_KEYS = ('loss_csm', 'loss_csm_attn', 'loss_csr', 'loss_css_inst',
             'loss_css_roi')
SCHEDULE_KEYS = ('csm_teacher_temp', 'ema_momentum')
OPTIONAL_AXES = (('csm_teacher_entropy', ), ('css_inst_iou', 'css_roi_iou'))
# mmengine logs the global iteration as 'iter' in training records and as
# 'step' in every record. 'iter' is preferred.
ITERATION_KEYS = ('iter', 'step')

Series = Dict[str, Tuple[List[float], List[float]]]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Plot the five SAIP losses, the CSM teacher '
        'temperature and the EMA momentum from an mmengine scalars.json.')
    parser.add_argument(
        'log_json',
        help='vis_data/scalars.json of a run (one JSON object per line)')
    parser.add_argument('--out', required=True, help='output PNG file')
    parser.add_argument(
        '--title', help='figure title (default: the log file path)')
    return parser.parse_args(argv)


def read_scalars(path: str) -> List[dict]:
    """Read one JSON object per non-blank line.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If a line is not a JSON object.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'Log file {path!r} does not exist. mmengine writes it at the '
            'first logged iteration (default_hooks.logger.interval), so a '
            'shorter run has none. Pass the scalars.json in '
            '<work_dir>/<timestamp>/vis_data/ of a training run.')
    records = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f'{path}, line {number} is not valid JSON ({err}). '
                    'The file must hold one JSON object per line, as '
                    'mmengine writes scalars.json.') from err
            if not isinstance(record, dict):
                raise ValueError(f'{path}, line {number} contains a '
                                 f'{type(record).__name__}, not a JSON '
                                 'object.')
            records.append(record)
    return records


def collect_series(records: Sequence[dict], keys: Sequence[str]) -> Series:
    """Return (iterations, values) per key, over the records that have the
    key and an iteration number. Keys that never occur are left out."""
    series: Series = {}
    for record in records:
        iteration = next(
            (record[key] for key in ITERATION_KEYS if key in record), None)
        if iteration is None:
            continue
        for key in keys:
            if key in record:
                xs, ys = series.setdefault(key, ([], []))
                xs.append(float(iteration))
                ys.append(float(record[key]))
    return series


def plot_losses(records: Sequence[dict],
                out_path: str,
                title: str = '') -> List[str]:
    """Draw the loss and schedule axes into ``out_path``.

    Args:
        records (Sequence[dict]): Parsed lines of a scalars.json.
        out_path (str): PNG file to write. Its folder is created.
        title (str): Figure title. Defaults to ''.

    Returns:
        list[str]: The keys that were plotted.

    Raises:
        ValueError: If no record has an iteration number and one of the
            loss or schedule keys.
    """
    axes_keys = [LOSS_KEYS, *[(key, ) for key in SCHEDULE_KEYS]]
    expected_keys = [*LOSS_KEYS, *SCHEDULE_KEYS]
    series = collect_series(records, expected_keys)
    if not series:
        found = sorted({key for record in records for key in record})
        raise ValueError(
            f'None of {", ".join(expected_keys)} appears in a record with '
            f'{" or ".join(ITERATION_KEYS)}. Keys found: '
            f'{", ".join(found) or "none"}. Pass the scalars.json of a '
            'SAIP training run.')
    series.update(
        collect_series(records,
                       [key for keys in OPTIONAL_AXES for key in keys]))
    axes_keys += OPTIONAL_AXES
    # Axes with nothing logged are left out.
    axes_keys = [
        keys for keys in axes_keys if any(key in series for key in keys)
    ]

    figure, axes = plt.subplots(
        len(axes_keys),
        1,
        sharex=True,
        figsize=(9, 2.2 * len(axes_keys) + 1),
        squeeze=False)
    plotted = []
    for axis, keys in zip(axes[:, 0], axes_keys):
        for key in keys:
            if key not in series:
                continue
            xs, ys = series[key]
            axis.plot(xs, ys, label=key, linewidth=1.2)
            plotted.append(key)
        if keys == LOSS_KEYS:
            # Zeros (loss_csm_attn is 0 at the first iteration, where the
            # student equals the teacher) are left out of the log axis.
            axis.set_yscale('log', nonpositive='mask')
            axis.set_ylabel('loss')
        axis.legend(loc='best', fontsize='small')
        axis.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel('iteration')
    if title:
        figure.suptitle(title, fontsize='medium')
    figure.tight_layout()

    folder = osp.dirname(osp.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return plotted


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    records = read_scalars(args.log_json)
    title = args.title if args.title is not None else args.log_json
    plotted = plot_losses(records, args.out, title)
    missing = [
        key for key in (*LOSS_KEYS, *SCHEDULE_KEYS) if key not in plotted
    ]
    print(f'Plotted {", ".join(plotted)} from {len(records)} records to '
          f'{args.out}.')
    if missing:
        print(f'warning: not in the log: {", ".join(missing)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
