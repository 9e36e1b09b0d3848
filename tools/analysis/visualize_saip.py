"""Draw the inputs and predictions of a SAIP checkpoint on person images.

For each image, the config's training pipeline makes the SAIP views and
the canvas (with a background from ``--background`` or the next image of
``--img``), the model runs on them without a loss, and these PNG files are
written to ``--out`` (all four unless ``--panels`` selects some):

- ``<stem>_views.png``: the global views, the local views and the
  rescaled region and ROI views, un-normalised, at one common zoom;
- ``<stem>_css.png``: the search canvas, its ground-truth instance (green)
  and ROI (orange) masks, and each predicted mask (sigmoid of the CSS
  logits > 0.5) filled with its ground truth outlined;
- ``<stem>_csr.png``: the encoder input with hidden patches in grey, the
  reconstruction, the reconstruction pasted into the visible patches, and
  the target. Predicted patches are mapped back to pixels with the mean
  and std of the target patch, as in MAE's visualisations, so each patch's
  average colour comes from the target;
- ``<stem>_attention.png``: the last-block class-token attention of each
  head (and their mean) over both global views.

Example::

    python tools/analysis/visualize_saip.py \\
        configs/saip/saip_vit-tiny_1xb8-40it_demo.py \\
        work_dirs/saip_demo/iter_40.pth \\
        --img crops/0001.jpg crops/0002.jpg --out vis/
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import cv2
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import set_random_seed

from mmsaip.utils import load_checkpoint_file, setup_checkpoint_loading
from mmsaip.visualization import (BRANCHES, PANEL_NAMES, draw_saip_panels,
                                  run_saip_visual_pass)

# At most this many missing or unexpected checkpoint keys are listed.
_MAX_LISTED_KEYS = 5


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write the SAIP views, CSS search, CSR reconstruction '
        'and attention panels of a checkpoint as PNG files.')
    parser.add_argument('config', help='SAIP config file')
    parser.add_argument(
        'checkpoint',
        help='SAIP training checkpoint (iter_*.pth or epoch_*.pth from '
        'tools/train.py), which must contain the CSR and CSS heads')
    parser.add_argument(
        '--img', nargs='+', required=True, help='person image files')
    parser.add_argument(
        '--out', required=True, help='folder for the PNG files')
    parser.add_argument(
        '--background',
        help='image used as the CSS canvas background for every input '
        '(default: the next image of --img, or the image itself when only '
        'one is given)')
    parser.add_argument(
        '--branch',
        choices=BRANCHES,
        default='teacher',
        help='backbone whose attention is drawn (default: teacher, the '
        'exported EMA branch). CSR and CSS always use the student queries '
        'and the teacher canvas, as in training')
    parser.add_argument(
        '--panels',
        nargs='+',
        choices=PANEL_NAMES,
        default=list(PANEL_NAMES),
        help='panels to write (default: all)')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='random seed of the augmentations, rescale factors and CSR '
        'mask, reset before each image (default: 0)')
    parser.add_argument(
        '--device',
        default='cpu',
        help='torch device to run the model on, e.g. cpu or cuda:0 '
        '(default: cpu)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.csr_scale=1.5')
    return parser.parse_args(argv)


def load_saip_model(cfg: Config, checkpoint_path: str,
                    device: str) -> torch.nn.Module:
    """Build the config's model and load every weight of a checkpoint."""
    from mmpretrain.registry import MODELS

    model = MODELS.build(cfg.model)
    checkpoint = load_checkpoint_file(checkpoint_path)
    state_dict = checkpoint.get('state_dict', checkpoint)
    state_dict = {
        key[len('module.'):] if key.startswith('module.') else key: value
        for key, value in state_dict.items()
    }
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys:
        listed = ', '.join(result.missing_keys[:_MAX_LISTED_KEYS])
        raise ValueError(
            f'{checkpoint_path} lacks {len(result.missing_keys)} weights of '
            f'the model in the config (first: {listed}). The panels need a '
            'full SAIP training checkpoint, with the CSR and CSS heads and '
            'the teacher, written by tools/train.py with this config. An '
            'exported backbone is not enough.')
    if result.unexpected_keys:
        listed = ', '.join(result.unexpected_keys[:_MAX_LISTED_KEYS])
        print(f'warning: ignored {len(result.unexpected_keys)} checkpoint '
              f'entries that the model does not have (first: {listed})')
    return model.to(device).eval()


def build_pipeline(cfg: Config) -> Compose:
    """Build the training pipeline of the config with mmpretrain's
    transform registry."""
    from mmpretrain.registry import TRANSFORMS

    try:
        pipeline_cfg = cfg.train_dataloader.dataset.pipeline
    except AttributeError as err:
        raise ValueError(
            'The config has no train_dataloader.dataset.pipeline, which the '
            'tool needs to make the views (LoadPersonImage, SAIPMultiView, '
            'PackSAIPInputs).') from err
    return Compose([
        TRANSFORMS.build(step) if isinstance(step, dict) else step
        for step in pipeline_cfg
    ])


def unique_stems(paths: Sequence[str]) -> List[str]:
    """Return file stems, with ``_1``, ``_2``... added to repeated stems so
    that no two inputs write the same output file."""
    seen: Dict[str, int] = {}
    stems = []
    for path in paths:
        stem = osp.splitext(osp.basename(path))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        stems.append(stem if count == 0 else f'{stem}_{count}')
    return stems


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    for path in [*args.img, args.background or '']:
        if path and not osp.isfile(path):
            raise FileNotFoundError(f'Image {path!r} does not exist.')
    setup_checkpoint_loading()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))

    model = load_saip_model(cfg, args.checkpoint, args.device)
    pipeline = build_pipeline(cfg)
    os.makedirs(args.out, exist_ok=True)

    written = []
    for index, (path,
                stem) in enumerate(zip(args.img, unique_stems(args.img))):
        background = args.background or args.img[(index + 1) % len(args.img)]
        # Reseeding per image makes each image's panels independent of the
        # other inputs.
        set_random_seed(args.seed)
        sample = pipeline(dict(img_path=path, background_path=background))
        batch = model.data_preprocessor(pseudo_collate([sample]))
        visual = run_saip_visual_pass(model, batch['inputs'], args.branch)
        for name, image in draw_saip_panels(visual, 0, args.panels).items():
            out_path = osp.join(args.out, f'{stem}_{name}.png')
            if not cv2.imwrite(out_path, cv2.cvtColor(image,
                                                      cv2.COLOR_RGB2BGR)):
                raise OSError(f'Failed to write {out_path!r}. Check that '
                              'the folder is writable.')
            written.append(out_path)

    print(f'Wrote {len(written)} panels for {len(args.img)} images to '
          f'{args.out}:')
    for out_path in written:
        print(f'  {osp.basename(out_path)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
