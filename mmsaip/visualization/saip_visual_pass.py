"""Run a SAIP model on one batch and keep the tensors the panels draw."""
from typing import Dict, NamedTuple, Tuple

import torch
from mmengine.model import is_model_wrapper

BRANCHES = ('teacher', 'student')


class SAIPVisualOutputs(NamedTuple):
    """Views, masks and head outputs of one SAIP batch, on the CPU.

    Images are normalised as the model received them, and
    :func:`denormalize` with ``pixel_mean`` and ``pixel_std`` turns them
    back into pixels. Masks are bool.

    Attributes:
        global_views (Tensor): (B, V_g, C, H_g, W_g).
        local_views (Tensor): (B, V_l, C, H_l, W_l).
        roi_view (Tensor): The ROI view after rescaling, (B, C, h, w).
        region_view (Tensor): The region view (global view 0 shrunk to the
            local size) after rescaling, (B, C, h, w).
        roi_factor (float): Rescale factor of ``roi_view``.
        region_factor (float): Rescale factor of ``region_view``.
        canvas (Tensor): (B, C, H_c, W_c).
        inst_mask (Tensor): Where the region view was pasted, (B, H_c, W_c).
        roi_mask (Tensor): Where the ROI view was pasted, (B, H_c, W_c).
        canvas_grid (tuple[int, int]): Canvas patch grid (H, W).
        inst_target (Tensor): ``inst_mask`` on ``canvas_grid``, (B, H * W),
            the CSS instance target.
        roi_target (Tensor): ``roi_mask`` on ``canvas_grid``, (B, H * W).
        inst_logits (Tensor): CSS instance search logits, (B, H * W) on
            ``canvas_grid``.
        roi_logits (Tensor): CSS ROI search logits, (B, H * W).
        csr_view (Tensor): The CSR view (global view 1 upscaled by
            ``csr_scale``) before masking, (B, C, H_r, W_r).
        csr_grid (tuple[int, int]): CSR patch grid (H, W).
        csr_hidden (Tensor): (B, H * W), True for the patches counted in the
            CSR loss.
        csr_encoder_visible (Tensor): (B, H * W), True for the patches given
            to the encoder. It equals ``~csr_hidden`` unless the model uses
            ``csr_visible_count='legacy_fixed'``.
        csr_pred (Tensor): CSR decoder output, (B, H * W, P * P * C), in
            per-patch normalised units when ``norm_pix`` is True.
        csr_target_patches (Tensor): ``csr_view`` cut by
            ``CSRHead.patchify`` before any per-patch normalisation,
            (B, H * W, P * P * C).
        cls_attention (Tensor): Last-block attention of the class token to
            every patch token of each global view, (B, V_g, heads, H, W) on
            ``attn_grid``.
        attn_grid (tuple[int, int]): Patch grid (H, W) of the global views.
        branch (str): Backbone whose attention is in ``cls_attention``,
            'teacher' or 'student'.
        patch_size (int): Patch size P of the CSR head.
        norm_pix (bool): Whether the CSR target was normalised per patch.
        pixel_mean (Tensor): Per-channel mean of the data preprocessor (C, ).
        pixel_std (Tensor): Per-channel std of the data preprocessor (C, ).
    """
    global_views: torch.Tensor
    local_views: torch.Tensor
    roi_view: torch.Tensor
    region_view: torch.Tensor
    roi_factor: float
    region_factor: float
    canvas: torch.Tensor
    inst_mask: torch.Tensor
    roi_mask: torch.Tensor
    canvas_grid: Tuple[int, int]
    inst_target: torch.Tensor
    roi_target: torch.Tensor
    inst_logits: torch.Tensor
    roi_logits: torch.Tensor
    csr_view: torch.Tensor
    csr_grid: Tuple[int, int]
    csr_hidden: torch.Tensor
    csr_encoder_visible: torch.Tensor
    csr_pred: torch.Tensor
    csr_target_patches: torch.Tensor
    cls_attention: torch.Tensor
    attn_grid: Tuple[int, int]
    branch: str
    patch_size: int
    norm_pix: bool
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return self.global_views.shape[0]


@torch.no_grad()
def run_saip_visual_pass(model: torch.nn.Module,
                         inputs: Dict[str, torch.Tensor],
                         branch: str = 'teacher') -> SAIPVisualOutputs:
    """Run the views of a batch through a SAIP model without a loss.

    The views, masks and random draws (the rescale factors and the CSR
    mask, from torch's global generator) come from ``SAIP.prepare_views``,
    as in ``SAIP.loss``. The backbones and heads then run on them without a
    loss, and the intermediate tensors are kept. As in training, CSR and
    CSS read the student's tokens and the teacher's canvas tokens.

    Args:
        model (nn.Module): A ``SAIP`` model, or a wrapper around one.
        inputs (dict[str, Tensor]): Batch from ``SAIPDataPreprocessor``,
            with the keys that ``SAIP.loss`` reads.
        branch (str): Backbone whose last-block attention is returned:
            'teacher' (the EMA branch that is exported) or 'student'.
            Defaults to 'teacher'.

    Returns:
        SAIPVisualOutputs: The tensors, moved to the CPU.
    """
    if branch not in BRANCHES:
        raise ValueError(f'branch must be one of {BRANCHES}, got {branch!r}')
    if is_model_wrapper(model):
        model = model.module

    # The same views, masks and random draws as SAIP.loss.
    views = model.prepare_views(inputs)
    global_views = inputs['global_views']
    anchor_mask = views.anchor_mask

    # Teacher canvas tokens, as CSS reads them in training.
    teacher_backbone = model.teacher.module['backbone']
    canvas_tokens = teacher_backbone.forward_views(
        views.canvas, stop_at_tap=True).tap_tokens[:, 1:]  # (B, L, C)

    # Student tap tokens of global view 0, the ROI view and the masked view.
    first_global = model.backbone.forward_views(
        global_views[:, 0], stop_at_tap=True)
    student_roi = model.backbone.forward_views(
        views.roi_view, stop_at_tap=True)
    student_masked = model.backbone.forward_views(
        views.csr_view,
        stop_at_tap=True,
        visible_ids=anchor_mask.visible_ids,
        visible_padding=anchor_mask.visible_padding)

    # CSR prediction of every patch of the upscaled view.
    csr_pred = model.csr_head(student_masked.tap_tokens,
                              first_global.tap_tokens[:, 0],
                              anchor_mask.visible_ids, views.csr_grid,
                              anchor_mask.visible_padding)
    encoder_visible = _visible_to_grid(anchor_mask.visible_ids,
                                       anchor_mask.visible_padding,
                                       anchor_mask.hidden.shape[1])

    # CSS search logits for the instance and the ROI.
    mask_features = model.css_head.mask_features(canvas_tokens,
                                                 views.canvas_grid)
    inst_logits = model.css_head(first_global.tap_tokens, canvas_tokens,
                                 mask_features)
    roi_logits = model.css_head(student_roi.tap_tokens, canvas_tokens,
                                mask_features)

    # Class-token attention of the chosen branch on both global views.
    attn_backbone = teacher_backbone if branch == 'teacher' else \
        model.backbone
    attn_out = attn_backbone.forward_views(
        views.global_flat, return_attn=True)
    attn_grid = tuple(attn_out.patch_resolution)
    # Row 0 of the query-key map, without the class-token column:
    # (V * B, heads, L) -> (V, B, heads, H, W) -> (B, V, heads, H, W).
    cls_attention = attn_out.attn_maps.query_key[:, :, 0, 1:]
    cls_attention = cls_attention.reshape(views.num_global,
                                          views.batch_size, -1,
                                          *attn_grid).transpose(0, 1)

    preprocessor = model.data_preprocessor
    return SAIPVisualOutputs(
        global_views=global_views.cpu(),
        local_views=inputs['local_views'].cpu(),
        roi_view=views.roi_view.cpu(),
        region_view=views.region_view.cpu(),
        roi_factor=float(views.roi_factor),
        region_factor=float(views.region_factor),
        canvas=views.canvas.cpu(),
        inst_mask=inputs['inst_mask'].cpu(),
        roi_mask=inputs['roi_mask'].cpu(),
        canvas_grid=tuple(views.canvas_grid),
        inst_target=views.inst_target.cpu(),
        roi_target=views.roi_target.cpu(),
        inst_logits=inst_logits.float().cpu(),
        roi_logits=roi_logits.float().cpu(),
        csr_view=views.csr_view.cpu(),
        csr_grid=tuple(views.csr_grid),
        csr_hidden=anchor_mask.hidden.cpu(),
        csr_encoder_visible=encoder_visible.cpu(),
        csr_pred=csr_pred.float().cpu(),
        csr_target_patches=model.csr_head.patchify(
            views.csr_view, views.csr_grid).float().cpu(),
        cls_attention=cls_attention.float().cpu(),
        attn_grid=attn_grid,
        branch=branch,
        patch_size=int(model.csr_head.patch_size),
        norm_pix=bool(model.csr_head.norm_pix),
        pixel_mean=preprocessor.mean.detach().flatten().cpu(),
        pixel_std=preprocessor.std.detach().flatten().cpu())


def _visible_to_grid(visible_ids: torch.Tensor, padding,
                     num_patches: int) -> torch.Tensor:
    """Turn (B, N) encoder token indices into a (B, num_patches) bool map,
    ignoring the entries that ``padding`` marks."""
    visible = torch.zeros(
        visible_ids.shape[0],
        num_patches,
        dtype=torch.bool,
        device=visible_ids.device)
    used = torch.ones_like(visible_ids, dtype=torch.bool)
    if padding is not None:
        used = ~padding
    visible.scatter_(1, visible_ids, used)
    return visible
