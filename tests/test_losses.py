"""Each loss against a hand-written reference on small tensors, and finite on degenerate inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from pixelssl.losses import dense_info_nce, info_nce, negative_cosine, pixel_info_nce, pixpro_consistency


def normed(*shape):
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=1)


def test_pixpro_consistency_matches_per_image_average_over_positives():
    torch.manual_seed(0)
    pred, key = normed(3, 5, 4), normed(3, 5, 6)
    pos = torch.rand(3, 4, 6) < 0.4
    pos[2] = False  # an image without positives contributes 0 but still counts
    expected = 0.0
    for b in range(3):
        pairs = [(i, j) for i in range(4) for j in range(6) if pos[b, i, j]]
        if pairs:
            expected += sum(float(pred[b, :, i] @ key[b, :, j]) for i, j in pairs) / (len(pairs) + 1e-6)
    expected = -2 * expected / 3
    assert math.isclose(float(pixpro_consistency(pred, key, pos)), expected, rel_tol=1e-9)


def test_pixpro_consistency_optimum_is_minus_two_per_direction():
    x = normed(2, 8, 9)
    assert math.isclose(float(pixpro_consistency(x, x, torch.eye(9, dtype=torch.bool).expand(2, 9, 9))), -2.0,
                        rel_tol=1e-5)


def test_negative_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    assert math.isclose(float(negative_cosine(a, b)), -2 * (1.0 + 0.0) / 2)


def test_info_nce_with_queue_matches_formula():
    torch.manual_seed(0)
    q, k, queue = normed(4, 8), normed(4, 8), normed(16, 8)
    t = 0.2
    expected = 0.0
    for i in range(4):
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ n) / t) for n in queue)
        expected += -math.log(pos / (pos + neg))
    assert math.isclose(float(info_nce(q, k, queue, t)), expected / 4, rel_tol=1e-6)


def test_info_nce_without_queue_uses_other_keys_as_negatives():
    torch.manual_seed(0)
    q, k = normed(3, 4), normed(3, 4)
    t = 0.5
    expected = 0.0
    for i in range(3):
        logits = [float(q[i] @ k[j]) / t for j in range(3)]
        expected += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    assert math.isclose(float(info_nce(q, k, None, t)), expected / 3, rel_tol=1e-6)


def test_pixel_info_nce_matches_per_pixel_reference():
    torch.manual_seed(0)
    q, k, extra = normed(2, 6, 5), normed(2, 6, 7), normed(3, 6)
    pos = torch.rand(2, 5, 7) < 0.3
    pos[0, 0] = False  # a query pixel without positives is never averaged
    valid = torch.rand(2, 5) < 0.8
    t = 0.3
    terms = []
    for b in range(2):
        for i in range(5):
            if not valid[b, i] or not pos[b, i].any():
                continue
            sims = [math.exp(float(q[b, :, i] @ k[b, :, j]) / t) for j in range(7)]
            num = sum(s for j, s in enumerate(sims) if pos[b, i, j])
            den = sum(sims) + sum(math.exp(float(q[b, :, i] @ n) / t) for n in extra)
            terms.append(-math.log(num / den))
    got = pixel_info_nce(q, k, pos, valid, t, extra)
    assert math.isclose(float(got), sum(terms) / len(terms), rel_tol=1e-6)


def test_dense_info_nce_is_the_weighted_mean_of_per_pixel_info_nce():
    torch.manual_seed(0)
    q, k, queue = normed(2, 6, 5), normed(2, 6, 5), normed(4, 6)
    w = torch.rand(2, 5, dtype=torch.float64)
    t = 0.2
    terms = []
    for b in range(2):
        for i in range(5):
            pos = math.exp(float(q[b, :, i] @ k[b, :, i]) / t)
            neg = sum(math.exp(float(q[b, :, i] @ n) / t) for n in queue)
            terms.append((float(w[b, i]), -math.log(pos / (pos + neg))))
    weighted = sum(wi * li for wi, li in terms) / sum(wi for wi, _ in terms)
    assert math.isclose(float(dense_info_nce(q, k, queue, t, w)), weighted, rel_tol=1e-9)
    assert math.isclose(float(dense_info_nce(q, k, queue, t)), sum(li for _, li in terms) / 10, rel_tol=1e-9)


def test_dense_info_nce_with_all_weights_zero_is_zero_with_finite_gradient():
    q = normed(2, 4, 3).requires_grad_()
    loss = dense_info_nce(q, normed(2, 4, 3), normed(5, 4), 0.2, torch.zeros(2, 3, dtype=torch.float64))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(q.grad).all()


def test_dense_losses_are_finite_with_no_positives_and_zero_features():
    q = torch.zeros(2, 4, 3, requires_grad=True)
    k = torch.zeros(2, 4, 3)
    none = torch.zeros(2, 3, 3, dtype=torch.bool)
    for loss in (pixpro_consistency(q, k, none), pixel_info_nce(q, k, none, torch.ones(2, 3, dtype=torch.bool), 0.3)):
        loss.backward()
        assert torch.isfinite(loss) and loss.item() == 0.0
        assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("temperature", [0.2, 0.02])
def test_queue_info_nce_equals_cross_entropy_over_concatenated_logits(temperature):
    """The concatenation-free form (logaddexp of the positive and the queue's logsumexp) gives the textbook
    cross-entropy over [pos, negatives] / t, values and gradients, also at a sharp temperature (fp64)."""
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    k = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    queue = F.normalize(torch.randn(50, 8, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    got = info_nce(q, k, queue, temperature, reduction="none")
    logits = torch.cat(((q * k).sum(1, keepdim=True), q @ queue.t()), dim=1) / temperature
    want = F.cross_entropy(logits, torch.zeros(6, dtype=torch.long), reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.rand(6, generator=g, dtype=torch.float64)  # an uneven upstream gradient
    grads = torch.autograd.grad((got * weights).sum(), (q, k, queue))
    torch.testing.assert_close(grads, torch.autograd.grad((want * weights).sum(), (q, k, queue)), rtol=1e-10,
                               atol=1e-12)
    assert torch.isclose(info_nce(q, k, queue, temperature, reduction="sum"), want.sum())
    assert torch.isfinite(info_nce(q, q, torch.cat((q, q)).detach(), 0.01)).all()  # every logit equal and large


def test_queue_info_nce_under_autocast_is_close_to_fp32():
    """bf16 matmuls (autocast), fp32 exponentials: the loss and its gradient stay within bf16 rounding."""
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(16, 32, generator=g), dim=1).requires_grad_()
    k = F.normalize(torch.randn(16, 32, generator=g), dim=1)
    queue = F.normalize(torch.randn(200, 32, generator=g), dim=1)
    exact = info_nce(q, k, queue, 0.2)
    (exact_grad,) = torch.autograd.grad(exact, q)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = info_nce(q, k, queue, 0.2)
    (low_grad,) = torch.autograd.grad(low, q)
    assert low.dtype == torch.float32 and low_grad.dtype == torch.float32
    assert abs(low.item() - exact.item()) < 0.02 * exact.item()
    assert float((low_grad - exact_grad).norm() / exact_grad.norm()) < 0.05


# ------------------------------------------------------------------ the losses as modules
LOSS_MODULES = ["PixProConsistency", "InfoNCE", "DenseInfoNCE", "PixelInfoNCE", "NegativeCosine"]


@pytest.mark.parametrize("name", LOSS_MODULES)
def test_each_loss_module_cites_its_paper_and_its_example_runs(name):
    import doctest

    import pixelssl
    from pixelssl import losses

    cls = getattr(pixelssl, name)
    assert cls is getattr(losses, name) and issubclass(cls, torch.nn.Module)
    examples = [line for line in cls.__doc__.splitlines() if line.strip().startswith(">>>")]
    assert len(examples) == 3 and any(year in cls.__doc__ for year in ("2018", "2020", "2021", "2024"))
    torch.manual_seed(0)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(cls, name, globs={"torch": torch, "F": F, name: cls}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 3


def test_loss_modules_compute_the_functions():
    from pixelssl.losses import DenseInfoNCE, InfoNCE, NegativeCosine, PixelInfoNCE, PixProConsistency

    torch.manual_seed(0)
    q, k, queue = normed(4, 8), normed(4, 8), normed(16, 8)
    assert torch.equal(InfoNCE(0.2)(q, k, queue), info_nce(q, k, queue, 0.2))
    assert torch.equal(NegativeCosine()(q, k), negative_cosine(q, k))
    dq, dk, pos = normed(2, 8, 6), normed(2, 8, 6), torch.rand(2, 6, 6) < 0.3
    valid, weights = torch.ones(2, 6, dtype=torch.bool), torch.rand(2, 6, dtype=torch.float64)
    assert torch.equal(PixProConsistency()(dq, dk, pos), pixpro_consistency(dq, dk, pos))
    assert torch.equal(DenseInfoNCE(0.2)(dq, dk, queue, weights), dense_info_nce(dq, dk, queue, 0.2, weights))
    assert torch.equal(PixelInfoNCE(0.3)(dq, dk, pos, valid), pixel_info_nce(dq, dk, pos, valid, 0.3))
