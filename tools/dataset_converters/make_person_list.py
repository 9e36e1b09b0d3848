"""Write a list file of the readable person images under a folder.

The list has one image path per line, relative to ROOT, sorted, which is
the format that ``PersonImageDataset(data_root=ROOT, ann_file=OUT)`` reads.
Images are found by a recursive scan for the extensions that the dataset
scans for (any letter case), following symbolic links.

Each listed image is decoded completely, in ``--workers`` processes, by
``LoadPersonImage``: the transform that loads images in training. So the
list contains exactly the files that training can read. Files that are empty,
truncated, corrupt, not images, or that cannot be opened are left out and
reported (count and first paths), and ``--bad-list`` writes all of them.

With ``--subset N`` the tool lists N images drawn at random with
``--seed``: it shuffles all paths with that seed and checks them in that
order, replacing unreadable ones by the next, until N are readable. The
same folder, N and seed therefore give the same list.

Example::

    python tools/dataset_converters/make_person_list.py \\
        data/LUPerson data/LUPerson/lup1m_list.txt \\
        --subset 1000000 --seed 0 --workers 16 --bad-list bad_files.tsv
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress

from mmsaip.datasets import LoadPersonImage
from mmsaip.datasets.person_image_dataset import IMAGE_EXTENSIONS

# Unreadable files listed in the summary. --bad-list gets all of them.
_MAX_SHOWN_BAD = 10
# (relative path, reason), where reason is None for a readable image.
CheckResult = Tuple[str, Optional[str]]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='List the readable person images under ROOT, one path '
        'relative to ROOT per line, for PersonImageDataset(ann_file=...).')
    parser.add_argument('root', help='folder with the person images')
    parser.add_argument('out', help='list file to write')
    parser.add_argument(
        '--subset',
        type=int,
        help='number of images to draw at random (default: all)')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='random seed of --subset (default: 0)')
    parser.add_argument(
        '--workers',
        type=int,
        default=1,
        help='processes that decode the images (default: 1)')
    parser.add_argument(
        '--bad-list',
        help='also write the unreadable files here, one per line as '
        '"<path relative to ROOT><TAB><reason>"')
    parser.add_argument(
        '--no-check',
        action='store_true',
        help='list the files without decoding them (fast, but unreadable '
        'files stay in the list and are skipped during training)')
    args = parser.parse_args(argv)
    if args.subset is not None and args.subset < 1:
        parser.error(f'--subset must be >= 1, got {args.subset}')
    if args.workers < 1:
        parser.error(f'--workers must be >= 1, got {args.workers}')
    return args


def scan_images(root: str) -> List[str]:
    """Return the image paths under ``root``, relative to it with '/'
    separators, sorted."""
    paths = []
    for folder, _, files in os.walk(root, followlinks=True):
        for file_name in files:
            if osp.splitext(file_name)[1].lower() in IMAGE_EXTENSIONS:
                relative = osp.relpath(osp.join(folder, file_name), root)
                paths.append(relative.replace(os.sep, '/'))
    return sorted(paths)


def check_image(task: Tuple[str, str]) -> CheckResult:
    """Decode one image as training would.

    Args:
        task (tuple[str, str]): (root, path relative to root).

    Returns:
        tuple[str, str | None]: The relative path and None if the image is
        readable, or the reason it is not.
    """
    root, relative = task
    if relative != relative.strip() or '\n' in relative or '\r' in relative:
        # PersonImageDataset strips each line of a list file.
        return relative, ('the path starts or ends with white space or '
                          'contains a line break, so a list file cannot '
                          'hold it')
    try:
        LoadPersonImage().transform(dict(img_path=osp.join(root, relative)))
    except OSError as err:
        # ImageDecodeError is an OSError, like a failed open().
        reason = getattr(err, 'reason', None) or str(err)
        return relative, ' '.join(reason.split())
    return relative, None


def check_images(root: str, paths: Sequence[str],
                 workers: int) -> List[CheckResult]:
    """Check ``paths`` in order with a progress bar, in ``workers``
    processes."""
    if not paths:
        return []
    tasks = [(root, path) for path in paths]
    if workers == 1:
        return track_progress(check_image, tasks)
    # Chunks keep the per-task overhead small for millions of images.
    chunk_size = max(1, min(256, len(tasks) // (workers * 8)))
    return track_parallel_progress(
        check_image, tasks, workers, chunksize=chunk_size)


def select_readable(root: str, paths: Sequence[str], subset: Optional[int],
                    seed: int,
                    workers: int) -> Tuple[List[str], List[CheckResult]]:
    """Return the readable paths to list and the unreadable ones found.

    Without ``subset`` every path is checked. With it, the paths are
    shuffled with ``seed`` and checked in that order, in batches, until
    ``subset`` readable ones are found or the paths run out.
    """
    if subset is None:
        results = check_images(root, paths, workers)
        good = [path for path, reason in results if reason is None]
        bad = [(path, reason) for path, reason in results if reason]
        return good, bad

    order = np.random.RandomState(seed).permutation(len(paths))
    shuffled = [paths[index] for index in order]
    good: List[str] = []
    bad: List[CheckResult] = []
    start = 0
    while len(good) < subset and start < len(shuffled):
        batch = shuffled[start:start + subset - len(good)]
        start += len(batch)
        for path, reason in check_images(root, batch, workers):
            if reason is None:
                good.append(path)
            else:
                bad.append((path, reason))
    return good, bad


def write_lines(path: str, lines: Sequence[str]) -> None:
    """Write one line per entry, creating the folder of ``path``."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.writelines(f'{line}\n' for line in lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not osp.isdir(args.root):
        raise FileNotFoundError(
            f'ROOT {args.root!r} is not an existing folder. Pass the folder '
            'that contains the person images.')
    paths = scan_images(args.root)
    if not paths:
        raise FileNotFoundError(
            f'No images ({", ".join(IMAGE_EXTENSIONS)}) found under '
            f'{args.root!r}.')
    print(f'Found {len(paths)} image files under {args.root}.')

    if args.no_check:
        good, bad = paths, []
        if args.subset is not None:
            order = np.random.RandomState(args.seed).permutation(len(paths))
            good = [paths[index] for index in order[:args.subset]]
    else:
        good, bad = select_readable(args.root, paths, args.subset, args.seed,
                                    args.workers)
    good = sorted(good)

    write_lines(args.out, good)
    print(f'Wrote {len(good)} paths to {args.out}.')
    if args.subset is not None and len(good) < args.subset:
        print(f'warning: --subset {args.subset} asked for more images than '
              f'the {len(good)} readable ones under {args.root}.')
    if bad:
        print(f'Left out {len(bad)} unreadable files. The first '
              f'{min(len(bad), _MAX_SHOWN_BAD)}:')
        for path, reason in bad[:_MAX_SHOWN_BAD]:
            print(f'  {path}: {reason}')
    if args.bad_list:
        write_lines(args.bad_list,
                    [f'{path}\t{reason}' for path, reason in bad])
        print(f'Wrote {len(bad)} unreadable files to {args.bad_list}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
