"""Built-in procedural scenes: the default pre-training images and a labelled segmentation set for the demo.

Scene ``i`` of a ``(seed, split)`` is rendered from its own RNG, ``numpy.random.default_rng([seed, split, i])``,
so it is the same in every process and run, needs no files, and ``val`` scenes differ from ``train`` ones.

What is fixed per class (the same table for every seed and split; label 0 is the background):

- a **shape family**: disc, rectangle, triangle, star, ring, blob, hexagon, cross, crescent, diamond, ellipse,
  half-disc (classes 1..12 in that order);
- a **texture**: a two-colour pattern such as stripes of a class-specific orientation and period, checker, dots,
  2-pixel grain, grid lines, concentric rings, waves (class 12 is smooth, its texture is only a soft ramp);
- a **colour distribution**: hue around a class centre ``(c - 1) / K`` with a wide spread (``hue_spread``, default
  +-0.3 of the colour wheel), so at K = 6 every hue is plausible for three or four classes; saturation and
  value ranges are shared by all classes.

What varies per scene and object: the background's two colours (any hue, so it can match an object) blended by
low-frequency noise; 4-8 objects of uniformly drawn classes painted in order (later ones occlude earlier ones),
each with its own position (may be cut by the border), log-uniform size (some small), rotation, aspect jitter,
colour draw, texture phase, +-10 degree orientation and +-15% period jitter; then a smooth illumination gradient
and pixel noise over the whole image. Per-pixel colour is therefore a weak cue: telling classes apart needs the
local texture and shape context that dense self-supervised features should learn and random features lack.

Rendering is vectorised numpy over each object's bounding box (~1-2 ms per 128 x 128 scene on one core, see
``benchmarks/synthetic_speed.py``). Texture periods and object sizes scale with ``size``.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SPLITS = {"train": 0, "val": 1, "test": 2}
IGNORE_INDEX = 255
REFERENCE_SIZE = 128  # texture periods below are in pixels at this image size

Array = np.ndarray
ShapeFn = Callable[[Array, Array, np.random.Generator], Array]


# ----------------------------------------------------------------------------------------------- shape families
# Each takes object-local coordinates (u, v) in units of the object's radius (rotation and aspect already applied)
# and returns the inside mask; the per-instance RNG drives shape-specific variation (blob harmonics, proportions).

def _disc(u: Array, v: Array, rng: np.random.Generator) -> Array:
    return u * u + v * v <= 1.0


def _rectangle(u: Array, v: Array, rng: np.random.Generator) -> Array:
    return (np.abs(u) <= 0.95) & (np.abs(v) <= rng.uniform(0.45, 0.8))


def _triangle(u: Array, v: Array, rng: np.random.Generator) -> Array:  # equilateral, inscribed in the unit circle
    return (v >= -0.5) & (math.sqrt(3) * u + v <= 1.0) & (-math.sqrt(3) * u + v <= 1.0)


def _unit_phase(u: Array, v: Array) -> tuple[Array, Array]:
    """Radius and e^(i phi) of each point: angular harmonics as complex powers, cheaper than arctan2 + cos."""
    rho = np.sqrt(u * u + v * v)
    return rho, (u + 1j * v) / np.maximum(rho, 1e-6)


def _star(u: Array, v: Array, rng: np.random.Generator) -> Array:  # five points
    rho, phase = _unit_phase(u, v)
    cos5 = (phase * phase * phase * phase * phase).real
    return rho <= 0.45 + 0.55 * np.maximum(0.5 + 0.5 * cos5, 0.0) ** 1.5  # |cos(2.5 phi)|^3


def _ring(u: Array, v: Array, rng: np.random.Generator) -> Array:
    rho2 = u * u + v * v
    return (rho2 <= 1.0) & (rho2 >= rng.uniform(0.45, 0.6) ** 2)


def _blob(u: Array, v: Array, rng: np.random.Generator) -> Array:  # random low harmonics of the radius
    rho, phase = _unit_phase(u, v)
    # radius(phi) = 0.78 + sum_k a_k cos(k phi + p_k), k = 2, 3, 5
    coef = rng.uniform(0.05, 0.15, 3) * np.exp(1j * rng.uniform(0, 2 * np.pi, 3))
    phase2 = phase * phase
    phase3 = phase2 * phase
    radius = 0.78 + (coef[0] * phase2 + coef[1] * phase3 + coef[2] * (phase3 * phase2)).real
    return rho <= radius


def _hexagon(u: Array, v: Array, rng: np.random.Generator) -> Array:
    apothem = math.sqrt(3) / 2
    slanted = (np.abs(apothem * u + 0.5 * v) <= apothem) & (np.abs(apothem * u - 0.5 * v) <= apothem)
    return (np.abs(v) <= apothem) & slanted


def _cross(u: Array, v: Array, rng: np.random.Generator) -> Array:
    arm = rng.uniform(0.28, 0.4)
    au, av = np.abs(u), np.abs(v)
    return ((au <= 1.0) & (av <= arm)) | ((au <= arm) & (av <= 1.0))


def _crescent(u: Array, v: Array, rng: np.random.Generator) -> Array:
    shift = rng.uniform(0.35, 0.55)
    return (u * u + v * v <= 1.0) & ((u - shift) ** 2 + v * v > 0.8**2)


def _diamond(u: Array, v: Array, rng: np.random.Generator) -> Array:
    return np.abs(u) + np.abs(v) / 0.65 <= 1.0


def _ellipse(u: Array, v: Array, rng: np.random.Generator) -> Array:
    return u * u + (v / rng.uniform(0.35, 0.5)) ** 2 <= 1.0


def _half_disc(u: Array, v: Array, rng: np.random.Generator) -> Array:
    return (u * u + v * v <= 1.0) & (v >= -0.15)


# ----------------------------------------------------------------------------------------------------- textures
# Each returns a pattern t in [0, 1] (0 = the object's base colour, 1 = its second colour) over a bounding box.
# (a, b) are pixel coordinates rotated by the texture angle and divided by the period, with a random phase;
# rho is the distance to the object centre in periods.

def _sharpen(wave: Array) -> Array:
    """Sine in [-1, 1] -> soft square wave in [0, 1] (crisper than a sine, still anti-aliased)."""
    return np.clip(0.5 + 1.5 * wave, 0.0, 1.0)


def _stripes(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:
    return _sharpen(np.sin(2 * np.pi * a))


def _checker(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:
    return ((np.floor(a) + np.floor(b)) % 2).astype(np.float32)


def _dots(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:
    fa, fb = a - np.floor(a) - 0.5, b - np.floor(b) - 0.5
    return (fa * fa + fb * fb <= 0.3**2).astype(np.float32)


def _grain(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:  # 2 x 2 pixel random grain
    h, w = a.shape
    coarse = rng.random(((h + 1) // 2, (w + 1) // 2), dtype=np.float32)
    return coarse.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]


def _grid(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:
    return ((a - np.floor(a) < 0.3) | (b - np.floor(b) < 0.3)).astype(np.float32)


def _rings(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:
    return _sharpen(np.sin(2 * np.pi * rho))


def _waves(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:
    return _sharpen(np.sin(2 * np.pi * (a + 0.35 * np.sin(2 * np.pi * b / 3))))


def _smooth(a: Array, b: Array, rho: Array, rng: np.random.Generator) -> Array:  # a gentle ramp, no pattern
    return np.clip(0.5 + 0.08 * (a - np.floor(a.mean())), 0.0, 1.0)


@dataclass(frozen=True)
class ObjectClass:
    """Appearance of one object class: shape family, texture, texture angle (degrees) and period (px at 128 px)."""

    shape: str
    texture: str
    angle: float
    period: float

    @property
    def name(self) -> str:
        return f"{self.shape}_{self.texture}"


SHAPES: dict[str, ShapeFn] = {
    "disc": _disc, "rectangle": _rectangle, "triangle": _triangle, "star": _star, "ring": _ring, "blob": _blob,
    "hexagon": _hexagon, "cross": _cross, "crescent": _crescent, "diamond": _diamond, "ellipse": _ellipse,
    "halfdisc": _half_disc,
}
TEXTURES = {
    "stripes": _stripes, "checker": _checker, "dots": _dots, "grain": _grain, "grid": _grid, "rings": _rings,
    "waves": _waves, "smooth": _smooth,
}
OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("disc", "stripes", 0, 6),
    ObjectClass("rectangle", "checker", 0, 10),
    ObjectClass("triangle", "dots", 0, 7),
    ObjectClass("star", "grain", 0, 2),
    ObjectClass("ring", "stripes", 45, 4),
    ObjectClass("blob", "grid", 0, 8),
    ObjectClass("hexagon", "rings", 0, 5),
    ObjectClass("cross", "waves", 90, 7),
    ObjectClass("crescent", "stripes", 135, 9),
    ObjectClass("diamond", "checker", 45, 6),
    ObjectClass("ellipse", "dots", 30, 11),
    ObjectClass("halfdisc", "smooth", 0, 8),
)
MAX_CLASSES = len(OBJECT_CLASSES)


def _interpolation_matrix(size: int, knots: int) -> Array:
    """(size, knots) linear-interpolation weights: ``M @ g`` upsamples a knots-vector to ``size`` samples."""
    position = np.linspace(0, knots - 1, size)
    lower = np.minimum(np.floor(position).astype(int), knots - 2)
    frac = position - lower
    matrix = np.zeros((size, knots), dtype=np.float32)
    matrix[np.arange(size), lower] = 1 - frac
    matrix[np.arange(size), lower + 1] = frac
    return matrix


@dataclass
class Scene:
    """One rendered scene: image (3, S, S) uint8, class map (S, S) uint8, instance map (S, S) int16 (-1 = none)."""

    image: Array
    label: Array
    instance: Array
    classes: list[int]  # class id of each painted object, in painting order


class SyntheticScenes:
    """Seeded procedural scenes that serve as an image source (``load``) and a segmentation dataset (``ds[i]``).

    ``num_classes`` (the attribute) is ``K + 1``: label 0 is the background, 1..K the object classes.
    """

    def __init__(
        self, num_images: int, size: int = 128, num_classes: int = 6, seed: int = 0, split: str = "train",
        objects: tuple[int, int] = (4, 8), object_scale: tuple[float, float] = (0.08, 0.4),
        hue_spread: float = 0.3, texture_contrast: tuple[float, float] = (0.35, 0.7),
        illumination: float = 0.25, noise: float = 3.0,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1 (got {num_images})")
        if size < 16:
            raise ValueError(f"size must be >= 16 (got {size})")
        if not 1 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be in 1..{MAX_CLASSES} (got {num_classes})")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
        if not 1 <= objects[0] <= objects[1]:
            raise ValueError(f"objects must be (min, max) with 1 <= min <= max (got {objects})")
        if not 0 < object_scale[0] <= object_scale[1]:
            raise ValueError(f"object_scale must be (min, max) with 0 < min <= max (got {object_scale})")
        self.num_images = num_images
        self.size = size
        self.num_object_classes = num_classes
        self.seed = seed
        self.split = split
        self.objects = (int(objects[0]), int(objects[1]))
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        self.hue_spread = hue_spread
        self.texture_contrast = (float(texture_contrast[0]), float(texture_contrast[1]))
        self.illumination = illumination
        self.noise = noise
        self.num_classes = num_classes + 1
        self.ignore_index = IGNORE_INDEX
        self.class_names = ["background"] + [c.name for c in OBJECT_CLASSES[:num_classes]]
        # Cached per size: low-frequency noise upsampling and the pixel grid.
        self._coarse = _interpolation_matrix(size, 4)
        self._fine = _interpolation_matrix(size, 9)
        self._axis = np.arange(size, dtype=np.float32)
        self._ramp = self._axis / size - 0.5
        # Pixel noise: one fixed tile per dataset, cropped at a random offset per scene (cheaper than drawing
        # 3 x S x S normals per scene); the +0.5 turns the final truncation to uint8 into rounding.
        tile_rng = np.random.default_rng([seed % 2**64, 1000 + SPLITS[split], size])
        self._noise = tile_rng.standard_normal((3, 2 * size, 2 * size), dtype=np.float32) * noise + 0.5

    def __len__(self) -> int:
        return self.num_images

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.num_images:
            raise IndexError(f"scene index {index} out of range for {self.num_images} scenes")
        return np.random.default_rng([self.seed % 2**64, SPLITS[self.split], index])

    # ---------------------------------------------------------------------------------------------- rendering
    def _background(self, rng: np.random.Generator) -> Array:
        """(3, S, S) float32 in [0, 1]: two random colours blended by two octaves of smooth noise."""
        coarse = self._coarse @ rng.random((4, 4), dtype=np.float32) @ self._coarse.T
        fine = self._fine @ rng.random((9, 9), dtype=np.float32) @ self._fine.T
        blend = np.clip(0.75 * coarse + 0.25 * fine, 0, 1)  # (S, S)
        first = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.3, 0.95))
        second = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.3, 0.95))
        first_a, second_a = np.array(first, np.float32)[:, None, None], np.array(second, np.float32)[:, None, None]
        return first_a + (second_a - first_a) * blend[None]

    def _object_colours(self, cls: int, rng: np.random.Generator) -> tuple[Array, Array]:
        """Base and second colour (3,) of one object of class ``cls`` (1..K): hue near the class centre, wide spread."""
        hue = ((cls - 1) / self.num_object_classes + rng.uniform(-self.hue_spread, self.hue_spread)) % 1.0
        saturation, value = rng.uniform(0.25, 0.85), rng.uniform(0.45, 1.0)
        base = np.array(colorsys.hsv_to_rgb(hue, saturation, value), np.float32)
        second_hue = (hue + rng.uniform(-0.05, 0.05)) % 1.0
        dark = 1.0 - rng.uniform(*self.texture_contrast)
        second = np.array(colorsys.hsv_to_rgb(second_hue, saturation, value * dark), np.float32)
        return base, second

    def _paint_object(
        self, canvas: Array, label: Array, instance: Array, number: int, cls: int, rng: np.random.Generator
    ) -> None:
        """Paint object ``number`` of class ``cls`` over the canvas, class map and instance map, in place."""
        spec, size, scale = OBJECT_CLASSES[cls - 1], self.size, self.size / REFERENCE_SIZE
        radius = size * math.exp(rng.uniform(math.log(self.object_scale[0]), math.log(self.object_scale[1])))
        cx, cy = rng.uniform(0, size), rng.uniform(0, size)
        rotation = rng.uniform(0, 2 * math.pi)
        stretch = math.exp(rng.uniform(-0.2, 0.2))  # aspect jitter: u scaled up, v down
        extent = radius * 1.25
        x0, x1 = max(int(cx - extent), 0), min(int(math.ceil(cx + extent)) + 1, size)
        y0, y1 = max(int(cy - extent), 0), min(int(math.ceil(cy + extent)) + 1, size)
        xs = self._axis[x0:x1][None, :]  # (1, w)
        ys = self._axis[y0:y1][:, None]  # (h, 1)
        dx, dy = xs - cx, ys - cy
        cos, sin = math.cos(rotation), math.sin(rotation)
        u = (cos * dx + sin * dy) / (radius * stretch)  # (h, w)
        v = (-sin * dx + cos * dy) * stretch / radius
        mask = SHAPES[spec.shape](u, v, rng)
        if not mask.any():
            return
        angle = math.radians(spec.angle + rng.uniform(-10, 10))
        period = max(spec.period * scale * math.exp(rng.uniform(-0.15, 0.15)), 2.0)
        ca, sa = math.cos(angle), math.sin(angle)
        a = (ca * xs + sa * ys) / period + rng.random()
        b = (-sa * xs + ca * ys) / period + rng.random()
        rho = np.sqrt(dx * dx + dy * dy) / period
        pattern = TEXTURES[spec.texture](a, b, rho, rng)  # (h, w) in [0, 1]
        base, second = self._object_colours(cls, rng)
        colour = base[:, None, None] + (second - base)[:, None, None] * pattern[None]  # (3, h, w)
        region = canvas[:, y0:y1, x0:x1]
        np.copyto(region, colour, where=mask[None])
        label[y0:y1, x0:x1][mask] = cls
        instance[y0:y1, x0:x1][mask] = number

    def render(self, index: int) -> Scene:
        """Render scene ``index`` (deterministic per seed, split and index)."""
        rng = self._rng(index)
        size = self.size
        canvas = self._background(rng)
        label = np.zeros((size, size), dtype=np.uint8)
        instance = np.full((size, size), -1, dtype=np.int16)
        count = int(rng.integers(self.objects[0], self.objects[1] + 1))
        classes = [int(c) for c in rng.integers(1, self.num_object_classes + 1, size=count)]
        for number, cls in enumerate(classes):
            self._paint_object(canvas, label, instance, number, cls, rng)
        # Illumination: a smooth multiplicative gradient, so a class's colour also drifts across the image.
        gx, gy = rng.uniform(-self.illumination, self.illumination, 2) * 255.0
        canvas *= (255.0 + gx * self._ramp[None, :] + gy * self._ramp[:, None])[None]
        ox, oy = rng.integers(0, size, 2)
        canvas += self._noise[:, oy:oy + size, ox:ox + size]
        np.clip(canvas, 0, 255, out=canvas)
        image = canvas.astype(np.uint8)
        return Scene(image, label, instance, classes)

    # --------------------------------------------------------------------------------------- the two protocols
    def load(self, index: int) -> Tensor:
        """Scene ``index`` as a uint8 (3, size, size) RGB image (image-source protocol)."""
        return torch.from_numpy(self.render(index).image)

    def describe(self, index: int) -> str:
        """A readable identifier such as ``synthetic:train:17``."""
        return f"synthetic:{self.split}:{index}"

    def name(self, index: int) -> str:
        """Sample name (segmentation-dataset protocol); same as ``describe``."""
        return self.describe(index)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Image uint8 (3, S, S) and label int64 (S, S) with 0 = background, 1..K = object classes."""
        scene = self.render(index)
        return torch.from_numpy(scene.image), torch.from_numpy(scene.label.astype(np.int64))

    def instances(self, index: int) -> list[tuple[int, Tensor]]:
        """Visible objects of scene ``index``: (class id, bool mask (S, S)) in painting order, hidden ones dropped."""
        scene = self.render(index)
        found = []
        for number, cls in enumerate(scene.classes):
            mask = scene.instance == number
            if mask.any():
                found.append((cls, torch.from_numpy(mask)))
        return found
