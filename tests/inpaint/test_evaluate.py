"""inpaint.evaluate: the seeded evaluation holes of each kind, and fillers scored over the hole and the whole image."""

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
