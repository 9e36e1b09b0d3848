"""Cross-scale matching (CSM) head: the DINO objective across scales."""
import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CSMHead(BaseModule):
    """Cross-entropy between centred teacher and student prototype scores.

    The teacher scores of its views (the global views) are centred by a
    running mean, sharpened with temperature tau_t and turned into targets
    for the student scores of every *other* view, softened with tau_s. With
    2 teacher views and V student views whose first 2 are the same global
    views, there are 2 * V - 2 pairs, averaged with equal weight.

    The centre is an EMA of the batch mean of the teacher scores, averaged
    over all processes. It is a buffer, so it is saved in checkpoints.

    Args:
        out_channels (int): Number of prototypes K. Defaults to 65536.
        student_temp (float): Student temperature tau_s. Defaults to 0.1.
        teacher_temp (float): Teacher temperature tau_t after warm-up.
            Defaults to 0.04.
        warmup_teacher_temp (float): tau_t at the start of the warm-up.
            Defaults to 0.04.
        teacher_temp_warmup_epochs (float): Length of the linear warm-up of
            tau_t. The reference recipe uses 0, so tau_t is constant.
            Defaults to 0.
        center_momentum (float): Weight of the old centre in its EMA.
            Defaults to 0.9.
        loss_weight (float): Weight of ``loss_csm``. Defaults to 1.0.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 out_channels: int = 65536,
                 student_temp: float = 0.1,
                 teacher_temp: float = 0.04,
                 warmup_teacher_temp: float = 0.04,
                 teacher_temp_warmup_epochs: float = 0.,
                 center_momentum: float = 0.9,
                 loss_weight: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        for name, value in (('student_temp', student_temp),
                            ('teacher_temp', teacher_temp),
                            ('warmup_teacher_temp', warmup_teacher_temp)):
            if value <= 0:
                raise ValueError(f'{name} must be > 0, got {value}')
        if teacher_temp_warmup_epochs < 0:
            raise ValueError('teacher_temp_warmup_epochs must be >= 0, got '
                             f'{teacher_temp_warmup_epochs}')
        if not 0. <= center_momentum < 1.:
            raise ValueError('center_momentum must be in [0, 1), got '
                             f'{center_momentum}')
        self.out_channels = out_channels
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp_warmup_epochs = teacher_temp_warmup_epochs
        self.center_momentum = center_momentum
        self.loss_weight = loss_weight
        self.register_buffer('center', torch.zeros(1, out_channels))

    def teacher_temperature(self, epoch: float) -> float:
        """Return tau_t at a (fractional) epoch of training."""
        warmup = self.teacher_temp_warmup_epochs
        if warmup <= 0 or epoch >= warmup:
            return self.teacher_temp
        progress = epoch / warmup
        return self.warmup_teacher_temp + progress * (
            self.teacher_temp - self.warmup_teacher_temp)

    def teacher_targets(self, teacher_logits: torch.Tensor,
                        epoch: float) -> torch.Tensor:
        """Centre and sharpen teacher scores into probabilities.

        Args:
            teacher_logits (Tensor): Shape (V_t, B, K).
            epoch (float): Fractional epoch for the temperature schedule.

        Returns:
            Tensor: Probabilities of shape (V_t, B, K), in float32.
        """
        temperature = self.teacher_temperature(epoch)
        centred = teacher_logits.float() - self.center
        return F.softmax(centred / temperature, dim=-1)

    def loss(self, student_logits: torch.Tensor,
             teacher_logits: torch.Tensor, epoch: float = 0.,
             update_center: bool = True) -> Dict[str, torch.Tensor]:
        """Compute ``loss_csm`` and update the centre.

        Args:
            student_logits (Tensor): Shape (V_s, B, K). The first V_t views
                are the views the teacher saw, in the same order.
            teacher_logits (Tensor): Shape (V_t, B, K), without gradient.
            epoch (float): Fractional epoch for the temperature schedule.
                Defaults to 0.
            update_center (bool): Update the centre from this batch.
                Defaults to True.

        Returns:
            dict[str, Tensor]: ``loss_csm`` and the detached diagnostics
            ``csm_teacher_temp`` and ``csm_teacher_entropy``, the mean
            entropy of the teacher targets in nats. The entropy falls to 0
            when the targets collapse to one prototype and rises to ln(K)
            when they are uniform.
        """
        num_teacher_views = teacher_logits.shape[0]
        num_student_views = student_logits.shape[0]
        # With one student view there is no pair (i, v) with v != i.
        if num_student_views < max(num_teacher_views, 2):
            raise ValueError('CSM needs at least 2 student views and at '
                             'least as many student as teacher views, got '
                             f'{num_student_views} student and '
                             f'{num_teacher_views} teacher views')
        targets = self.teacher_targets(teacher_logits, epoch)
        # (V_s, B, K) log-probabilities of the student.
        log_probs = F.log_softmax(
            student_logits.float() / self.student_temp, dim=-1)
        # cross[i, v] = mean over B of CE(teacher view i, student view v),
        # as one (V_t, B * K) x (B * K, V_s) product. Its backward writes
        # the (V_s, B * K) gradient of log_probs contiguously, where einsum
        # made a permuted copy.
        cross = -(targets.flatten(1) @ log_probs.flatten(1).t()
                  ) / targets.shape[1]
        pair_mask = torch.ones_like(cross, dtype=torch.bool)
        diagonal = torch.arange(num_teacher_views, device=cross.device)
        pair_mask[diagonal, diagonal] = False
        loss = cross[pair_mask].mean()

        entropy = -(targets * targets.clamp_min(1e-12).log()).sum(-1).mean()
        if update_center:
            self.update_center(teacher_logits)
        return dict(
            loss_csm=self.loss_weight * loss,
            # torch.full fills on the device, with no copy from the host.
            csm_teacher_temp=torch.full((),
                                        self.teacher_temperature(epoch),
                                        device=loss.device),
            csm_teacher_entropy=entropy.detach())

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """Move the centre towards the mean teacher score of this batch.

        The batch mean is averaged over all processes, so every rank keeps
        the same centre.

        Args:
            teacher_logits (Tensor): Shape (V_t, B, K).
        """
        batch_center = teacher_logits.float().flatten(0, 1).mean(
            dim=0, keepdim=True)  # (1, K)
        all_reduce(batch_center)
        batch_center = batch_center / get_world_size()
        self.center.mul_(self.center_momentum).add_(
            batch_center, alpha=1. - self.center_momentum)

    @staticmethod
    def uniform_loss(out_channels: int) -> float:
        """Return ln(K), the cross-entropy of a collapsed, uniform match."""
        return math.log(out_channels)
