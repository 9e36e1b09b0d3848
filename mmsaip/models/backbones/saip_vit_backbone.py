"""Plain ViT backbone that fine-tunes an exported SAIP checkpoint."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS

from ..utils.transfer_pos_embed import (TRANSFER_INTERPOLATE_MODE,
                                        adapt_pos_embed, resolve_patch_grid)

# Keys that only an unconverted SAIP training checkpoint has.
_TRAINING_CHECKPOINT_MARKER = 'teacher.module.backbone.'


@MODELS.register_module()
class SAIPViTBackbone(VisionTransformer):
    """mmpretrain ViT that loads SAIP backbones onto any input size.

    The parameters are those of mmpretrain's :class:`VisionTransformer`,
    so the downstream toolboxes use it like any ViT (mmpose, mmdet and
    mmseg configs refer to it as ``mmpretrain.SAIPViTBackbone``). What it
    adds is the loading of a backbone exported by
    ``tools/convert_checkpoint.py``:

    - the position embedding is resized from the pretraining patch grid
      (16 x 8 for SAIP's 256 x 128 crops, read from the checkpoint's
      ``meta['patch_grid']``) to this backbone's grid, on the 2-D grid and
      with bilinear interpolation (see
      :mod:`mmsaip.models.utils.transfer_pos_embed`); mmpretrain's own
      loader assumes a square source grid;
    - the class token and its position are dropped when
      ``with_cls_token=False``;
    - loading fails unless every backbone parameter is loaded and no key is
      left over, and one INFO line reports the result.

    Weights are loaded through
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
    when the model's ``init_weights`` runs.

    Args:
        arch (str | dict): ViT architecture, as in mmpretrain.
            Defaults to 'deit-tiny' (192 dims, 12 layers, 3 heads), the SAIP
            backbone.
        img_size (int | Sequence[int]): Input size (H, W) of the task, on
            whose patch grid the position embedding is stored. Other input
            sizes resize it at every forward pass. Defaults to (256, 128).
        patch_size (int): Patch size. Defaults to 16.
        out_type (str): Output of each tapped layer: 'featmap' (B, C, H, W),
            'raw' tokens, 'cls_token' or 'avg_featmap'.
            Defaults to 'featmap'.
        with_cls_token (bool): Keep the class token. Defaults to True.
        interpolate_mode (str): Interpolation of the position embedding,
            both when loading and for inputs of other sizes.
            Defaults to 'bilinear'.
        pretrain_img_size (Sequence[int]): Pretraining input size (H, W),
            used to find the source grid of a checkpoint without
            ``meta['patch_grid']``, for example one passed to
            ``load_state_dict``. Square grids are recognised without it.
            Defaults to (256, 128).
        patch_cfg (dict, optional): Extra arguments of the patch embedding.
            Defaults to ``dict(padding=0)``, as in SAIP pretraining.
        init_cfg (dict, optional): Initialisation config. A ``Pretrained``
            entry (with ``checkpoint``, optional ``prefix`` and
            ``map_location``) is loaded by :meth:`load_pretrained`.
            Defaults to None.
        **kwargs: Other arguments of mmpretrain's ``VisionTransformer``,
            such as ``out_indices`` or ``drop_path_rate``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'deit-tiny',
                 img_size: Union[int, Sequence[int]] = (256, 128),
                 patch_size: int = 16,
                 out_type: str = 'featmap',
                 with_cls_token: bool = True,
                 interpolate_mode: str = TRANSFER_INTERPOLATE_MODE,
                 pretrain_img_size: Sequence[int] = (256, 128),
                 patch_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 **kwargs) -> None:
        pretrained_cfg = self._find_pretrained_cfg(init_cfg)
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_type=out_type,
            with_cls_token=with_cls_token,
            interpolate_mode=interpolate_mode,
            patch_cfg=dict(padding=0) if patch_cfg is None else patch_cfg,
            init_cfg=init_cfg,
            **kwargs)
        self.pretrained_cfg = pretrained_cfg
        self.pretrain_patch_grid = (int(pretrain_img_size[0]) // patch_size,
                                    int(pretrain_img_size[1]) // patch_size)

    @staticmethod
    def _find_pretrained_cfg(
            init_cfg: Optional[Union[dict, List[dict]]]) -> Optional[dict]:
        """Return the ``Pretrained`` entry of ``init_cfg``, if any."""
        if isinstance(init_cfg, dict):
            return dict(init_cfg) if init_cfg.get(
                'type') == 'Pretrained' else None
        if init_cfg is not None and any(
                cfg.get('type') == 'Pretrained' for cfg in init_cfg):
            raise ValueError(
                'SAIPViTBackbone takes a Pretrained init_cfg as a single '
                f'dict, got a list: {init_cfg}. Pass '
                "init_cfg=dict(type='Pretrained', checkpoint=..., "
                "prefix='backbone.').")
        return None

    def init_weights(self) -> None:
        """Initialise randomly, then load the ``Pretrained`` checkpoint.

        mmengine's own ``Pretrained`` loader is bypassed, because it drops
        the checkpoint's ``meta`` (with the source ``patch_grid``) and
        accepts missing keys with only a warning.
        """
        if self.pretrained_cfg is None:
            super().init_weights()
            return
        init_cfg = self.init_cfg
        # Without a Pretrained init_cfg, mmengine initialises the layers and
        # mmpretrain draws a truncated-normal position embedding.
        self.init_cfg = None
        try:
            super().init_weights()
        finally:
            self.init_cfg = init_cfg
        self.load_pretrained(
            self.pretrained_cfg['checkpoint'],
            prefix=self.pretrained_cfg.get('prefix', ''),
            map_location=self.pretrained_cfg.get('map_location', 'cpu'))

    def load_pretrained(self,
                        checkpoint: str,
                        prefix: str = '',
                        map_location: str = 'cpu') -> None:
        """Load an exported backbone, adapted to this backbone's grid.

        Args:
            checkpoint (str): Path or URL of a checkpoint written by
                ``tools/convert_checkpoint.py`` (or any mmpretrain ViT state
                dict, alone or under ``state_dict``).
            prefix (str): Prefix of the backbone keys in the file, removed
                before loading. Defaults to ''.
            map_location (str): Device to load the tensors to.
                Defaults to 'cpu'.

        Raises:
            ValueError: If the file is an unconverted SAIP training
                checkpoint, no key has ``prefix``, or a parameter would be
                missing or a key left over.
        """
        loaded = CheckpointLoader.load_checkpoint(
            checkpoint, map_location=map_location)
        if 'state_dict' in loaded:
            state_dict, meta = loaded['state_dict'], loaded.get('meta', {})
        else:
            state_dict, meta = loaded, {}
        if any(key.startswith(_TRAINING_CHECKPOINT_MARKER)
               for key in state_dict):
            raise ValueError(
                f'{checkpoint} is a SAIP training checkpoint. Export its '
                'teacher backbone first: python tools/convert_checkpoint.py '
                f'{checkpoint} OUTPUT.pth, then load OUTPUT.pth with '
                "prefix='backbone.'.")
        if prefix:
            found = {
                key[len(prefix):]: value
                for key, value in state_dict.items() if key.startswith(prefix)
            }
            if not found:
                first_parts = sorted({key.split('.')[0] for key in state_dict})
                raise ValueError(
                    f'No key of {checkpoint} starts with prefix {prefix!r}. '
                    f'Its keys start with {first_parts}. Set '
                    'init_cfg.prefix to one of these, followed by a dot.')
            state_dict = found

        state_dict, notes = self.adapt_state_dict(
            state_dict, meta.get('patch_grid'), meta.get('with_cls_token'))
        result = self.load_state_dict(state_dict, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f'{checkpoint} (prefix {prefix!r}) does not fit '
                f'{type(self).__name__}: missing keys '
                f'{_summarize(result.missing_keys)}, unexpected keys '
                f'{_summarize(result.unexpected_keys)}. Check that arch, '
                'patch_size and qkv_bias match the pretrained backbone.')
        MMLogger.get_current_instance().info(
            f'{type(self).__name__}: loaded {len(state_dict)} tensors from '
            f'{checkpoint} (prefix {prefix!r}) with 0 missing and 0 '
            f'unexpected keys, {", ".join(notes)}.')

    def adapt_state_dict(
        self,
        state_dict: Dict[str, torch.Tensor],
        source_grid: Optional[Sequence[int]] = None,
        source_has_cls_token: Optional[bool] = None
    ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
        """Fit a backbone state dict to this backbone's grid and tokens.

        Args:
            state_dict (dict[str, Tensor]): Backbone weights with mmpretrain
                ViT names, without prefix.
            source_grid (Sequence[int], optional): Patch grid (H, W) of the
                checkpoint's position embedding. Defaults to None: taken
                from ``pretrain_img_size``, or square.
            source_has_cls_token (bool, optional): Whether the position
                embedding starts with a class-token position. Defaults to
                None: True when the state dict has ``cls_token``.

        Returns:
            tuple: The adapted state dict (a new dict) and notes for the log.

        Raises:
            ValueError: If this backbone needs a class token that the
                checkpoint does not have.
        """
        state_dict = dict(state_dict)
        notes = []
        if source_has_cls_token is None:
            source_has_cls_token = 'cls_token' in state_dict
        if self.with_cls_token and not source_has_cls_token:
            raise ValueError(
                'The checkpoint has no class token (it was exported with '
                '--no-cls-token), but this backbone has with_cls_token=True. '
                'Set with_cls_token=False or export it again with the class '
                'token.')
        if not self.with_cls_token and 'cls_token' in state_dict:
            del state_dict['cls_token']
            notes.append('class token dropped')

        pos_embed = state_dict.get('pos_embed')
        if pos_embed is not None:
            src_extra_tokens = int(source_has_cls_token)
            num_patches = pos_embed.shape[1] - src_extra_tokens
            if source_grid is None:
                source_grid = resolve_patch_grid(num_patches,
                                                 self.pretrain_patch_grid)
            source_grid = (int(source_grid[0]), int(source_grid[1]))
            state_dict['pos_embed'] = adapt_pos_embed(
                pos_embed, source_grid, self.patch_resolution,
                src_extra_tokens, self.num_extra_tokens,
                self.interpolate_mode)
            target_grid = tuple(self.patch_resolution)
            if source_grid == target_grid:
                notes.append(f'pos_embed kept on the '
                             f'{target_grid[0]}x{target_grid[1]} grid')
            else:
                notes.append(
                    f'pos_embed resized ({self.interpolate_mode}) from the '
                    f'{source_grid[0]}x{source_grid[1]} grid to '
                    f'{target_grid[0]}x{target_grid[1]}')
        return state_dict, notes

    def _prepare_pos_embed(self, state_dict: dict, prefix: str, *args,
                           **kwargs) -> None:
        """Adapt ``pos_embed`` in ``load_state_dict`` calls of other code.

        Used when a state dict reaches the backbone without going through
        :meth:`load_pretrained`, for example a full model checkpoint given
        to ``load_from``. The source grid comes from ``pretrain_img_size``
        or is square.
        """
        name = prefix + 'pos_embed'
        cls_name = prefix + 'cls_token'
        if name not in state_dict:
            return
        has_cls_token = cls_name in state_dict
        if (state_dict[name].shape == self.pos_embed.shape
                and has_cls_token == self.with_cls_token):
            return
        local = {'pos_embed': state_dict[name]}
        if has_cls_token:
            local['cls_token'] = state_dict[cls_name]
        adapted, notes = self.adapt_state_dict(local, None, has_cls_token)
        state_dict[name] = adapted['pos_embed']
        if has_cls_token and not self.with_cls_token:
            del state_dict[cls_name]
        MMLogger.get_current_instance().info(
            f'{type(self).__name__} ({name}): {", ".join(notes)}.')


def _summarize(keys: List[str], limit: int = 8) -> str:
    """Format a key list for an error message, at most ``limit`` keys."""
    if len(keys) <= limit:
        return str(keys)
    return f'{keys[:limit]} and {len(keys) - limit} more'
