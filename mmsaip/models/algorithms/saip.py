"""SAIP: scale-aware image pretraining."""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..backbones.saip_vit import SAIPViTOutput
from ..utils.anchor_mask import (VISIBLE_COUNT_MODES, AnchorMask,
                                 anchor_grid_mask)
from ..utils.cosine_momentum_ema import CosineMomentumEMA

RESIZE_MODES = ('nearest', 'bilinear')
# Keys of the SAIPDataPreprocessor output that SAIP reads.
SAIP_INPUT_KEYS = ('global_views', 'local_views', 'roi_view', 'region_view',
                   'canvas', 'inst_mask', 'roi_mask')


class SAIPViews(NamedTuple):
    """Views, grids, mask and targets of one SAIP step.

    Attributes:
        batch_size (int): Images in the batch, B.
        num_global (int): Global views per image, V_g.
        num_local (int): Local views per image, V_l.
        global_flat (Tensor): Global views, view-major, (V_g * B, C, H, W).
        local_flat (Tensor): Local views, view-major, (V_l * B, C, h, w).
        roi_factor (float): Rescale factor drawn for the ROI view.
        region_factor (float): Rescale factor drawn for the region view.
        roi_view (Tensor): Rescaled ROI views, (B, C, H_r, W_r).
        region_view (Tensor): Rescaled region views, (B, C, H_s, W_s).
        csr_view (Tensor): Global view 1 upscaled by ``csr_scale``, before
            masking, (B, C, H_m, W_m).
        csr_grid (tuple[int, int]): Patch grid (H, W) of ``csr_view``.
        anchor_mask (AnchorMask): The CSR mask on ``csr_grid``.
        canvas (Tensor): Multi-person canvases, (B, C, H_c, W_c).
        canvas_grid (tuple[int, int]): Patch grid (H, W) of ``canvas``.
        inst_target (Tensor): Bool (B, H * W) on ``canvas_grid``, True where
            the instance was pasted.
        roi_target (Tensor): Bool (B, H * W), True where the region was
            pasted.
    """
    batch_size: int
    num_global: int
    num_local: int
    global_flat: torch.Tensor
    local_flat: torch.Tensor
    roi_factor: float
    region_factor: float
    roi_view: torch.Tensor
    region_view: torch.Tensor
    csr_view: torch.Tensor
    csr_grid: Tuple[int, int]
    anchor_mask: AnchorMask
    canvas: torch.Tensor
    canvas_grid: Tuple[int, int]
    inst_target: torch.Tensor
    roi_target: torch.Tensor


@MODELS.register_module()
class SAIP(BaseSelfSupervisor):
    """Scale-aware image pretraining with a student ViT and an EMA teacher.

    Paper: `Scale-Aware Pre-Training for Human-Centric Visual Perception:
    Enabling Lightweight and Generalizable Models
    <https://arxiv.org/abs/2503.08201>`_.

    Three objectives train the student backbone:

    - cross-scale matching (CSM): the DINO loss between the teacher's global
      views and every other student view, including two views rescaled by a
      random factor, plus distillation of the teacher's last-block
      attention maps on the global views;
    - cross-scale reconstruction (CSR): masked image modelling on the second
      global view upscaled by ``csr_scale``, masked on the base-scale
      anchor grid, with the first global view's class token as context;
    - cross-scale search (CSS): locate the pasted instance (the first global
      view shrunk to a local view's size) and the pasted region (a rescaled
      local view) in a synthetic multi-person canvas encoded by the teacher.

    The teacher is an EMA of the student backbone and CSM projector (the
    modules it runs). It is updated by :class:`SAIPTeacherHook` after each
    applied optimizer step, with a momentum that follows a cosine over the
    training iterations.

    Args:
        backbone (dict): Config of the :class:`SAIPViT` student.
        neck (dict): Config of the :class:`CSMProjector`.
        csm_head (dict): Config of the :class:`CSMHead`.
        csr_head (dict): Config of the :class:`CSRHead`.
        css_head (dict): Config of the :class:`CSSHead`.
        attn_distill_loss (dict): Config of the attention distillation
            loss. Defaults to ``dict(type='AttentionDistillLoss')``.
        teacher (dict): Arguments of :class:`CosineMomentumEMA`
            (``momentum``, ``end_momentum``, ``momentum_indexing``).
            Defaults to ``dict(momentum=0.004, end_momentum=0.)``.
        rescale_factors (Sequence[float]): Factors drawn for the rescaled
            region and ROI views, one factor per view and iteration, shared
            by the batch. Defaults to (0.75, 0.875, 1.125, 1.25).
        csr_scale (float): Upscaling of the masked CSR view.
            Defaults to 1.25.
        mask_ratio (float): Fraction of anchor cells hidden in CSR.
            Defaults to 0.75.
        csr_visible_count (str): 'from_mask' or 'legacy_fixed', see
            :func:`anchor_grid_mask`. Defaults to 'from_mask'.
        resize_mode (str): Interpolation of the rescaled views, 'nearest'
            as in the reference code, or 'bilinear'. Defaults to 'nearest'.
        data_preprocessor (dict, optional): Defaults to
            ``dict(type='SAIPDataPreprocessor')``.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 csm_head: dict,
                 csr_head: dict,
                 css_head: dict,
                 attn_distill_loss: dict = dict(type='AttentionDistillLoss'),
                 teacher: dict = dict(momentum=0.004, end_momentum=0.),
                 rescale_factors: Sequence[float] = (0.75, 0.875, 1.125,
                                                     1.25),
                 csr_scale: float = 1.25,
                 mask_ratio: float = 0.75,
                 csr_visible_count: str = 'from_mask',
                 resize_mode: str = 'nearest',
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if csr_visible_count not in VISIBLE_COUNT_MODES:
            raise ValueError('csr_visible_count must be one of '
                             f'{VISIBLE_COUNT_MODES}, got '
                             f'{csr_visible_count!r}')
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f'resize_mode must be one of {RESIZE_MODES}, '
                             f'got {resize_mode!r}')
        if not rescale_factors or min(rescale_factors) <= 0:
            raise ValueError('rescale_factors must be positive numbers, got '
                             f'{rescale_factors}')
        if csr_scale <= 0:
            raise ValueError(f'csr_scale must be > 0, got {csr_scale}')
        if data_preprocessor is None:
            data_preprocessor = dict(type='SAIPDataPreprocessor')
        super().__init__(
            backbone=backbone,
            neck=neck,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.csm_head = MODELS.build(csm_head)
        self.csr_head = MODELS.build(csr_head)
        self.css_head = MODELS.build(css_head)
        self.attn_distill_loss = MODELS.build(attn_distill_loss)
        self.rescale_factors = tuple(float(f) for f in rescale_factors)
        self.csr_scale = float(csr_scale)
        self.mask_ratio = mask_ratio
        self.csr_visible_count = csr_visible_count
        self.resize_mode = resize_mode

        # The teacher holds only what it runs: backbone and CSM projector.
        self.teacher = CosineMomentumEMA(
            nn.ModuleDict(dict(backbone=self.backbone, neck=self.neck)),
            **teacher)
        self._cur_iter = 0
        self._max_iters = 1
        self._iters_per_epoch = 1

    # Training progress and teacher update -------------------------------

    def init_weights(self) -> None:
        """Initialise the student, then start the teacher as its copy."""
        super().init_weights()
        self.teacher.module.load_state_dict(self._student_modules()
                                            .state_dict())

    def _student_modules(self) -> nn.ModuleDict:
        return nn.ModuleDict(dict(backbone=self.backbone, neck=self.neck))

    def set_train_progress(self, cur_iter: int, max_iters: int,
                           iters_per_epoch: int) -> None:
        """Set the training position used by the schedules.

        Called by :class:`SAIPTeacherHook` before every iteration. The
        teacher momentum and the CSM teacher temperature are computed from
        it, so a resumed run continues both schedules where they stopped.

        Args:
            cur_iter (int): 0-based iteration about to run.
            max_iters (int): Total training iterations.
            iters_per_epoch (int): Iterations per epoch.
        """
        self._cur_iter = int(cur_iter)
        self._max_iters = max(int(max_iters), 1)
        self._iters_per_epoch = max(int(iters_per_epoch), 1)

    @property
    def teacher_momentum(self) -> float:
        """Student weight of the next teacher update (mmengine
        convention: DINO's teacher momentum is 1 minus this)."""
        return self.teacher.momentum_at(self._cur_iter, self._max_iters,
                                        self._iters_per_epoch)

    @torch.no_grad()
    def update_teacher(self) -> float:
        """Average the student into the teacher; return the momentum."""
        momentum = self.teacher_momentum
        self.teacher.update_parameters(self._student_modules(), momentum)
        return momentum

    # Forward --------------------------------------------------------------

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor]:
        """Run the student backbone as a plain mmpretrain ViT.

        Args:
            inputs (Tensor): Images of shape (B, C, H, W).

        Returns:
            tuple[Tensor]: The backbone's outputs.
        """
        return self.backbone(inputs)

    def rescale(self, images: torch.Tensor, factor: float) -> torch.Tensor:
        """Resize (B, C, H, W) images by ``factor`` with ``resize_mode``."""
        if factor == 1.:
            return images
        if self.resize_mode == 'nearest':
            return F.interpolate(images, scale_factor=factor, mode='nearest')
        return F.interpolate(
            images, scale_factor=factor, mode='bilinear',
            align_corners=False)

    def draw_rescale_factor(self) -> float:
        """Draw one factor from ``rescale_factors`` (torch's global RNG)."""
        index = int(torch.randint(len(self.rescale_factors), (1, )))
        return self.rescale_factors[index]

    def patch_grid(self, images: torch.Tensor) -> Tuple[int, int]:
        """Return the patch grid (H, W) of (B, C, H, W) images."""
        patch = self.backbone.patch_size
        return images.shape[-2] // patch, images.shape[-1] // patch

    def encode_rescaled_views(
            self, roi_view: torch.Tensor, region_view: torch.Tensor
    ) -> Tuple[SAIPViTOutput, SAIPViTOutput]:
        """Encode the rescaled ROI and region views with the student.

        When both views drew the same factor, they have the same size and go
        through the backbone as one batch. The backbone treats every sample
        independently, so the tokens equal those of two separate passes.

        Args:
            roi_view (Tensor): Shape (B, C, H_r, W_r).
            region_view (Tensor): Shape (B, C, H_s, W_s).

        Returns:
            tuple[SAIPViTOutput, SAIPViTOutput]: The ROI and region outputs.
        """
        if roi_view.shape != region_view.shape:
            return (self.backbone.forward_views(roi_view),
                    self.backbone.forward_views(region_view))
        batch = roi_view.shape[0]
        # (2 * B, C, H, W): ROI views first, then region views.
        joint = self.backbone.forward_views(
            torch.cat((roi_view, region_view)))
        roi = SAIPViTOutput(joint.final_tokens[:batch],
                            joint.tap_tokens[:batch], None,
                            joint.patch_resolution)
        region = SAIPViTOutput(joint.final_tokens[batch:],
                               joint.tap_tokens[batch:], None,
                               joint.patch_resolution)
        return roi, region

    def masks_to_grid(self, masks: torch.Tensor,
                      grid: Tuple[int, int]) -> torch.Tensor:
        """Resize bool (B, H_img, W_img) masks to (B, H * W) on a grid."""
        resized = F.interpolate(
            masks[:, None].float(), size=grid, mode='nearest')
        return resized.flatten(1).bool()

    def prepare_views(self, inputs: Dict[str, torch.Tensor]) -> SAIPViews:
        """Draw this step's random choices and build every view and target.

        Draws the ROI and region rescale factors, then the CSR anchor mask,
        from torch's global generator, in that order. :meth:`loss` and the
        visualisation pass both start here, so they see the same draws for
        the same generator state.

        Args:
            inputs (dict[str, Tensor]): From :class:`SAIPDataPreprocessor`,
                see :meth:`loss`.

        Returns:
            SAIPViews: The views, grids, mask and targets.

        Raises:
            KeyError: If ``inputs`` lacks one of the keys in
                ``SAIP_INPUT_KEYS``.
        """
        missing = [key for key in SAIP_INPUT_KEYS if key not in inputs]
        if missing:
            raise KeyError(f'SAIP inputs lack {missing} (found '
                           f'{sorted(inputs)}). Pass the output of '
                           'SAIPDataPreprocessor for a batch packed by '
                           'PackSAIPInputs.')
        global_views = inputs['global_views']
        batch, num_global = global_views.shape[:2]
        roi_factor = self.draw_rescale_factor()
        region_factor = self.draw_rescale_factor()
        # The second global view, upscaled, is masked and reconstructed.
        csr_view = self.rescale(global_views[:, 1], self.csr_scale)
        csr_grid = self.patch_grid(csr_view)
        anchor_mask = anchor_grid_mask(
            batch,
            self.backbone.patch_resolution,
            csr_grid,
            mask_ratio=self.mask_ratio,
            visible_count=self.csr_visible_count,
            device=csr_view.device)
        canvas = inputs['canvas']
        canvas_grid = self.patch_grid(canvas)
        return SAIPViews(
            batch_size=batch,
            num_global=num_global,
            num_local=inputs['local_views'].shape[1],
            # (B, V, C, H, W) -> (V * B, C, H, W), view-major.
            global_flat=global_views.transpose(0, 1).flatten(0, 1),
            local_flat=inputs['local_views'].transpose(0, 1).flatten(0, 1),
            roi_factor=roi_factor,
            region_factor=region_factor,
            roi_view=self.rescale(inputs['roi_view'], roi_factor),
            region_view=self.rescale(inputs['region_view'], region_factor),
            csr_view=csr_view,
            csr_grid=csr_grid,
            anchor_mask=anchor_mask,
            canvas=canvas,
            canvas_grid=canvas_grid,
            inst_target=self.masks_to_grid(inputs['inst_mask'], canvas_grid),
            roi_target=self.masks_to_grid(inputs['roi_mask'], canvas_grid))

    def loss(self, inputs: Dict[str, torch.Tensor],
             data_samples: Optional[List[DataSample]] = None
             ) -> Dict[str, torch.Tensor]:
        """Compute the five SAIP loss terms and the diagnostics.

        Args:
            inputs (dict[str, Tensor]): From :class:`SAIPDataPreprocessor`:
                ``global_views`` (B, 2, C, H_g, W_g), ``local_views``
                (B, V_l, C, H_l, W_l), ``roi_view`` and ``region_view``
                (B, C, H_l, W_l), ``canvas`` (B, C, H_c, W_c), and the bool
                masks ``inst_mask`` and ``roi_mask`` (B, H_c, W_c).
            data_samples (list[DataSample], optional): Unused.

        Returns:
            dict[str, Tensor]: ``loss_csm``, ``loss_csm_attn``,
            ``loss_csr``, ``loss_css_inst``, ``loss_css_roi`` (each already
            weighted) and detached diagnostics without "loss" in their
            names: ``ema_momentum``, ``csm_teacher_temp``,
            ``csm_teacher_entropy``, ``css_inst_iou``, ``css_roi_iou``.
        """
        views = self.prepare_views(inputs)
        batch, num_global = views.batch_size, views.num_global
        global_flat = views.global_flat
        anchor_mask = views.anchor_mask
        epoch = self._cur_iter / self._iters_per_epoch

        # Teacher: global views for CSM, canvas tokens for CSS.
        with torch.no_grad():
            teacher_backbone = self.teacher.module['backbone']
            teacher_global = teacher_backbone.forward_views(
                global_flat, return_attn=True)
            teacher_logits = self.teacher.module['neck'](
                teacher_global.final_tokens[:, 0]).view(num_global, batch, -1)
            teacher_canvas = teacher_backbone.forward_views(
                views.canvas, stop_at_tap=True)
            canvas_tokens = teacher_canvas.tap_tokens[:, 1:]  # (B, L, C)

        # Student: all views but the canvas.
        student_global = self.backbone.forward_views(
            global_flat, return_attn=True)
        student_local = self.backbone.forward_views(views.local_flat)
        student_roi, student_region = self.encode_rescaled_views(
            views.roi_view, views.region_view)
        student_masked = self.backbone.forward_views(
            views.csr_view,
            stop_at_tap=True,
            visible_ids=anchor_mask.visible_ids,
            visible_padding=anchor_mask.visible_padding)

        # CSM: every student view against the teacher's global views.
        student_cls = torch.cat([
            student_global.final_tokens[:, 0],
            student_local.final_tokens[:, 0],
            student_roi.final_tokens[:, 0],
            student_region.final_tokens[:, 0],
        ])  # ((V_g + V_l + 2) * B, C), view-major
        student_logits = self.neck(student_cls).view(
            num_global + views.num_local + 2, batch, -1)
        losses = self.csm_head.loss(
            student_logits, teacher_logits, epoch=epoch)
        losses['loss_csm_attn'] = self.attn_distill_loss(
            [student_global.attn_maps], [teacher_global.attn_maps])

        # CSR: reconstruct the hidden patches of the upscaled view; only
        # they are predicted, since only they count in the loss.
        reference_cls = student_global.tap_tokens[:batch, 0]
        pred_ids = self.csr_head.hidden_patch_ids(anchor_mask.hidden)
        pred = self.csr_head(student_masked.tap_tokens, reference_cls,
                             anchor_mask.visible_ids, views.csr_grid,
                             anchor_mask.visible_padding, pred_ids)
        losses.update(
            self.csr_head.loss(pred, views.csr_view, anchor_mask.hidden,
                               views.csr_grid, pred_ids))

        # CSS: search the instance and the region in the teacher's canvas.
        mask_features = self.css_head.mask_features(canvas_tokens,
                                                    views.canvas_grid)
        inst_logits = self.css_head(student_global.tap_tokens[:batch],
                                    canvas_tokens, mask_features)
        roi_logits = self.css_head(student_roi.tap_tokens, canvas_tokens,
                                   mask_features)
        losses.update(
            self.css_head.loss(inst_logits, roi_logits,
                               views.inst_target, views.roi_target))

        # torch.full fills on the device; torch.tensor would copy the value
        # from the host at every step.
        losses['ema_momentum'] = torch.full((),
                                            self.teacher_momentum,
                                            device=views.canvas.device)
        return losses
