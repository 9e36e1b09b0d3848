from .attention_distill_loss import AttentionDistillLoss

__all__ = ['AttentionDistillLoss']
