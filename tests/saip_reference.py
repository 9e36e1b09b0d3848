"""Straightforward SAIP computations that the optimised code must match.

Every transformer block here runs mmpretrain's own
``TransformerEncoderLayer.forward`` over all tokens, every view is encoded
on its own, the CSR decoder predicts every patch, and the CSM projector and
loss normalise the prototypes and sum the cross-entropy pairs in the plain
way. The model code skips work whose result is never read and uses leaner
kernels for the same maths; these functions do not.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from mmsaip.models.utils import anchor_grid_mask


def css_query_kernel_reference(head, query_tokens: torch.Tensor,
                               canvas_tokens: torch.Tensor) -> torch.Tensor:
    """CSSHead.query_kernel with full blocks; returns the (B, D) kernel."""
    query = head.query_embed(query_tokens)
    for layer in head.query_layers:
        query = layer(query)
    query = query[:, :1]
    memory = head.canvas_norm(head.canvas_embed(canvas_tokens))
    attended, _ = head.cross_attn(
        head.cross_norm(query), memory, memory, need_weights=False)
    query = query + attended
    query = query + head.cross_ffn(head.cross_ffn_norm(query))
    return head.kernel_proj(head.kernel_norm(query[:, 0]))


def css_logits_reference(head, query_tokens: torch.Tensor,
                         canvas_tokens: torch.Tensor,
                         grid: Sequence[int]) -> torch.Tensor:
    """Logits (B, H * W) of one CSS search."""
    kernel = css_query_kernel_reference(head, query_tokens, canvas_tokens)
    batch, _, channels = canvas_tokens.shape
    feature_map = canvas_tokens.transpose(1, 2).reshape(
        batch, channels, *grid)
    features = head.mask_convs(feature_map).flatten(2)  # (B, D, H * W)
    return (kernel[:, :, None] * features).sum(dim=1)


def csm_projector_reference(neck, cls_token: torch.Tensor) -> torch.Tensor:
    """CSMProjector logits (N, K) with an explicitly normalised weight."""
    bottleneck = F.normalize(neck.mlp(cls_token), dim=-1)
    return F.linear(bottleneck, F.normalize(neck.last_layer.weight, dim=-1))


def csm_loss_reference(head, student_logits: torch.Tensor,
                       teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the (teacher view, other student view)
    pairs, one pair at a time, at the post-warm-up temperature."""
    targets = F.softmax(
        (teacher_logits - head.center) / head.teacher_temp, dim=-1)
    log_probs = F.log_softmax(student_logits / head.student_temp, dim=-1)
    pair_losses = []
    for teacher_view in range(targets.shape[0]):
        for student_view in range(log_probs.shape[0]):
            if student_view == teacher_view:
                continue
            cross_entropy = -(targets[teacher_view] *
                              log_probs[student_view]).sum(dim=-1)
            pair_losses.append(cross_entropy.mean())
    return head.loss_weight * torch.stack(pair_losses).mean()


def csr_predict_reference(head, masked_tokens: torch.Tensor,
                          reference_cls: torch.Tensor,
                          visible_ids: torch.Tensor, grid: Sequence[int],
                          visible_padding=None) -> torch.Tensor:
    """Pixels (B, H * W, P * P * C) of every patch of the masked view."""
    batch = masked_tokens.shape[0]
    tokens = head.decoder_embed(masked_tokens)
    cls_token, visible = tokens[:, :1], tokens[:, 1:]
    if visible_padding is not None:
        visible = torch.where(visible_padding[..., None], head.mask_token,
                              visible)
    slots = head.mask_token.expand(batch, grid[0] * grid[1], -1).clone()
    index = visible_ids[..., None].expand(-1, -1, slots.shape[-1])
    slots = slots.scatter(1, index, visible)
    reference = head.decoder_embed(reference_cls)[:, None]
    cls_pos, reference_pos, slot_pos = head.decoder_positions(tuple(grid))
    sequence = torch.cat((cls_token + cls_pos, reference + reference_pos,
                          slots + slot_pos),
                         dim=1)
    for layer in head.decoder_layers:
        sequence = layer(sequence)
    return head.decoder_pred(head.decoder_norm(sequence[:, 2:]))


def csr_loss_reference(head, pred: torch.Tensor, images: torch.Tensor,
                       hidden: torch.Tensor,
                       grid: Sequence[int]) -> torch.Tensor:
    """Mean over hidden patches of the per-patch MSE to normalised
    pixels."""
    target = head.patchify(images, tuple(grid))
    if head.norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.e-6)**.5
    per_patch = ((pred - target)**2).mean(dim=-1)
    return head.loss_weight * per_patch[hidden].mean()


def saip_losses_reference(model, inputs: Dict[str, torch.Tensor],
                          factors: Sequence[float],
                          mask_seed: int) -> Dict[str, torch.Tensor]:
    """The five SAIP loss terms for fixed rescale factors.

    Args:
        model (SAIP): The model whose modules are used.
        inputs (dict): Preprocessed inputs, as ``SAIP.loss`` takes them.
        factors (Sequence[float]): Factors of the ROI and region views.
        mask_seed (int): Seed of torch's global RNG before the anchor mask
            is drawn.

    Returns:
        dict[str, Tensor]: ``loss_csm``, ``loss_csm_attn``, ``loss_csr``,
        ``loss_css_inst`` and ``loss_css_roi``.
    """
    backbone = model.backbone
    global_views = inputs['global_views']
    batch, num_global = global_views.shape[:2]
    global_flat = global_views.transpose(0, 1).flatten(0, 1)
    local_flat = inputs['local_views'].transpose(0, 1).flatten(0, 1)
    num_local = inputs['local_views'].shape[1]
    roi_view = model.rescale(inputs['roi_view'], factors[0])
    region_view = model.rescale(inputs['region_view'], factors[1])
    csr_view = model.rescale(global_views[:, 1], model.csr_scale)
    csr_grid = model.patch_grid(csr_view)
    torch.manual_seed(mask_seed)
    anchor_mask = anchor_grid_mask(batch, backbone.patch_resolution,
                                   csr_grid, model.mask_ratio,
                                   model.csr_visible_count)
    canvas_grid = model.patch_grid(inputs['canvas'])
    inst_target = model.masks_to_grid(inputs['inst_mask'], canvas_grid)
    roi_target = model.masks_to_grid(inputs['roi_mask'], canvas_grid)

    with torch.no_grad():
        teacher_backbone = model.teacher.module['backbone']
        teacher_global = teacher_backbone.forward_views(
            global_flat, return_attn=True)
        teacher_logits = csm_projector_reference(
            model.teacher.module['neck'],
            teacher_global.final_tokens[:, 0]).view(num_global, batch, -1)
        canvas_tokens = teacher_backbone.forward_views(
            inputs['canvas']).tap_tokens[:, 1:]

    student_global = backbone.forward_views(global_flat, return_attn=True)
    student_local = backbone.forward_views(local_flat)
    student_roi = backbone.forward_views(roi_view)
    student_region = backbone.forward_views(region_view)
    student_masked = backbone.forward_views(
        csr_view,
        visible_ids=anchor_mask.visible_ids,
        visible_padding=anchor_mask.visible_padding)

    student_cls = torch.cat([
        student_global.final_tokens[:, 0], student_local.final_tokens[:, 0],
        student_roi.final_tokens[:, 0], student_region.final_tokens[:, 0]
    ])
    student_logits = csm_projector_reference(model.neck, student_cls).view(
        num_global + num_local + 2, batch, -1)
    losses = dict(
        loss_csm=csm_loss_reference(model.csm_head, student_logits,
                                    teacher_logits),
        loss_csm_attn=model.attn_distill_loss([student_global.attn_maps],
                                              [teacher_global.attn_maps]))

    head = model.csr_head
    pred = csr_predict_reference(head, student_masked.tap_tokens,
                                 student_global.tap_tokens[:batch, 0],
                                 anchor_mask.visible_ids, csr_grid,
                                 anchor_mask.visible_padding)
    losses['loss_csr'] = csr_loss_reference(head, pred, csr_view,
                                            anchor_mask.hidden, csr_grid)

    head = model.css_head
    for name, query_tokens, target, weight in (
        ('inst', student_global.tap_tokens[:batch], inst_target,
         head.loss_weight_inst),
        ('roi', student_roi.tap_tokens, roi_target, head.loss_weight_roi),
    ):
        logits = css_logits_reference(head, query_tokens, canvas_tokens,
                                      canvas_grid)
        losses[f'loss_css_{name}'] = weight * \
            F.binary_cross_entropy_with_logits(logits, target.float())
    return losses
