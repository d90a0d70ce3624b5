"""Two random views of one image, each with its geometry: crop box in source-image coordinates and flip flag.
``TwoViews`` is the transform for one's own dataset (an image in, the sample a method takes out), ``collate_views``
its batch.

Boxes follow PixPro's release (docs/methods.md): a crop with top-left pixel (left, top) and size
(w, h) in a W x H image has box ``(left / (W - 1), top / (H - 1), (left + w - 1) / (W - 1), (top + h - 1) / (H - 1))``.
The box is stored unflipped; the flip flag tells ``dense.geometry`` to mirror the cell order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from pixelssl.data.augment import build_augment


@dataclass
class View:
    image: Tensor  # (3, size, size) uint8
    box: Tensor  # (4,) float32, normalised (x0, y0, x1, y1)
    flipped: bool


def crop_box(top: int, left: int, height: int, width: int, image_h: int, image_w: int) -> Tensor:
    """Normalised box of a crop (inclusive pixel indices over size - 1, as PixPro's release)."""
    sx = max(image_w - 1, 1)
    sy = max(image_h - 1, 1)
    return torch.tensor(
        [left / sx, top / sy, (left + width - 1) / sx, (top + height - 1) / sy], dtype=torch.float32
    )


def boxes_overlap(box1: Tensor, box2: Tensor) -> bool:
    """Whether two boxes share an area (touching edges do not count)."""
    return bool(
        min(box1[2], box2[2]) > max(box1[0], box2[0]) and min(box1[3], box2[3]) > max(box1[1], box2[1])
    )


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_resized_crop_params(
    image_h: int, image_w: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator, attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Inception-style crop (area fraction in ``scale``, log-uniform aspect ratio in ``ratio``): (top, left, h, w).

    Same distribution as torchvision's RandomResizedCrop, but drawn from an explicit generator so a sample's
    views depend only on its seed (exact resume, any number of loader workers).
    """
    area = image_h * image_w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, *log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= image_w and 0 < h <= image_h:
            top = int(torch.randint(0, image_h - h + 1, (), generator=generator))
            left = int(torch.randint(0, image_w - w + 1, (), generator=generator))
            return top, left, h, w
    # Fallback: central crop at the nearest allowed aspect ratio.
    in_ratio = image_w / image_h
    if in_ratio < ratio[0]:
        w, h = image_w, int(round(image_w / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = image_h, int(round(image_h * ratio[1]))
    else:
        w, h = image_w, image_h
    return (image_h - h) // 2, (image_w - w) // 2, h, w


@dataclass(frozen=True)
class CropSpec:
    """Where one view comes from: a (top, left, height, width) crop of the source image, maybe flipped."""

    top: int
    left: int
    height: int
    width: int
    flipped: bool

    def box(self, image_h: int, image_w: int) -> Tensor:
        return crop_box(self.top, self.left, self.height, self.width, image_h, image_w)

    def as_row(self) -> list[int]:
        """(top, left, height, width, flipped) as ints, how the crops travel with a batch for device decoding."""
        return [self.top, self.left, self.height, self.width, int(self.flipped)]


def render_view(image: Tensor, spec: CropSpec, size: int) -> Tensor:
    """Crop a (3, H, W) uint8 image as ``spec`` says, resize to (size, size) (bilinear, antialiased), maybe flip.

    The one resize used for every view, on the CPU in loader workers or on the device after decoding there.
    """
    crop = TF.resized_crop(image, spec.top, spec.left, spec.height, spec.width, [size, size],
                           interpolation=InterpolationMode.BILINEAR, antialias=True)
    return TF.horizontal_flip(crop) if spec.flipped else crop


class TwoViewSampler:
    """Draws two random-resized, randomly flipped crops of an image with their boxes.

    With ``require_overlap`` the pair is redrawn (up to ``max_resample`` times) until the crops overlap,
    which PixCon's matching needs; the last pair is kept if none overlaps. The crops depend only on the image
    size and the generator (``draw``), so they can be drawn before an image is decoded.
    """

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_prob: float = 0.5, require_overlap: bool = False, max_resample: int = 20,
    ) -> None:
        self.size = size
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip_prob = flip_prob
        self.require_overlap = require_overlap
        self.max_resample = max_resample

    def spec(self, image_h: int, image_w: int, generator: torch.Generator) -> CropSpec:
        """One view's crop and flip for an image of this size."""
        top, left, h, w = random_resized_crop_params(image_h, image_w, self.scale, self.ratio, generator)
        flipped = bool(torch.rand((), generator=generator) < self.flip_prob)
        return CropSpec(top, left, h, w, flipped)

    def draw(self, image_h: int, image_w: int, generator: torch.Generator) -> tuple[CropSpec, CropSpec]:
        """Both views' crops (overlapping when ``require_overlap``), from the image size alone."""
        tries = self.max_resample if self.require_overlap else 1
        for _ in range(tries):
            first, second = self.spec(image_h, image_w, generator), self.spec(image_h, image_w, generator)
            if not self.require_overlap or boxes_overlap(first.box(image_h, image_w), second.box(image_h, image_w)):
                break
        return first, second

    def view(self, image: Tensor, generator: torch.Generator) -> View:
        """One crop of a (3, H, W) uint8 image, resized to (size, size), maybe flipped."""
        _, image_h, image_w = image.shape
        return self.render(image, self.spec(image_h, image_w, generator))

    def render(self, image: Tensor, spec: CropSpec) -> View:
        """The view ``spec`` describes, with its box."""
        _, image_h, image_w = image.shape
        return View(render_view(image, spec, self.size), spec.box(image_h, image_w), spec.flipped)

    def __call__(self, image: Tensor, generator: torch.Generator) -> tuple[View, View]:
        _, image_h, image_w = image.shape
        first, second = self.draw(image_h, image_w, generator)
        return self.render(image, first), self.render(image, second)


def as_uint8_image(image: Any) -> Tensor:
    """A (3, H, W) uint8 tensor from a PIL image (any mode), an (H, W[, C]) uint8 array, or a (C, H, W) tensor
    (uint8, or float in [0, 1]); one channel is repeated to three."""
    if isinstance(image, Image.Image):
        return TF.pil_to_tensor(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image if image.ndim == 3 else image[..., None])).permute(2, 0, 1)
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise TypeError(f"expected a PIL image, an (H, W, C) array or a (C, H, W) tensor with 1 or 3 channels, got "
                        f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image


class TwoViews:
    """A transform for your own dataset: one image -> both views with their geometry, the sample every method takes.

    ``TwoViews(224)(image)`` gives ``view1`` / ``view2`` (3, size, size) float32, photometrically augmented (BYOL's
    asymmetric recipe by default) and ImageNet-normalised; ``box1`` / ``box2`` (4,) float32, each crop's box in the
    source image (normalised, PixPro's convention); ``flip1`` / ``flip2`` bool. ``collate_views`` stacks samples into
    the batch ``method(batch)`` reads.

        >>> data = torchvision.datasets.ImageFolder("images/", transform=TwoViews(224))
        >>> loader = DataLoader(data, batch_size=64, shuffle=True, drop_last=True, collate_fn=collate_views)
        >>> loss = method(next(iter(loader)))["loss"]

    The crops are drawn from ``generator`` when one is given (a sample's views then depend on it alone), else from
    torch's global RNG, as the photometric steps always are. ``augment`` is ``"byol"``, ``"none"`` (normalisation
    only) or a pair of callables (uint8 (3, h, w) -> float (3, h, w)), one per view.
    """

    def __init__(self, size: int = 224, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_prob: float = 0.5, require_overlap: bool = False,
                 max_resample: int = 20, augment: str | Sequence[Callable[[Tensor], Tensor]] = "byol") -> None:
        self.sampler = TwoViewSampler(size, scale, ratio, flip_prob, require_overlap, max_resample)
        self.augment = (build_augment(augment, 0), build_augment(augment, 1)) if isinstance(augment, str) else \
            tuple(augment)
        if len(self.augment) != 2:
            raise ValueError(f"augment: give one callable per view, got {len(self.augment)}")

    def __call__(self, image: Any, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        first, second = self.sampler(as_uint8_image(image), generator)
        return {"view1": self.augment[0](first.image), "view2": self.augment[1](second.image),
                "box1": first.box, "box2": second.box,
                "flip1": torch.tensor(first.flipped), "flip2": torch.tensor(second.flipped)}


def collate_views(samples: Sequence[dict[str, Tensor] | tuple]) -> dict[str, Tensor]:
    """The batch of ``TwoViews`` samples, a ``DataLoader``'s ``collate_fn``: each key stacked (``view1``
    (B, 3, size, size), ``box1`` (B, 4), ``flip1`` (B,), ...). From a torchvision dataset's (sample, label) pairs
    it takes the samples."""
    if not samples:
        raise ValueError("collate_views: no samples")
    dicts = [sample[0] if isinstance(sample, (tuple, list)) else sample for sample in samples]
    return {key: torch.stack([torch.as_tensor(d[key]) for d in dicts]) for key in dicts[0]}
