"""Linear layer against row-normalised weights, with a lean backward."""
import torch
import torch.nn.functional as F


def _autocast_state(device_type: str) -> tuple:
    return (torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type))


class _WeightNormalizedLinear(torch.autograd.Function):
    """``F.linear(x, F.normalize(weight, dim=1, eps=eps))``, computed
    without a normalised copy of ``weight``.

    The CSM prototype matrix is large (65536 x 256 in ViT-Tiny SAIP) and
    the batch of class tokens is small. Normalising the weight creates a
    tensor of the weight's size in the forward pass and several more in the
    backward pass of the division. Here the forward pass scales the (N, K)
    output by the inverse row norms instead, and the backward pass writes
    the weight gradient once and corrects it in place:

    with ``y[j, k] = x[j] . w[k] / n[k]`` and ``n[k] = max(|w[k]|, eps)``,

    - ``dL/dx[j] = sum_k g[j, k] w[k] / n[k]``
    - ``dL/dw[k] = sum_j g[j, k] x[j] / n[k]
      - (sum_j g[j, k] y[j, k]) w[k] / n[k]^2``,

    where the second term of ``dL/dw`` is zero for rows with
    ``|w[k]| < eps``, because the clamp keeps ``n[k]`` constant there.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                eps: float) -> torch.Tensor:
        # Norms in at least float32, also for a half-precision weight.
        norm_dtype = torch.promote_types(weight.dtype, torch.float32)
        norms = torch.linalg.vector_norm(weight, dim=1, dtype=norm_dtype)
        inv_norms = norms.clamp_min(eps).reciprocal()
        # Runs in the autocast dtype when autocast is on, like F.linear.
        output = F.linear(x, weight)
        output = output * inv_norms.to(output.dtype)
        ctx.save_for_backward(x, weight, inv_norms, norms >= eps, output)
        ctx.autocast_state = _autocast_state(x.device.type)
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, weight, inv_norms, unclamped, output = ctx.saved_tensors
        enabled, dtype = ctx.autocast_state
        # Re-enter the forward pass's autocast state, so the two matrix
        # products of the backward pass run in the same precision.
        with torch.autocast(
                x.device.type, dtype=dtype, enabled=enabled):
            scaled = grad_output * inv_norms.to(grad_output.dtype)  # (N, K)
            grad_x = scaled @ weight if ctx.needs_input_grad[0] else None
            grad_weight = None
            if ctx.needs_input_grad[1]:
                grad_weight = (scaled.t() @ x).to(weight.dtype)  # (K, C)
                # (K, ) coefficient of w[k] in the norm's gradient term.
                coefficient = (grad_output.to(inv_norms.dtype) *
                               output.to(inv_norms.dtype)).sum(0)
                coefficient = coefficient * inv_norms.square()
                coefficient = torch.where(unclamped, coefficient,
                                          torch.zeros_like(coefficient))
                grad_weight.addcmul_(
                    weight, coefficient[:, None].to(weight.dtype), value=-1)
        if grad_x is not None:
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_weight, None


def weight_normalized_linear(x: torch.Tensor,
                             weight: torch.Tensor,
                             eps: float = 1e-12) -> torch.Tensor:
    """Apply a bias-free linear layer whose weight rows have unit length.

    Equal to ``F.linear(x, F.normalize(weight, dim=1, eps=eps))``, which is
    weight normalisation with the magnitude fixed to 1, but cheaper in time
    and memory when ``weight`` has many more rows than ``x``.

    Args:
        x (Tensor): Inputs of shape (N, C).
        weight (Tensor): Weight of shape (K, C), one row per output.
        eps (float): Lower bound of a row norm, as in ``F.normalize``.
            Defaults to 1e-12.

    Returns:
        Tensor: Outputs of shape (N, K).
    """
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError('weight_normalized_linear expects x of shape '
                         '(N, C) and weight of shape (K, C), got '
                         f'{tuple(x.shape)} and {tuple(weight.shape)}')
    return _WeightNormalizedLinear.apply(x, weight, eps)
