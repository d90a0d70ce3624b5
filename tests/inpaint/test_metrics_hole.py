"""Hole-only metrics and the evaluation holes on hand cases."""

import math

import pytest
import torch

from pixelssl.inpaint.evaluate import (
    HOLE_KINDS,
    evaluate_fillers,
    evaluation_holes,
    format_table,
    large_rect_holes,
    opencv_filler,
)
from pixelssl.inpaint.masks import sample_training_masks
from pixelssl.inpaint.metrics import MSE_FLOOR, hole_metrics, mean_l1, ssim, ssim_map


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


def test_large_holes_have_seeded_sides_in_range():
    holes = evaluation_holes(64, 256, "large", seed=3)
    assert torch.equal(holes, evaluation_holes(64, 256, "large", seed=3))
    assert not torch.equal(holes, evaluation_holes(64, 256, "large", seed=4))
    rows, cols = holes.any(dim=3).sum(dim=(1, 2)), holes.any(dim=2).sum(dim=(1, 2))
    assert int(rows.min()) >= 96 and int(rows.max()) <= 128 and int(cols.min()) >= 96 and int(cols.max()) <= 128
    assert torch.equal(holes.sum(dim=(1, 2, 3)), rows * cols)  # one filled rectangle each
    assert len({int(r) for r in rows}) > 10  # sides vary per image
    with pytest.raises(ValueError):
        large_rect_holes(2, 64, torch.Generator(), 40, 80)


def test_freeform_holes_are_seeded_strokes_and_training_kinds_are_unchanged():
    strokes = evaluation_holes(16, 128, "freeform", seed=0)
    assert strokes.dtype == torch.bool and strokes.shape == (16, 1, 128, 128)
    assert torch.equal(strokes, evaluation_holes(16, 128, "freeform", seed=0))
    covered = strokes.float().mean(dim=(1, 2, 3))
    assert bool((covered > 0).all()) and bool((covered < 0.5).all())
    expected = sample_training_masks(4, 64, 64, "rect", 32, 8, torch.Generator().manual_seed(5))[1] > 0
    assert torch.equal(evaluation_holes(4, 64, "rect", seed=5), expected)  # `inpaint eval`'s holes as before
    assert set(HOLE_KINDS) >= {"rect", "stroke", "mixed", "large", "freeform"}
    with pytest.raises(ValueError, match="unknown hole kind"):
        evaluation_holes(2, 64, "circles", 0)


def test_evaluate_fillers_reports_hole_and_whole_metrics_and_per_image_values():
    g = torch.Generator().manual_seed(6)
    images = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    holes = evaluation_holes(3, 32, "large", seed=0)
    oracle = lambda batch, hole: batch  # noqa: E731  (fills with the truth)
    results = evaluate_fillers({"oracle": oracle, "telea": opencv_filler("telea")}, images, holes, batch_size=2,
                               per_image=("hole_psnr",))
    assert results["oracle"]["hole_l1"] == 0 and results["oracle"]["hole_psnr"] == pytest.approx(100.0)
    assert results["oracle"]["hole_ssim"] == pytest.approx(1.0) and results["oracle"]["ssim"] == pytest.approx(1.0)
    assert len(results["telea"]["per_image"]["hole_psnr"]) == 3
    assert results["telea"]["hole_psnr"] < results["telea"]["psnr"]  # the known pixels flatter the whole image
    assert results["telea"]["hole_l1"] > results["telea"]["l1"]
    assert "hole PSNR (dB)" in format_table(results)
