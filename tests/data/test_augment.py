"""Photometric augmentation: BYOL recipe per view, reproducible from the global seed, geometry untouched."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from pixelssl.data import augment
from pixelssl.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SOLARIZE_THRESHOLD,
    adjust_hue,
    blur_kernel_size,
    build_augment,
    byol_augment,
    denormalize,
    gaussian_blur,
    no_augment,
    normalize,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Augmentation runs in single-threaded loader workers."""


def _random_image(h: int = 40, w: int = 56, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _mostly_white() -> torch.Tensor:
    """90% white, a black band: stays above the solarize threshold under any jitter unless solarized."""
    image = torch.full((3, 20, 20), 255, dtype=torch.uint8)
    image[:, :, :2] = 0
    return image


@pytest.mark.parametrize("view", [0, 1])
def test_byol_gives_float32_of_same_shape(view):
    out = byol_augment(view)(_random_image())
    assert out.dtype == torch.float32
    assert out.shape == (3, 40, 56)
    assert torch.isfinite(out).all()


def test_no_augment_is_exactly_imagenet_normalisation():
    image = _random_image()
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    expected = (image.float() / 255 - mean) / std
    torch.testing.assert_close(no_augment()(image), expected)


def test_normalize_accepts_uint8_and_unit_float_alike():
    image = _random_image()
    torch.testing.assert_close(normalize(image), normalize(image.float() / 255))
    torch.testing.assert_close(denormalize(normalize(image)), image.float() / 255)


@pytest.mark.parametrize("view", [0, 1])
def test_same_global_seed_gives_identical_output(view):
    image, transform = _random_image(), byol_augment(view)
    torch.manual_seed(123)
    first = transform(image)
    torch.manual_seed(123)
    second = transform(image)
    assert torch.equal(first, second)


def test_different_seeds_give_different_outputs():
    image, transform = _random_image(), byol_augment(1)
    outputs = []
    for seed in range(4):
        torch.manual_seed(seed)
        outputs.append(transform(image))
    assert all(not torch.equal(outputs[0], other) for other in outputs[1:])


def test_view0_always_blurred_view1_about_one_in_ten(monkeypatch):
    calls = []

    def counting_blur(image, kernel_size, sigma):
        calls.append(kernel_size)
        return gaussian_blur(image, kernel_size, sigma)

    monkeypatch.setattr(augment, "gaussian_blur", counting_blur)
    image, draws = _random_image(16, 16), 200
    for view in (0, 1):
        calls.clear()
        transform = byol_augment(view)
        for _ in range(draws):
            transform(image)
        if view == 0:
            assert len(calls) == draws
        else:
            assert 5 <= len(calls) <= 40  # p = 0.1: expected 20, sd ~4.2


def test_solarize_never_on_view0_about_one_in_five_on_view1():
    image, draws = _mostly_white(), 200
    for view, low, high in ((0, 0, 0), (1, 20, 65)):  # view 1: p = 0.2, expected 40, sd ~5.7
        transform = byol_augment(view)
        # Solarize maps every value >= threshold below it, so a solarized output has no bright pixel left.
        solarized = sum(bool(denormalize(transform(image)).max() < SOLARIZE_THRESHOLD) for _ in range(draws))
        assert low <= solarized <= high, (view, solarized)


def test_byol_keeps_geometry():
    image = torch.zeros((3, 32, 48), dtype=torch.uint8)
    image[:, :, 24:] = 255  # dark left half, bright right half
    transform = byol_augment(0)  # view 0 never solarizes, so brightness order survives every step
    for _ in range(20):
        out = denormalize(transform(image)).mean(0)
        assert out.shape == (32, 48)
        assert out[:, 30:].mean() > out[:, :18].mean() + 0.1


def test_fast_hue_matches_torchvision():
    image = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    image[:, :4, :4] = 0.5  # grey pixels (no chroma)
    image[1, 8:12, 8:12] = image[0, 8:12, 8:12]  # ties between channels
    for factor in (-0.5, -0.1, 0.03, 0.25):
        torch.testing.assert_close(adjust_hue(image, factor), TF.adjust_hue(image, factor), atol=1e-5, rtol=0)


def test_separable_blur_matches_torchvision():
    image = torch.rand(3, 30, 44, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        gaussian_blur(image, (7, 5), 1.3), TF.gaussian_blur(image, [7, 5], [1.3, 1.3]), atol=1e-5, rtol=0
    )


def test_blur_kernel_is_about_a_tenth_of_the_side_and_odd():
    assert blur_kernel_size(224) == 23  # BYOL's kernel at 224 px
    assert blur_kernel_size(96) == 9
    assert all(blur_kernel_size(side) % 2 == 1 and blur_kernel_size(side) < side for side in range(4, 300))


def test_build_augment_by_name():
    image = _random_image()
    torch.testing.assert_close(build_augment("none", 0)(image), normalize(image))
    assert build_augment("byol", 1)(image).shape == image.shape
    with pytest.raises(ValueError, match="data.augment"):
        build_augment("simclr", 0)
