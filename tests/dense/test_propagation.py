"""The similarity -> sharpen/softmax -> propagate core against explicit loops."""

import torch
import torch.nn.functional as F

from pixelssl.dense.propagation import masked_softmax, pixel_propagation, propagate, sharpen


def naive_ppm(x: torch.Tensor, v: torch.Tensor, gamma: float) -> torch.Tensor:
    """PixPro eq. 1-2 pixel by pixel, in the release's order of normalisations."""
    b, c, h, w = x.shape
    xs = x.flatten(2)
    vs = v.flatten(2)
    out = torch.zeros_like(xs)
    for n in range(b):
        for i in range(h * w):
            acc = torch.zeros(c, dtype=x.dtype)
            for j in range(h * w):
                cos = torch.dot(xs[n, :, i], xs[n, :, j]) / (xs[n, :, i].norm() * xs[n, :, j].norm())
                acc += max(float(cos), 0.0) ** gamma * vs[n, :, j] / vs[n, :, j].norm()
            out[n, :, i] = acc / acc.norm()
    return out.view(b, c, h, w)


def test_ppm_equals_naive_loop():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    v = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    assert torch.allclose(pixel_propagation(x, v, 2.0), naive_ppm(x, v, 2.0), atol=1e-10)


def test_sharpen_clamps_negatives_and_raises_to_gamma():
    s = torch.tensor([-0.5, 0.0, 0.5, 1.0])
    assert torch.allclose(sharpen(s, 2.0), torch.tensor([0.0, 0.0, 0.25, 1.0]))
    assert torch.allclose(sharpen(s, 0.5), (s.clamp(min=0) + 1e-6).sqrt())


def test_ppm_of_a_constant_map_returns_the_normalised_value():
    x = torch.ones(1, 4, 2, 2)
    v = torch.tensor([1.0, 2.0, 2.0, 0.0]).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    y = pixel_propagation(x, v, 2.0)
    assert torch.allclose(y, F.normalize(v, dim=1))


def test_masked_softmax_ignores_invalid_keys_and_is_finite_without_any():
    scores = torch.tensor([[[1.0, 2.0, 3.0]]])
    w = masked_softmax(scores, torch.tensor([[[1.0, 0.0, 1.0]]]), scale=10.0)
    assert w[0, 0, 1] == 0
    assert w[0, 0, 2] > 0.99 * (w[0, 0, 0] + w[0, 0, 2])
    assert torch.equal(masked_softmax(scores, torch.zeros(1, 1, 3), 10.0), torch.zeros(1, 1, 3))


def test_propagate_is_a_batched_weighted_sum():
    weights = torch.tensor([[[0.25, 0.75]]])
    values = torch.tensor([[[4.0, 0.0], [0.0, 8.0]]])
    assert torch.allclose(propagate(weights, values), torch.tensor([[[1.0, 6.0]]]))
