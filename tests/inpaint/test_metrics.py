"""inpaint.metrics: the inpainting metrics over the whole image and over the hole only, on hand cases."""

import math

import pytest
import torch

from pixelssl.inpaint.metrics import (
    MSE_FLOOR,
    gaussian_window,
    hole_metrics,
    image_metrics,
    mean_l1,
    mean_l2,
    psnr,
    ssim,
    ssim_map,
    total_variation,
)


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


# ------------------------------------------------------------------------------------------- over the hole
def _images(seed=0, batch=2, size=32):
    g = torch.Generator().manual_seed(seed)
    original = torch.rand(batch, 3, size, size, generator=g) * 0.8
    hole = torch.zeros(batch, 1, size, size, dtype=torch.bool)
    hole[0, :, 8:24, 6:20] = True
    hole[1, :, 4:12, 10:30] = True
    return original, hole


def test_a_perfect_fill_scores_l1_0_psnr_at_the_cap_and_ssim_1():
    original, hole = _images()
    scores = hole_metrics(original.clone(), original, hole)
    assert torch.equal(scores["hole_l1"], torch.zeros(2))
    assert torch.allclose(scores["hole_psnr"], torch.full((2,), 10 * math.log10(1 / MSE_FLOOR)))  # 100 dB, not inf
    assert torch.allclose(scores["hole_ssim"], torch.ones(2))


def test_a_constant_error_in_the_hole_gives_its_psnr_whatever_the_hole_size():
    original, hole = _images()
    completed = original + 0.1 * hole  # every hole pixel and channel off by 0.1
    scores = hole_metrics(completed, original, hole)
    assert torch.allclose(scores["hole_l1"], torch.full((2,), 0.1), atol=1e-6)
    assert torch.allclose(scores["hole_psnr"], torch.full((2,), 20.0), atol=1e-4)  # 10 log10(1 / 0.01)
    half = hole.clone()
    half[..., :, :16] = False  # the error on only part of the hole: MSE 0.01 * fraction
    scores = hole_metrics(original + 0.1 * half, original, hole)
    fraction = half.flatten(1).sum(1).double() / hole.flatten(1).sum(1)
    assert torch.allclose(scores["hole_psnr"].double(), 10 * torch.log10(1 / (0.01 * fraction)), atol=1e-4)
    assert torch.allclose(scores["hole_l1"].double(), 0.1 * fraction, atol=1e-6)


def test_pixels_outside_the_hole_do_not_change_the_hole_metrics():
    original, hole = _images()
    g = torch.Generator().manual_seed(1)
    completed = torch.where(hole, torch.rand(original.shape, generator=g), original)
    before = hole_metrics(completed, original, hole)
    damaged = torch.where(hole, completed, torch.rand(original.shape, generator=g))  # known pixels all wrong
    after = hole_metrics(damaged, original, hole)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    # ... while the whole-image scores do see them
    assert not torch.allclose(mean_l1(completed, original), mean_l1(damaged, original))


def test_hole_l1_relates_to_the_whole_image_l1_by_the_hole_fraction():
    original, hole = _images()
    completed = torch.where(hole, torch.rand(original.shape, generator=torch.Generator().manual_seed(2)), original)
    fraction = hole.float().flatten(1).mean(1)
    assert torch.allclose(hole_metrics(completed, original, hole)["hole_l1"] * fraction,
                          mean_l1(completed, original), atol=1e-6)


def test_hole_ssim_over_the_whole_image_is_ssim_and_follows_the_luminance_term():
    a, b = torch.full((1, 1, 16, 16), 0.2), torch.full((1, 1, 16, 16), 0.6)
    everything = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    assert hole_metrics(b, a, everything)["hole_ssim"].item() == pytest.approx(expected, rel=1e-5)
    original, _ = _images()
    noisy = (original + 0.1 * torch.randn(original.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert torch.allclose(hole_metrics(noisy, original, torch.ones(2, 1, 32, 32, dtype=torch.bool))["hole_ssim"],
                          ssim(noisy, original), atol=1e-6)


def test_hole_ssim_averages_the_windows_centred_in_the_hole():
    original, hole = _images()
    g = torch.Generator().manual_seed(4)
    completed = torch.where(hole, torch.rand(original.shape, generator=g), original)
    index = ssim_map(completed, original)  # (2, 3, 22, 22): entry (i, j) is centred on pixel (i + 5, j + 5)
    centres = hole[:, :, 5:27, 5:27].expand_as(index)
    expected = torch.stack([index[i][centres[i]].mean() for i in range(2)]).float()
    assert torch.allclose(hole_metrics(completed, original, hole)["hole_ssim"], expected, atol=1e-6)


def test_empty_and_border_only_holes_score_nan_where_undefined():
    original, _ = _images()
    hole = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    hole[1, :, :3, :] = True  # only within 5 px of the border: no SSIM window is centred there
    scores = hole_metrics(original + 0.1 * hole, original, hole)
    assert all(math.isnan(scores[k][0].item()) for k in scores)  # empty hole
    assert scores["hole_l1"][1].item() == pytest.approx(0.1, abs=1e-6) and math.isnan(scores["hole_ssim"][1].item())
    with pytest.raises(ValueError, match="holes"):
        hole_metrics(original, original, hole[:, :, :16])
