"""Inpainting metrics on hand cases."""

import math

import pytest
import torch

from pixelssl.inpaint.metrics import gaussian_window, image_metrics, mean_l1, mean_l2, psnr, ssim, total_variation


def test_l1_l2_psnr_of_a_constant_error():
    x, y = torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.1)
    assert torch.allclose(mean_l1(x, y), torch.tensor([0.1, 0.1]))
    assert torch.allclose(mean_l2(x, y), torch.tensor([0.01, 0.01]))
    assert psnr(x, y)[0].item() == pytest.approx(20.0, rel=1e-5)


def test_total_variation_of_a_step():
    x = torch.zeros(1, 1, 4, 4)
    x[..., 2:] = 1.0  # one vertical step of 1 across 4 of the 12 horizontal neighbour pairs
    assert total_variation(x).item() == pytest.approx(4 / 12)


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.all(ssim(noisy, x) < 0.9)
    assert torch.allclose(ssim(noisy, x), ssim(x, noisy))


def test_ssim_of_constant_images_follows_the_luminance_term():
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.6)
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    assert ssim(a, b).item() == pytest.approx(expected, rel=1e-5)


def test_gaussian_window_is_normalised_and_symmetric():
    w = gaussian_window(11, 1.5)
    assert w.sum().item() == pytest.approx(1.0)
    assert torch.allclose(w, w.flip(0))
    assert w[5] / w[6] == pytest.approx(math.exp(1 / (2 * 1.5 ** 2)))


def test_image_metrics_returns_every_metric_per_image():
    x = torch.rand(3, 3, 16, 16)
    scores = image_metrics(x, x)
    assert set(scores) == {"l1", "l2", "psnr", "tv", "ssim"}
    assert all(v.shape == (3,) for v in scores.values())
