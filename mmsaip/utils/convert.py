"""Export the backbone of a SAIP pretraining checkpoint for fine-tuning.

Two source layouts are read:

- ``'mmsaip'``: an mmengine training checkpoint of this package. Its
  ``state_dict`` contains the student under ``backbone.*`` and the EMA teacher
  under ``teacher.module.backbone.*``, already with mmpretrain ViT names.
- ``'reference'``: a ``checkpoint.pth`` of the authors' code, with the
  branches under the top-level keys ``student`` (DDP, ``module.`` prefix)
  and ``teacher``, and timm ViT names (``blocks.0.attn.qkv.weight``).

The export keeps one branch's backbone (the teacher by default, the branch
the authors fine-tune), renamed to mmpretrain's ``VisionTransformer`` keys
under the prefix ``backbone.``, without ``inter_norm`` (read only by the
pretraining heads). It is a plain ``{'state_dict', 'meta'}`` dict that
``torch.load(..., weights_only=True)`` accepts. ``meta['patch_grid']``
records the grid of the position embedding, so that
:class:`mmsaip.models.SAIPViTBackbone` can resize it for any input size.
"""
import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmpretrain.models.backbones import VisionTransformer

from mmsaip.models.utils.transfer_pos_embed import (TRANSFER_INTERPOLATE_MODE,
                                                    adapt_pos_embed)
from mmsaip.version import __version__

BRANCHES = ('teacher', 'student')
# Prefix of the backbone keys in the exported state dict.
EXPORT_PREFIX = 'backbone.'
# SAIP pretraining input (H, W) when a checkpoint does not record it.
DEFAULT_PRETRAIN_IMG_SIZE = (256, 128)

# Backbone prefix of each branch in an mmsaip training checkpoint.
MMSAIP_BACKBONE_PREFIXES = {
    'teacher': 'teacher.module.backbone.',
    'student': 'backbone.',
}
# Keys that only SAIP checkpoints have: the EMA teacher and the three heads.
_MMSAIP_MARKERS = ('teacher.module.', 'csm_head.', 'csr_head.', 'css_head.')
# Backbone prefix inside each branch of a reference checkpoint, after the
# 'module.' prefix that DDP adds (the reference code saves the student so).
REFERENCE_BACKBONE_PREFIX = 'backbone.'
_DDP_PREFIX = 'module.'
# Backbone tensors that only the pretraining heads read.
PRETRAIN_ONLY_PREFIXES = ('inter_norm.', )
# Wrapper names skipped when grouping dropped keys for the report.
_WRAPPER_NAMES = ('teacher', 'student', 'module')

# timm names of the reference backbone -> mmpretrain VisionTransformer names.
_REFERENCE_TOP_LEVEL_NAMES = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'patch_embed.proj.bias': 'patch_embed.projection.bias',
    'norm.weight': 'ln1.weight',
    'norm.bias': 'ln1.bias',
}
_REFERENCE_BLOCK_NAMES = {
    'norm1': 'ln1',
    'attn.qkv': 'attn.qkv',
    'attn.proj': 'attn.proj',
    'norm2': 'ln2',
    'mlp.fc1': 'ffn.layers.0.0',
    'mlp.fc2': 'ffn.layers.1',
}
_REFERENCE_BLOCK_PATTERN = re.compile(
    r'^blocks\.(\d+)\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)'
    r'\.(weight|bias)$')


@dataclass
class ExportedBackbone:
    """A backbone exported from a SAIP checkpoint.

    Attributes:
        state_dict (dict[str, Tensor]): mmpretrain ViT weights, keys without
            :data:`EXPORT_PREFIX`.
        meta (dict): What :func:`save_exported_backbone` stores as ``meta``:
            source format and branch, ``arch``, ``patch_size``,
            ``patch_grid`` (H, W), ``img_size`` (H, W), ``with_cls_token``.
        source_prefix (str): Prefix of the exported backbone in the source,
            e.g. 'teacher.module.backbone.'.
        dropped_keys (list[str]): Source tensor keys not exported, with
            their full source names.
    """
    state_dict: Dict[str, torch.Tensor]
    meta: dict
    source_prefix: str
    dropped_keys: List[str] = field(default_factory=list)


def detect_checkpoint_format(checkpoint: dict) -> str:
    """Tell an mmsaip training checkpoint from a reference one.

    Args:
        checkpoint (dict): The loaded checkpoint.

    Returns:
        str: 'mmsaip' or 'reference'.

    Raises:
        ValueError: If it is neither, with what was expected and found.
    """
    state_dict = checkpoint.get('state_dict')
    if isinstance(state_dict, dict) and any(
            key.startswith(_MMSAIP_MARKERS) for key in state_dict):
        return 'mmsaip'
    for branch in BRANCHES:
        weights = checkpoint.get(branch)
        if isinstance(weights, dict) and any(
                key.startswith(_reference_prefix(weights) + 'blocks.')
                for key in weights):
            return 'reference'
    found = sorted(checkpoint)[:10]
    hint = ''
    if isinstance(state_dict, dict) and any(
            key.startswith(EXPORT_PREFIX + 'layers.') for key in state_dict):
        hint = (' It looks like an exported backbone already: load it with '
                "init_cfg=dict(type='Pretrained', prefix='backbone.').")
    raise ValueError(
        'Not a SAIP pretraining checkpoint. Expected either an mmsaip '
        "training checkpoint (a 'state_dict' with 'teacher.module.backbone.*'"
        " and 'backbone.*' keys) or a checkpoint of the reference SAIP code "
        "('teacher' and 'student' dicts with 'backbone.blocks.*' keys). "
        f'Found the top-level keys {found}.{hint}')


def map_reference_key(name: str) -> Optional[str]:
    """Map a timm backbone key of the reference code to mmpretrain's name.

    Args:
        name (str): Key relative to the backbone, e.g.
            'blocks.0.mlp.fc1.weight'.

    Returns:
        str | None: The mmpretrain ViT key, e.g. 'layers.0.ffn.layers.0.0.
        weight', or None if the key is unknown.
    """
    if name in _REFERENCE_TOP_LEVEL_NAMES:
        return _REFERENCE_TOP_LEVEL_NAMES[name]
    match = _REFERENCE_BLOCK_PATTERN.match(name)
    if match is None:
        return None
    index, module, param = match.groups()
    return f'layers.{index}.{_REFERENCE_BLOCK_NAMES[module]}.{param}'


def group_keys(keys: Sequence[str],
               backbone_prefix: str = '') -> List[Tuple[str, int]]:
    """Count keys per module, for a short report of dropped tensors.

    Keys under ``backbone_prefix`` are grouped by their first module below
    it (``teacher.module.backbone.inter_norm.*``). Other keys are grouped by
    their first module after wrapper names such as ``teacher`` and
    ``module`` (``teacher.module.neck.*``, ``csm_head.*``). A key that is a
    whole group by itself keeps its name (``teacher.steps``).

    Args:
        keys (Sequence[str]): Full key names.
        backbone_prefix (str): Prefix of the exported backbone.
            Defaults to ''.

    Returns:
        list[tuple[str, int]]: (group label, number of keys), sorted.
    """
    counts = Counter()
    for key in keys:
        if backbone_prefix and key.startswith(backbone_prefix):
            group = backbone_prefix + key[len(backbone_prefix):].split('.')[0]
        else:
            parts = key.split('.')
            depth = 0
            while depth < len(parts) - 1 and parts[depth] in _WRAPPER_NAMES:
                depth += 1
            group = '.'.join(parts[:depth + 1])
        counts[group if group == key else group + '.*'] += 1
    return sorted(counts.items())


def read_pretrain_img_size(checkpoint: dict,
                           source_format: str) -> Optional[Tuple[int, int]]:
    """Read the pretraining input size (H, W) that a checkpoint records.

    mmsaip checkpoints carry their config text in ``meta['cfg']``, read
    here without running it (``model.backbone.img_size``). Reference
    checkpoints carry the ``args`` namespace with ``height`` and ``width``.

    Args:
        checkpoint (dict): The loaded checkpoint.
        source_format (str): 'mmsaip' or 'reference'.

    Returns:
        tuple[int, int] | None: The size, or None if it is not recorded.
    """
    if source_format == 'reference':
        args = checkpoint.get('args')
        height, width = getattr(args, 'height', None), getattr(
            args, 'width', None)
        if isinstance(height, int) and isinstance(width, int):
            return height, width
        return None
    cfg_text = checkpoint.get('meta', {}).get('cfg')
    if not isinstance(cfg_text, str):
        return None
    return _backbone_img_size_from_cfg_text(cfg_text)


def _backbone_img_size_from_cfg_text(
        cfg_text: str) -> Optional[Tuple[int, int]]:
    """Find ``model.backbone.img_size`` in a config's text, as literals."""
    try:
        tree = ast.parse(cfg_text)
    except SyntaxError:
        return None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == 'model'
                for target in node.targets)):
            continue
        backbone = _keyword_value(node.value, 'backbone')
        img_size = _keyword_value(backbone, 'img_size')
        if img_size is None:
            return None
        try:
            value = ast.literal_eval(img_size)
        except ValueError:
            return None
        if isinstance(value, int):
            return value, value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return int(value[0]), int(value[1])
    return None


def _keyword_value(node: Optional[ast.AST], name: str) -> Optional[ast.AST]:
    """Return the value of keyword ``name`` in a ``dict(...)`` call node."""
    if not isinstance(node, ast.Call):
        return None
    for keyword in node.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _reference_prefix(weights: dict) -> str:
    """Backbone prefix in a reference branch, with 'module.' if DDP saved
    it."""
    if weights and all(key.startswith(_DDP_PREFIX) for key in weights):
        return _DDP_PREFIX + REFERENCE_BACKBONE_PREFIX
    return REFERENCE_BACKBONE_PREFIX


def _extract_branch(checkpoint: dict, source_format: str,
                    branch: str) -> Tuple[Dict[str, torch.Tensor], str, list]:
    """Return the branch's backbone (source names), its prefix and all
    source tensor keys with their full names."""
    if source_format == 'mmsaip':
        source = checkpoint['state_dict']
        prefix = MMSAIP_BACKBONE_PREFIXES[branch]
        all_keys = list(source)
        backbone = {
            key[len(prefix):]: value
            for key, value in source.items() if key.startswith(prefix)
        }
    else:
        source = checkpoint.get(branch)
        if not isinstance(source, dict):
            source = {}
        local_prefix = _reference_prefix(source)
        prefix = f'{branch}.{local_prefix}'
        all_keys = [
            f'{name}.{key}' for name in BRANCHES
            if isinstance(checkpoint.get(name), dict)
            for key in checkpoint[name]
        ]
        backbone = {
            key[len(local_prefix):]: value
            for key, value in source.items() if key.startswith(local_prefix)
        }
    if not backbone:
        raise ValueError(
            f'The {source_format} checkpoint has no {branch} backbone, '
            f'because no key starts with {prefix!r}. Choose the other branch '
            'with '
            f"--branch {'student' if branch == 'teacher' else 'teacher'}.")
    return backbone, prefix, all_keys


def _rename_backbone(backbone: Dict[str, torch.Tensor], source_format: str,
                     prefix: str) -> Tuple[Dict[str, torch.Tensor], list]:
    """Drop pretraining-only tensors and rename to mmpretrain keys."""
    renamed, dropped, unknown = {}, [], []
    for key, value in backbone.items():
        if key.startswith(PRETRAIN_ONLY_PREFIXES):
            dropped.append(prefix + key)
            continue
        new_key = key if source_format == 'mmsaip' else map_reference_key(key)
        if new_key is None:
            unknown.append(prefix + key)
            continue
        renamed[new_key] = value
    if unknown:
        raise ValueError(
            f'Unknown backbone keys in the reference checkpoint: {unknown}. '
            'Only the ViT of the SAIP reference code (timm names, plus '
            'inter_norm) is supported.')
    return renamed, dropped


def _infer_arch(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Read the ViT size from the weights (the head count is not stored)."""
    required = ('cls_token', 'pos_embed', 'patch_embed.projection.weight',
                'layers.0.ffn.layers.0.0.weight')
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise ValueError(
            f'The backbone in the checkpoint lacks {missing}, so it is not a '
            'complete SAIP ViT.')
    projection = state_dict['patch_embed.projection.weight']
    layer_ids = {
        int(key.split('.')[1])
        for key in state_dict if key.startswith('layers.')
    }
    return dict(
        embed_dims=int(projection.shape[0]),
        num_layers=len(layer_ids),
        feedforward_channels=int(
            state_dict['layers.0.ffn.layers.0.0.weight'].shape[0]),
        in_channels=int(projection.shape[1]),
        patch_size=int(projection.shape[-1]),
        qkv_bias='layers.0.attn.qkv.bias' in state_dict)


def _check_against_vit(state_dict: Dict[str, torch.Tensor], arch: dict,
                       patch_grid: Tuple[int, int],
                       with_cls_token: bool) -> None:
    """Check keys and shapes against a freshly built mmpretrain ViT."""
    patch_size = arch['patch_size']
    reference = VisionTransformer(
        # One head: shapes do not depend on the head count.
        arch=dict(
            embed_dims=arch['embed_dims'],
            num_layers=arch['num_layers'],
            num_heads=1,
            feedforward_channels=arch['feedforward_channels']),
        img_size=(patch_grid[0] * patch_size, patch_grid[1] * patch_size),
        patch_size=patch_size,
        in_channels=arch['in_channels'],
        qkv_bias=arch['qkv_bias'],
        with_cls_token=with_cls_token,
        out_type='featmap',
        patch_cfg=dict(padding=0)).state_dict()
    missing = sorted(set(reference) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(reference))
    wrong_shapes = [(key, tuple(state_dict[key].shape),
                     tuple(reference[key].shape)) for key in reference
                    if key in state_dict
                    and state_dict[key].shape != reference[key].shape]
    if missing or unexpected or wrong_shapes:
        raise ValueError(
            'The exported backbone does not match mmpretrain\'s '
            f'VisionTransformer of the same size: missing {missing[:8]}, '
            f'unexpected {unexpected[:8]}, shape mismatches (key, got, '
            f'expected) {wrong_shapes[:8]}. The checkpoint is incomplete '
            'or not a SAIP ViT.')


def export_backbone(checkpoint: dict,
                    branch: str = 'teacher',
                    img_size: Optional[Sequence[int]] = None,
                    with_cls_token: bool = True,
                    pretrain_img_size: Optional[Sequence[int]] = None
                    ) -> ExportedBackbone:
    """Extract one branch's backbone in mmpretrain ViT layout.

    Args:
        checkpoint (dict): A loaded mmsaip or reference SAIP checkpoint.
        branch (str): 'teacher' (the EMA teacher) or 'student'.
            Defaults to 'teacher'.
        img_size (Sequence[int], optional): Downstream input size (H, W)
            whose patch grid the position embedding is resized to, with the
            alignment of :mod:`mmsaip.models.utils.transfer_pos_embed`.
            Defaults to None: keep the pretraining grid, which
            :class:`SAIPViTBackbone` resizes when loading.
        with_cls_token (bool): Keep the class token and its position.
            Defaults to True.
        pretrain_img_size (Sequence[int], optional): Pretraining input size
            (H, W). Defaults to None: the size the checkpoint records, else
            (256, 128).

    Returns:
        ExportedBackbone: The weights, their metadata and the dropped keys.

    Raises:
        ValueError: If the checkpoint is not a SAIP checkpoint, lacks the
            branch, or the sizes do not fit its position embedding.
    """
    if branch not in BRANCHES:
        raise ValueError(f'branch must be one of {BRANCHES}, got {branch!r}')
    source_format = detect_checkpoint_format(checkpoint)
    backbone, prefix, all_keys = _extract_branch(checkpoint, source_format,
                                                 branch)
    state_dict, dropped_backbone_keys = _rename_backbone(
        backbone, source_format, prefix)
    arch = _infer_arch(state_dict)
    patch_size = arch['patch_size']

    if pretrain_img_size is None:
        pretrain_img_size = read_pretrain_img_size(
            checkpoint, source_format) or DEFAULT_PRETRAIN_IMG_SIZE
    source_grid = (int(pretrain_img_size[0]) // patch_size,
                   int(pretrain_img_size[1]) // patch_size)
    num_patches = state_dict['pos_embed'].shape[1] - 1
    if source_grid[0] * source_grid[1] != num_patches:
        raise ValueError(
            f'pos_embed has {num_patches} patch positions, but a '
            f'{tuple(pretrain_img_size)} input with {patch_size}-pixel '
            f'patches gives a {source_grid[0]}x{source_grid[1]} grid. Pass '
            'the pretraining input size with --pretrain-img-size H W.')

    target_grid = source_grid
    if img_size is not None:
        if img_size[0] % patch_size or img_size[1] % patch_size:
            raise ValueError(f'img_size {tuple(img_size)} must be a multiple '
                             f'of the patch size {patch_size}')
        target_grid = (img_size[0] // patch_size, img_size[1] // patch_size)
    state_dict['pos_embed'] = adapt_pos_embed(
        state_dict['pos_embed'], source_grid, target_grid, 1,
        int(with_cls_token), TRANSFER_INTERPOLATE_MODE)
    if not with_cls_token:
        del state_dict['cls_token']
        dropped_backbone_keys.append(prefix + 'cls_token')
    _check_against_vit(state_dict, arch, target_grid, with_cls_token)

    # Own storage for every tensor: a view would save its whole source
    # buffer, and a memory-mapped source file may go away.
    state_dict = {
        key: value.detach().clone().contiguous()
        for key, value in state_dict.items()
    }
    exported = {prefix + key for key in backbone} - set(dropped_backbone_keys)
    dropped = [key for key in all_keys if key not in exported]
    meta = dict(
        source_format=source_format,
        branch=branch,
        arch={key: arch[key]
              for key in ('embed_dims', 'num_layers',
                          'feedforward_channels')},
        patch_size=patch_size,
        pretrain_patch_grid=source_grid,
        patch_grid=target_grid,
        img_size=(target_grid[0] * patch_size, target_grid[1] * patch_size),
        with_cls_token=with_cls_token,
        interpolate_mode=TRANSFER_INTERPOLATE_MODE,
        mmsaip_version=__version__)
    if source_format == 'mmsaip':
        source_meta = checkpoint.get('meta', {})
    else:
        source_meta = {'epoch': checkpoint.get('epoch')}
    for key in ('iter', 'epoch'):
        if isinstance(source_meta.get(key), int):
            meta[f'source_{key}'] = source_meta[key]
    return ExportedBackbone(state_dict, meta, prefix, dropped)


def save_exported_backbone(exported: ExportedBackbone, path: str) -> None:
    """Save an export as ``{'state_dict': {'backbone.*': ...}, 'meta'}``.

    Args:
        exported (ExportedBackbone): The result of :func:`export_backbone`.
        path (str): Output file.
    """
    state_dict = {
        EXPORT_PREFIX + key: value
        for key, value in exported.state_dict.items()
    }
    torch.save({'state_dict': state_dict, 'meta': exported.meta}, path)
