"""Batched on-device photometric augmentation: the CPU recipe's parameters per image, the same outputs, the same
distribution, and batches that still depend only on (seed, step)."""

from __future__ import annotations

import math

import pytest
import torch

from pixelssl.data.augment import build_augment, byol_augment, denormalize
from pixelssl.data.device_augment import (
    BLUR,
    GRAY,
    JITTER,
    SOLARIZE,
    BatchedPhotometric,
    build_param_samplers,
    sample_byol_params,
)
from pixelssl.data.loader import TwoViewDataset, collate_pairs
from pixelssl.data.synthetic import SyntheticScenes
from pixelssl.data.views import TwoViewSampler


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Batched augmentation of tiny images: one thread."""


def _images(n: int, h: int = 20, w: int = 24) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _cpu_and_params(images: torch.Tensor, view: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU-path outputs and sampled parameter rows, image i seeded with seed + i on both paths."""
    outputs, rows = [], []
    transform = byol_augment(view)
    for i, image in enumerate(images):
        torch.manual_seed(seed + i)
        outputs.append(transform(image))
        torch.manual_seed(seed + i)
        rows.append(sample_byol_params(view))
    return torch.stack(outputs), torch.stack(rows)


@pytest.mark.parametrize("view", [0, 1])
def test_same_seed_gives_the_cpu_output_per_image(view):
    images = _images(64)
    expected, rows = _cpu_and_params(images, view, seed=100)
    # every op is exercised at least once in this sample (solarize only exists for view 1)
    assert rows[:, JITTER].any() and rows[:, GRAY].any() and rows[:, BLUR].any() and (view == 0 or rows[:, SOLARIZE].any())
    got = BatchedPhotometric("byol", view)(images, rows)
    assert got.dtype == torch.float32 and got.shape == images.shape
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)


def test_none_is_normalisation_only():
    images = _images(3)
    rows = torch.zeros(3, 0, dtype=torch.float64)
    expected = torch.stack([build_augment("none", 0)(image) for image in images])
    torch.testing.assert_close(BatchedPhotometric("none", 0)(images, rows), expected)


def _statistics(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image statistics of normalised views (N, 3, H, W), each moved mainly by one or two ops: (N,) each."""
    x = denormalize(x)
    r, g, b = x.mean(dim=(2, 3)).unbind(1)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    return {
        "brightness": x.mean(dim=(1, 2, 3)),  # brightness, solarize
        "hue": torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b),  # hue angle of the mean colour: hue, grayscale
        "saturation": ((x.amax(1) - x.amin(1)) / x.amax(1).clamp(min=1e-3)).mean(dim=(1, 2)),  # saturation, grayscale
        "contrast": luma.std(dim=(1, 2)),  # contrast, blur
        "sharpness": (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3)),  # blur
    }


def _ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the empirical CDFs."""
    grid = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, grid, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, grid, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


@pytest.mark.parametrize("view", [0, 1])
def test_distribution_matches_the_cpu_path_with_independent_draws(view):
    # Warm and cool halves, stripes and ramps: every op moves one of the statistics.
    ramp = torch.linspace(0.2, 0.9, 16)
    stripes = ((torch.arange(16)[:, None] + torch.arange(16)) % 4 < 2).float()
    image = torch.stack([0.9 * ramp[None, :].expand(16, 16), 0.3 + 0.4 * stripes, 0.2 + 0.1 * ramp[:, None].expand(16, 16)])
    image = (image * 255).round().to(torch.uint8)
    n = 1500
    transform = byol_augment(view)
    torch.manual_seed(1)
    cpu = torch.stack([transform(image) for _ in range(n)])
    torch.manual_seed(2)  # independent draws for the batched path
    rows = torch.stack([sample_byol_params(view) for _ in range(n)])
    batched = BatchedPhotometric("byol", view)(image.expand(n, -1, -1, -1), rows)
    critical = 2.23 * (2 / n) ** 0.5  # two-sample KS distance at alpha = 1e-4
    expected, got = _statistics(cpu), _statistics(batched)
    for name in expected:
        assert _ks_statistic(expected[name], got[name]) < critical, name
    for column, p in ((JITTER, 0.8), (GRAY, 0.2), (BLUR, (1.0, 0.1)[view]), (SOLARIZE, (0.0, 0.2)[view])):
        assert abs(float(rows[:, column].mean()) - p) < 0.045, column  # 3.5 sd at p = 0.5


def test_loader_ships_uint8_views_whose_parameters_reproduce_the_cpu_views():
    source, views = SyntheticScenes(4, size=64), TwoViewSampler(size=32)
    augment = (build_augment("byol", 0), build_augment("byol", 1))
    cpu = TwoViewDataset(source, views, augment, seed=7)
    deferred = TwoViewDataset(source, views, augment, seed=7, param_samplers=build_param_samplers("byol"))
    items = [(1, 2), (0, 3), (1, 0)]
    expected = collate_pairs([cpu[item] for item in items])
    batch = collate_pairs([deferred[item] for item in items])
    assert batch["view1"].dtype == torch.uint8 and batch["photo1"].shape == (3, 13)
    for key in ("box1", "box2", "flip1", "flip2"):
        assert torch.equal(batch[key], expected[key])
    for index, key in enumerate(("view1", "view2")):
        got = BatchedPhotometric("byol", index)(batch[key], batch[f"photo{index + 1}"])
        torch.testing.assert_close(got, expected[key], atol=2e-5, rtol=0)


def test_pretraining_with_device_augmentation_follows_the_loader_path(tmp_path):
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.engine.logger import read_metrics
    from pixelssl.train.loop import pretrain

    common = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=32",
              "data.synthetic.num_images=8", "data.synthetic.size=64", "data.num_workers=0", "train.batch_size=4",
              "train.optimizer=sgd", "train.max_steps=2", "train.log_every=1", "train.tensorboard=false",
              "train.progress=false", "train.amp=fp32", "method.name=moco", f"run.output_dir={tmp_path}"]
    losses = {}
    for flag in ("false", "true"):
        run = pretrain(load_config(PretrainConfig, overrides=[*common, f"data.device_augment={flag}", f"run.name={flag}"]))
        losses[flag] = [r["loss"] for r in read_metrics(run.run_dir / "metrics.jsonl")]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-3)
