import logging
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS, TRANSFORMS

from .transforms.load_person_image import ImageDecodeError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
# At most this many missing files are listed in an error message.
_MAX_LISTED_MISSING = 5
# The skip ratio is only checked once this many samples were attempted, so
# that one bad file among the first few does not stop training.
_MIN_ATTEMPTS_FOR_RATIO = 100
# If this many first attempts all fail, the data is unusable.
_MAX_INITIAL_FAILURES = 20
_DATA_ROOT_HINT = ('Point the config at your images, e.g. with --cfg-options '
                   'train_dataloader.dataset.data_root=/path/to/lupsub')


@DATASETS.register_module()
class PersonImageDataset(BaseDataset):
    """Unlabeled person images, each paired with a random background image.

    The images are listed in ``ann_file``, which is how LUPerson subsets are
    usually shared. It has one path per line, relative to ``data_root`` or
    absolute, and blank lines and lines starting with ``#`` are ignored.
    Without ``ann_file``, ``data_root`` is scanned recursively for files with
    the extensions in ``IMAGE_EXTENSIONS`` (any letter case), sorted by path.

    Each sample gets a ``background_path`` for the synthetic canvas, drawn at
    call time with ``np.random``, so that seeding makes it reproducible. It
    comes from ``background_root`` (listed the same way, by
    ``background_ann_file`` or by a scan) or, by default, from another image
    of this dataset.

    Samples whose pipeline raises ``ImageDecodeError`` (an empty, truncated
    or corrupt file) are logged as warnings and skipped: ``prepare_data``
    returns None and ``BaseDataset`` fetches another index, or raises in
    ``test_mode``. Training stops with ``RuntimeError`` once more than
    ``max_skip_ratio`` of at least 100 attempts failed, or when the first 20
    attempts all failed. The counters ``num_attempts``, ``num_loaded`` and
    ``num_skipped`` are per process: every dataloader worker holds its own
    copy of the dataset, so each worker applies the limit to its own samples.

    Args:
        data_root (str): Folder with the person images.
        ann_file (str): List file of image paths, relative to ``data_root``
            or absolute. Empty means scan ``data_root``. Defaults to ''.
        background_root (str, optional): Folder with the background images.
            None means other images of this dataset. Defaults to None.
        background_ann_file (str): List file of background paths, relative
            to ``background_root`` or absolute. Empty means scan
            ``background_root``. Only used with ``background_root``.
            Defaults to ''.
        max_skip_ratio (float): Largest tolerated fraction of samples that
            fail to decode, in [0, 1]. Defaults to 0.01.
        pipeline (Sequence[dict | Callable]): Transforms applied to each
            sample. Defaults to ().
        test_mode (bool): Whether a failed sample raises instead of being
            replaced. Defaults to False.
        lazy_init (bool): Whether to defer listing the images until
            ``full_init`` or the first access. Defaults to False.
        max_refetch (int): How many replacement indices ``BaseDataset`` tries
            after a failed sample. Defaults to 1000.
        **kwargs: Other ``mmengine.dataset.BaseDataset`` arguments
            (``metainfo``, ``indices``, ``serialize_data``...).
    """

    def __init__(self,
                 data_root: str,
                 ann_file: str = '',
                 background_root: Optional[str] = None,
                 background_ann_file: str = '',
                 max_skip_ratio: float = 0.01,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 max_refetch: int = 1000,
                 **kwargs) -> None:
        if not data_root:
            raise FileNotFoundError(
                f'data_root is empty: PersonImageDataset needs the folder '
                f'with the person images. {_DATA_ROOT_HINT}')
        _check_folder(data_root, 'data_root')
        if background_root is not None:
            _check_folder(background_root, 'background_root')
        if not 0 <= max_skip_ratio <= 1:
            raise ValueError('max_skip_ratio must be in [0, 1], got '
                             f'{max_skip_ratio!r}.')
        self.background_root = background_root
        self.background_ann_file = background_ann_file
        self.max_skip_ratio = max_skip_ratio
        self.num_attempts = 0
        self.num_loaded = 0
        self.num_skipped = 0
        # Absolute background paths in one numpy string array, so forked
        # dataloader workers do not copy them page by page when they touch
        # per-string reference counts (copy-on-read).
        self._background_paths: Optional[np.ndarray] = None
        # mmengine's BaseDataset builds dict transforms with mmengine's
        # registry. Building them with mmpretrain's, as mmpretrain's datasets
        # do, lets them resolve without default_scope='mmpretrain'.
        transforms = [
            TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline
        ]
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            pipeline=transforms,
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
            **kwargs)

    def full_init(self) -> None:
        """List the images and, with ``background_root``, the backgrounds."""
        if self._fully_initialized:
            return
        super().full_init()
        if self.background_root is not None:
            ann_file = ''
            if self.background_ann_file:
                ann_file = osp.join(self.background_root,
                                    self.background_ann_file)
            paths = _list_images(self.background_root, ann_file,
                                 'background_root')
            self._background_paths = np.array(paths)

    def load_data_list(self) -> List[dict]:
        """List the person images.

        Returns:
            list[dict]: One ``dict(img_path=<absolute path>)`` per image.
        """
        # BaseDataset has already joined a relative ann_file to data_root.
        paths = _list_images(self.data_root, self.ann_file, 'data_root')
        return [dict(img_path=path) for path in paths]

    def prepare_data(self, idx: int) -> Optional[dict]:
        """Run the pipeline on sample ``idx`` with a random background.

        Args:
            idx (int): Sample index.

        Returns:
            dict | None: The pipeline output, or None if an image of the
            sample failed to decode.
        """
        data_info = self.get_data_info(idx)
        data_info['background_path'] = self._sample_background_path(idx)
        self.num_attempts += 1
        try:
            results = self.pipeline(data_info)
        except ImageDecodeError as err:
            self.num_skipped += 1
            print_log(
                f'Skipped sample {idx}: {err.path!r} failed to decode '
                f'({err.reason}). Skipped {self.num_skipped} of '
                f'{self.num_attempts} samples in this process so far.',
                logger='current',
                level=logging.WARNING)
            self._check_skip_ratio()
            return None
        self.num_loaded += 1
        return results

    def _sample_background_path(self, idx: int) -> str:
        """Draw a background path with ``np.random``, never image ``idx``
        itself when the dataset is the background source and has more than
        one image."""
        if self._background_paths is not None:
            index = np.random.randint(len(self._background_paths))
            return str(self._background_paths[index])

        num_images = len(self)
        if num_images == 1:
            return self.get_data_info(idx)['img_path']
        # Draw from the other num_images - 1 indices, then skip over idx.
        index = np.random.randint(num_images - 1)
        if index >= idx:
            index += 1
        return self.get_data_info(index)['img_path']

    def _check_skip_ratio(self) -> None:
        """Raise ``RuntimeError`` when too many samples failed to decode."""
        all_failed = (
            self.num_attempts >= _MAX_INITIAL_FAILURES
            and self.num_skipped == self.num_attempts)
        ratio = self.num_skipped / self.num_attempts
        too_many = (
            self.num_attempts >= _MIN_ATTEMPTS_FOR_RATIO
            and ratio > self.max_skip_ratio)
        if all_failed or too_many:
            raise RuntimeError(
                f'{self.num_skipped} of {self.num_attempts} samples in this '
                f'process failed to decode ({ratio:.1%}), more than '
                f'max_skip_ratio={self.max_skip_ratio} allows. See the '
                'warnings above for the files. Fix or remove them, or raise '
                'the limit with --cfg-options '
                'train_dataloader.dataset.max_skip_ratio=<ratio>.')


def _check_folder(folder: str, name: str) -> None:
    if not osp.isdir(folder):
        raise FileNotFoundError(
            f'{name} {folder!r} is not an existing folder. ' +
            _DATA_ROOT_HINT.replace('data_root', name))


def _list_images(root: str, ann_file: str, name: str) -> List[str]:
    """Return absolute image paths, read from ``ann_file`` in its order or
    found by a sorted recursive scan of ``root``.

    ``ann_file`` must already include ``root`` if it is relative, and its
    entries are relative to ``root``. ``name`` is the config key of ``root``,
    used in error messages.
    """
    if ann_file:
        paths = [
            osp.abspath(osp.join(root, entry))
            for entry in _read_list(ann_file)
        ]
        if not paths:
            raise FileNotFoundError(
                f'The list file {ann_file!r} names no images.')
        missing = [path for path in paths if not osp.isfile(path)]
        if missing:
            shown = '\n  '.join(missing[:_MAX_LISTED_MISSING])
            raise FileNotFoundError(
                f'{len(missing)} of {len(paths)} files named in '
                f'{ann_file!r} do not exist under {name} {root!r}. The first '
                f'{min(len(missing), _MAX_LISTED_MISSING)}:\n  {shown}')
        return paths

    paths = []
    for folder, _, files in os.walk(root, followlinks=True):
        for file_name in files:
            if osp.splitext(file_name)[1].lower() in IMAGE_EXTENSIONS:
                paths.append(osp.abspath(osp.join(folder, file_name)))
    if not paths:
        raise FileNotFoundError(
            f'No images ({", ".join(IMAGE_EXTENSIONS)}) found under {name} '
            f'{root!r}. ' + _DATA_ROOT_HINT.replace('data_root', name))
    return sorted(paths)


def _read_list(ann_file: str) -> List[str]:
    """Read the non-blank, non-comment lines of a UTF-8 list file."""
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'The list file {ann_file!r} does not exist.')
    try:
        with open(ann_file, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(
            f'The list file {ann_file!r} is not UTF-8 text ({err}). It must '
            'contain one image path per line.') from err
    if '\x00' in text:
        raise ValueError(f'The list file {ann_file!r} contains NUL bytes, so '
                         'it is not a text file. It must contain one image '
                         'path per line.')
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith('#')]
