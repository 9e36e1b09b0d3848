"""Attention-map distillation loss of cross-scale matching."""
from typing import Sequence

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from ..backbones.saip_vit import AttentionMaps


@MODELS.register_module()
class AttentionDistillLoss(nn.Module):
    """KL divergence from teacher to student attention maps.

    For each view, KL(teacher || student) is summed over keys and averaged
    over batch, heads and queries, for both the query-key and the
    value-value maps; the two are added and the result is averaged over the
    views. Identical maps give exactly 0.

    Args:
        eps (float): Added inside the logarithms so that zero probabilities
            stay finite. Defaults to 1e-10, as in the reference code.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, eps: float = 1e-10, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.eps = eps
        self.loss_weight = loss_weight

    def kl_divergence(self, teacher: torch.Tensor,
                      student: torch.Tensor) -> torch.Tensor:
        """Return KL(teacher || student) for maps of shape (B, h, L, L)."""
        teacher = teacher.float()
        student = student.float()
        per_query = (teacher * ((teacher + self.eps).log() -
                                (student + self.eps).log())).sum(dim=-1)
        return per_query.mean()

    def forward(self, student_maps: Sequence[AttentionMaps],
                teacher_maps: Sequence[AttentionMaps]) -> torch.Tensor:
        """Compute the weighted loss.

        Args:
            student_maps (Sequence[AttentionMaps]): One entry per view, each
                map of shape (B, heads, L, L).
            teacher_maps (Sequence[AttentionMaps]): Same views, same shapes.

        Returns:
            Tensor: Scalar loss.
        """
        if len(student_maps) != len(teacher_maps) or not student_maps:
            raise ValueError('student_maps and teacher_maps must hold the '
                             'same non-zero number of views, got '
                             f'{len(student_maps)} and {len(teacher_maps)}')
        total = 0.
        for student, teacher in zip(student_maps, teacher_maps):
            total = total + self.kl_divergence(teacher.query_key,
                                               student.query_key)
            total = total + self.kl_divergence(teacher.value_value,
                                               student.value_value)
        return self.loss_weight * total / len(student_maps)
