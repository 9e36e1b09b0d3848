import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from mmsaip.models.heads import CSSHead
from mmsaip.models.heads.css_head import mask_iou

# Every test starts from the shared fixed seed.
pytestmark = pytest.mark.usefixtures('seeded')

CANVAS_GRID = (3, 4)  # not square, so a swapped (H, W) shows up
ATOL = 1e-5


def build_head(**kwargs) -> CSSHead:
    cfg = dict(
        type='CSSHead',
        in_channels=32,
        embed_dims=32,
        num_query_layers=2,
        num_heads=2,
        mlp_ratio=2,
        num_mask_convs=2)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    head.eval()
    return head


def bce_by_hand(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of -(y log sigmoid(x) + (1 - y) log(1 - sigmoid(x)))."""
    probs = torch.sigmoid(logits)
    target = target.float()
    terms = target * torch.log(probs) + (1 - target) * torch.log(1 - probs)
    return -terms.mean()


def test_css_head_build_from_registry():
    head = build_head()
    assert isinstance(head, CSSHead)
    assert len(head.query_layers) == 2
    convs = [m for m in head.mask_convs if isinstance(m, torch.nn.Conv2d)]
    assert [conv.kernel_size for conv in convs] == [(1, 1), (3, 3), (3, 3)]
    assert torch.count_nonzero(head.query_embed.bias) == 0


def test_css_mask_features_shape():
    head = build_head()
    canvas_tokens = torch.randn(2, 12, 32)
    features = head.mask_features(canvas_tokens, CANVAS_GRID)
    assert features.shape == (2, 32, 3, 4)
    assert torch.isfinite(features).all()


def test_css_mask_features_layout():
    # Without 3x3 convolutions each position depends only on its own
    # token, so the token at row-major index h * W + w must land at (h, w).
    head = build_head(num_mask_convs=0)
    canvas_tokens = torch.randn(2, 12, 32)
    conv = head.mask_convs[0]
    with torch.no_grad():
        features = head.mask_features(canvas_tokens, CANVAS_GRID)
        for b in range(2):
            for h in range(3):
                for w in range(4):
                    token = canvas_tokens[b, h * 4 + w]
                    expected = F.gelu(conv.weight[:, :, 0, 0] @ token +
                                      conv.bias)
                    torch.testing.assert_close(
                        features[b, :, h, w], expected, atol=ATOL, rtol=0)


def test_css_query_kernel_shape():
    head = build_head()
    kernel = head.query_kernel(torch.randn(2, 9, 32), torch.randn(2, 12, 32))
    assert kernel.shape == (2, 32)
    assert torch.isfinite(kernel).all()


def test_css_query_kernel_by_hand():
    head = build_head()
    query_tokens = torch.randn(2, 9, 32)
    canvas_tokens = torch.randn(2, 12, 32)
    with torch.no_grad():
        kernel = head.query_kernel(query_tokens, canvas_tokens)

        query = head.query_embed(query_tokens)
        for layer in head.query_layers:
            query = layer(query)
        cls = query[:, :1]  # (B, 1, D)
        memory = head.canvas_norm(head.canvas_embed(canvas_tokens))
        attended = head.cross_attn(
            head.cross_norm(cls), memory, memory, need_weights=False)[0]
        cls = cls + attended
        cls = cls + head.cross_ffn(head.cross_ffn_norm(cls))
        expected = head.kernel_proj(head.kernel_norm(cls[:, 0]))
    torch.testing.assert_close(kernel, expected, atol=ATOL, rtol=0)


def test_css_query_kernel_patch_order_invariant():
    # The query tokens carry no positions, so the class token's kernel
    # does not depend on the order of the patch tokens.
    head = build_head()
    query_tokens = torch.randn(2, 9, 32)
    canvas_tokens = torch.randn(2, 12, 32)
    order = torch.cat((torch.zeros(1, dtype=torch.long),
                       1 + torch.randperm(8)))
    with torch.no_grad():
        kernel = head.query_kernel(query_tokens, canvas_tokens)
        shuffled = head.query_kernel(query_tokens[:, order], canvas_tokens)
    torch.testing.assert_close(shuffled, kernel, atol=ATOL, rtol=0)


def test_css_forward_by_hand():
    head = build_head()
    query_tokens = torch.randn(2, 9, 32)
    canvas_tokens = torch.randn(2, 12, 32)
    with torch.no_grad():
        features = head.mask_features(canvas_tokens, CANVAS_GRID)
        logits = head(query_tokens, canvas_tokens, features)
        kernel = head.query_kernel(query_tokens, canvas_tokens)
    assert logits.shape == (2, 12)
    for b in range(2):
        for h in range(3):
            for w in range(4):
                expected = (kernel[b] * features[b, :, h, w]).sum()
                torch.testing.assert_close(
                    logits[b, h * 4 + w], expected, atol=ATOL, rtol=1e-5)


def test_css_query_kernel_uses_canvas():
    head = build_head()
    query_tokens = torch.randn(2, 9, 32)
    canvas_tokens = torch.randn(2, 12, 32)
    with torch.no_grad():
        kernel = head.query_kernel(query_tokens, canvas_tokens)
        other_canvas = head.query_kernel(query_tokens,
                                         torch.randn(2, 12, 32))
        # Sample 1 alone gives the same kernel: samples do not mix.
        single = head.query_kernel(query_tokens[1:], canvas_tokens[1:])
    assert not torch.allclose(kernel, other_canvas)
    torch.testing.assert_close(single, kernel[1:], atol=ATOL, rtol=0)


def test_css_loss_by_hand():
    head = build_head(loss_weight_inst=0.5, loss_weight_roi=2.)
    inst_logits = torch.randn(2, 12, requires_grad=True)
    roi_logits = torch.randn(2, 12)
    inst_target = torch.rand(2, 12) < 0.3
    roi_target = torch.rand(2, 12) < 0.3

    losses = head.loss(inst_logits, roi_logits, inst_target, roi_target)

    assert set(losses) == {
        'loss_css_inst', 'loss_css_roi', 'css_inst_iou', 'css_roi_iou'
    }
    torch.testing.assert_close(
        losses['loss_css_inst'],
        0.5 * bce_by_hand(inst_logits, inst_target),
        atol=1e-6,
        rtol=1e-5)
    torch.testing.assert_close(
        losses['loss_css_roi'],
        2. * bce_by_hand(roi_logits, roi_target),
        atol=1e-6,
        rtol=1e-5)
    torch.testing.assert_close(
        losses['loss_css_inst'],
        0.5 * F.binary_cross_entropy_with_logits(inst_logits,
                                                 inst_target.float()),
        atol=1e-6,
        rtol=1e-5)
    assert not losses['css_inst_iou'].requires_grad
    losses['loss_css_inst'].backward()
    assert inst_logits.grad.abs().sum() > 0


def test_css_loss_iou_from_logit_sign():
    head = build_head()
    logits = torch.tensor([[2., -1., 0.5, -3.], [-1., -2., -0.1, -4.]])
    target = torch.tensor([[True, True, False, False],
                           [False, False, False, False]])
    losses = head.loss(logits, logits, target, target)
    # Sample 0: predicted {0, 2}, target {0, 1}: IoU 1 / 3. Sample 1:
    # nothing predicted, nothing pasted: IoU 1.
    assert losses['css_inst_iou'].item() == pytest.approx(2 / 3)
    assert losses['css_roi_iou'].item() == pytest.approx(2 / 3)


def test_mask_iou_by_hand():
    pred = torch.tensor([[True, True, False, False],
                         [True, True, True, True],
                         [True, False, False, False]])
    target = torch.tensor([[True, False, True, False],
                           [True, True, True, True],
                           [False, True, False, False]])
    # IoU per row: 1 / 3, 1, 0.
    assert mask_iou(pred, target).item() == pytest.approx(4 / 9)
    assert mask_iou(pred[1:2], target[1:2]).item() == 1.
    assert mask_iou(pred[2:], target[2:]).item() == 0.
    empty = torch.zeros(1, 4, dtype=torch.bool)
    assert mask_iou(empty, empty).item() == 1.


def test_css_query_kernel_matches_reference():
    # The last query block updates only the class token; the kernel and
    # every gradient must equal those of full blocks.
    from saip_reference import css_query_kernel_reference
    head = build_head()
    query_tokens = torch.randn(2, 9, 32, requires_grad=True)
    canvas_tokens = torch.randn(2, 12, 32)
    weights = torch.randn(2, 32)

    expected = css_query_kernel_reference(head, query_tokens, canvas_tokens)
    (expected * weights).sum().backward()
    expected_grads = {'query_tokens': query_tokens.grad.clone()}
    expected_grads.update({
        name: param.grad.clone()
        for name, param in head.named_parameters() if param.grad is not None
    })
    query_tokens.grad = None
    head.zero_grad()

    kernel = head.query_kernel(query_tokens, canvas_tokens)
    torch.testing.assert_close(kernel, expected, atol=ATOL, rtol=0)
    (kernel * weights).sum().backward()
    grads = {'query_tokens': query_tokens.grad}
    grads.update({
        name: param.grad
        for name, param in head.named_parameters() if param.grad is not None
    })
    assert set(grads) == set(expected_grads)
    for name, grad in grads.items():
        torch.testing.assert_close(
            grad, expected_grads[name], atol=ATOL, rtol=1e-4, msg=name)
