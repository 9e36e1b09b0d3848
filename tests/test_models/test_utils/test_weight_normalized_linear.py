import pytest
import torch
import torch.nn.functional as F

from mmsaip.models.utils import weight_normalized_linear

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')


def reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(x, F.normalize(weight, dim=1))


def leaf_pair(dtype=torch.float32, num_rows=6, num_outputs=40, channels=8):
    x = torch.randn(num_rows, channels, dtype=dtype, requires_grad=True)
    # Rows of very different lengths, so the norm term of the gradient
    # matters.
    weight = torch.randn(num_outputs, channels, dtype=dtype)
    weight = weight * torch.logspace(-2, 2, num_outputs, dtype=dtype)[:, None]
    return x, weight.requires_grad_()


def test_weight_normalized_linear_forward_matches_normalize():
    x, weight = leaf_pair(torch.float64)
    output = weight_normalized_linear(x, weight)
    torch.testing.assert_close(output, reference(x, weight), rtol=1e-12,
                               atol=1e-12)


def test_weight_normalized_linear_gradcheck():
    x, weight = leaf_pair(torch.float64, num_rows=3, num_outputs=7,
                          channels=5)
    assert torch.autograd.gradcheck(weight_normalized_linear, (x, weight))


def test_weight_normalized_linear_grads_match_reference():
    x, weight = leaf_pair()
    grad_output = torch.randn(6, 40)
    weight_normalized_linear(x, weight).backward(grad_output)
    grads = x.grad.clone(), weight.grad.clone()
    x.grad, weight.grad = None, None
    reference(x, weight).backward(grad_output)
    torch.testing.assert_close(grads[0], x.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], weight.grad, rtol=1e-5, atol=1e-6)


def test_weight_normalized_linear_zero_row_like_normalize():
    # A zero row is clamped to the norm eps: output 0, and its gradient has
    # no norm term, as with F.normalize.
    x, weight = leaf_pair()
    with torch.no_grad():
        weight[3] = 0.
    grad_output = torch.randn(6, 40)
    output = weight_normalized_linear(x, weight)
    assert torch.all(output[:, 3] == 0)
    output.backward(grad_output)
    ours = weight.grad.clone()
    weight.grad = None
    reference(x, weight).backward(grad_output)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, weight.grad, rtol=1e-5, atol=1e-6)


def test_weight_normalized_linear_frozen_weight():
    # The EMA teacher's weight has no gradient; only x gets one.
    x, weight = leaf_pair()
    weight = weight.detach()
    weight_normalized_linear(x, weight).sum().backward()
    expected = torch.autograd.grad(
        reference(x, weight).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-6)


def test_weight_normalized_linear_cpu_autocast_bf16():
    x, weight = leaf_pair()
    grad_output = torch.randn(6, 40)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        output = weight_normalized_linear(x, weight)
    assert output.dtype == torch.bfloat16
    output.backward(grad_output.bfloat16())
    assert x.grad.dtype == torch.float32
    assert weight.grad.dtype == torch.float32
    ours = x.grad.clone(), weight.grad.clone()
    x.grad, weight.grad = None, None
    expected_output = reference(x, weight)
    expected_output.backward(grad_output)
    torch.testing.assert_close(output.float(), expected_output, rtol=0,
                               atol=0.05)
    for grad, expected in zip(ours, (x.grad, weight.grad)):
        scale = expected.abs().max()
        assert (grad - expected).abs().max() <= 0.03 * scale


def test_weight_normalized_linear_shape_mismatch():
    with pytest.raises(ValueError, match=r'\(6, 8\) and \(40, 7\)'):
        weight_normalized_linear(torch.randn(6, 8), torch.randn(40, 7))
