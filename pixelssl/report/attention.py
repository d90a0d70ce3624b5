"""Pictures of what dense features learned: torch / numpy in, RGB uint8 arrays (H, W, 3) out, pixel-exact on
fixed input (numpy + PIL drawing, matplotlib colormaps; no figure state).

- self-attention maps (PixCon paper's figure): the cosine of a query cell's feature with every cell of the same
  image, upsampled and overlaid on it;
- PixPro PPM propagation weights of a query cell, ``max(cos, 0) ** gamma`` (``dense.propagation``);
- matches between two views: every view-1 cell joined to its matched view-2 cell (feature argmax or geometric
  nearest, ``dense.matching``), coloured by the pair's cosine, solid inside the views' intersection, dotted outside;
- PixCon-SR semantic weights of each query cell (``dense.matching.semantic_weights``);
- PCA of the dense features to RGB.

The ``*_maps`` / ``view_matches`` / ``pca_rgb`` functions compute; the ``*_figure`` functions draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from pixelssl.dense.matching import cells_in_other_view, feature_argmax, nearest_cell, semantic_weights
from pixelssl.dense.propagation import cosine_similarity_matrix, propagation_weights

PANEL = 192  # side of one square panel in pixels
GAP = 4  # white space between panels
QUERY_COLOURS = ((0, 229, 255), (255, 64, 200), (124, 255, 0), (255, 170, 0), (255, 255, 255))


# ------------------------------------------------------------------------------------------------- computing
def query_cells(points: Sequence[tuple[float, float]], shape: tuple[int, int]) -> Tensor:
    """Flat indices (Q,) of the cells of an (H, W) map under points given as (x, y) fractions of the image in [0, 1]."""
    h, w = shape
    cells = []
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"query point ({x}, {y}) is outside the image: give (x, y) fractions in [0, 1]")
        cells.append(min(int(y * h), h - 1) * w + min(int(x * w), w - 1))
    return torch.tensor(cells, dtype=torch.long)


def _check_map(features: Tensor) -> Tensor:
    if features.dim() != 3:
        raise ValueError(f"expected one dense feature map (C, H, W), got shape {tuple(features.shape)}")
    return features.detach().float().cpu()


def self_similarity_maps(features: Tensor, cells: Tensor) -> Tensor:
    """Cosine similarity of each query cell's feature with every cell of the same map: (C, H, W) -> (Q, H, W)."""
    f = _check_map(features)
    c, h, w = f.shape
    flat = f.reshape(1, c, h * w)
    return cosine_similarity_matrix(flat[:, :, cells], flat)[0].reshape(-1, h, w)


def ppm_weight_maps(features: Tensor, cells: Tensor, gamma: float = 2.0) -> Tensor:
    """PixPro PPM weight of every cell for each query cell, ``max(cos, 0) ** gamma``: (C, H, W) -> (Q, H, W) in [0, 1].

    ``features`` are what PPM sees (the projector output ``x``); the rows are those ``pixel_propagation`` sums with.
    """
    f = _check_map(features)
    c, h, w = f.shape
    return propagation_weights(f.reshape(1, c, h * w), gamma)[0, cells].reshape(-1, h, w)


def pca_rgb(features: Tensor) -> np.ndarray:
    """The first three principal components of a (C, H, W) map's cells as RGB, each min-max scaled: (H, W, 3) in [0, 1].

    Component signs are fixed (the cell of largest magnitude is positive) so the colours do not flip between calls;
    components a rank-deficient map lacks are 0.5 (grey).
    """
    f = _check_map(features).double()
    c, h, w = f.shape
    cells = f.reshape(c, h * w).T  # (N, C)
    centred = cells - cells.mean(dim=0, keepdim=True)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    out = np.full((h * w, 3), 0.5)
    for k in range(min(3, vh.shape[0])):
        if singular[k] <= 1e-9 * max(float(singular[0]), 1e-300):
            break
        component = centred @ vh[k]
        component = component * torch.sign(component[component.abs().argmax()])
        span = component.max() - component.min()
        out[:, k] = ((component - component.min()) / span).numpy()
    return out.reshape(h, w, 3).astype(np.float32)


@dataclass(frozen=True)
class Matches:
    """Each view-1 cell's matched view-2 cell, the pair's cosine, and whether the view-1 cell lies in view 2's box."""

    index: Tensor  # (N1,) long, flat view-2 cell
    similarity: Tensor  # (N1,) cosine of the pair
    inside: Tensor  # (N1,) bool
    shape1: tuple[int, int]
    shape2: tuple[int, int]
    by: str  # "feature" (argmax of cosine, DenseCL / PixCon-Sim) or "coordinate" (nearest centre, PixCon-Coord)


def view_matches(feat1: Tensor, feat2: Tensor, box1: Tensor, flip1: bool, box2: Tensor, flip2: bool,
                 by: str = "feature") -> Matches:
    """Matches from the cells of view 1 (map ``feat1``, box, flip) to those of view 2, as the methods compute them."""
    f1, f2 = _check_map(feat1), _check_map(feat2)
    shape1, shape2 = tuple(f1.shape[1:]), tuple(f2.shape[1:])
    q, k = f1.flatten(1)[None], f2.flatten(1)[None]
    b1, b2 = box1.reshape(1, 4).float(), box2.reshape(1, 4).float()
    g1, g2 = torch.tensor([bool(flip1)]), torch.tensor([bool(flip2)])
    inside = cells_in_other_view(b1, g1, shape1, b2)[0]
    if by == "feature":
        similarity, index = feature_argmax(q, k)
    elif by == "coordinate":
        index, _ = nearest_cell(b1, g1, shape1, b2, g2, shape2)
        similarity = cosine_similarity_matrix(q, k).gather(2, index[:, :, None])[:, :, 0]
    else:
        raise ValueError(f"matches by '{by}': choose 'feature' or 'coordinate'")
    return Matches(index[0], similarity[0], inside, shape1, shape2, by)


def sr_weight_map(matches: Matches, power: float = 2.0, spatial_only: bool = False) -> Tensor:
    """PixCon-SR weight of each view-1 query cell (feature-argmax matches: ``s_i`` = max cosine): (H1, W1) in [0, 1]."""
    if matches.by != "feature":
        raise ValueError("PixCon-SR weights need feature-argmax matches (similarity = each query's best cosine)")
    weights = semantic_weights(matches.similarity[None], matches.inside[None], power, spatial_only)
    return weights[0].reshape(matches.shape1)


# ------------------------------------------------------------------------------------------------- drawing
def to_rgb(image: Tensor | np.ndarray) -> np.ndarray:
    """An image as (H, W, 3) uint8: torch (3, H, W) or numpy (H, W, 3), uint8 or float in [0, 1]."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"expected an RGB image (3, H, W) or (H, W, 3), got shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _resize(rgb: np.ndarray, side: int, nearest: bool = False) -> np.ndarray:
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(rgb).resize((side, side), method))


@lru_cache(maxsize=4)
def _lut(cmap: str) -> np.ndarray:
    """A matplotlib colormap as a (256, 3) uint8 table."""
    from matplotlib import colormaps

    return np.round(colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "inferno") -> np.ndarray:
    """Values mapped linearly from [vmin, vmax] (clipped) onto a colormap: (..., 3) uint8."""
    scaled = (np.clip((np.asarray(values, dtype=np.float64) - vmin) / (vmax - vmin), 0.0, 1.0) * 255).round()
    return _lut(cmap)[scaled.astype(np.int64)]


def _upsample(values: Tensor, side: int, nearest: bool = False) -> np.ndarray:
    """An (H, W) map resized to (side, side): bilinear (smooth attention) or nearest (one block per cell)."""
    x = values.detach().float().cpu()[None, None]
    if nearest:
        return F.interpolate(x, size=(side, side), mode="nearest")[0, 0].numpy()
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(rgb: np.ndarray, values: np.ndarray, vmin: float, vmax: float, alpha: float = 0.6,
            cmap: str = "inferno") -> np.ndarray:
    """A heat map blended over an image of the same size: (H, W, 3) uint8."""
    heat = colorize(values, vmin, vmax, cmap).astype(np.float64)
    return np.round((1 - alpha) * rgb.astype(np.float64) + alpha * heat).astype(np.uint8)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _mark(draw: ImageDraw.ImageDraw, x: float, y: float, colour: tuple[int, int, int], label: str = "") -> None:
    """A query marker: a ring in ``colour`` with a black outline, and an optional label beside it."""
    r = 6
    draw.ellipse((x - r - 1, y - r - 1, x + r + 1, y + r + 1), outline=(0, 0, 0), width=4)
    draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=2)
    if label:
        draw.text((x + r + 2, y - r - 2), label, fill=colour, font=_font(), stroke_width=1, stroke_fill=(0, 0, 0))


def _row(panels: Sequence[np.ndarray]) -> np.ndarray:
    """Panels of equal height side by side with white gaps."""
    height = panels[0].shape[0]
    gap = np.full((height, GAP, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for index, panel in enumerate(panels):
        parts.extend([gap, panel] if index else [panel])
    return np.concatenate(parts, axis=1)


def _with_colorbar(figure: np.ndarray, vmin: float, vmax: float, cmap: str, label: str) -> np.ndarray:
    """The figure above a colour bar from vmin to vmax with its label."""
    width = figure.shape[1]
    bar_width = max(min(width - 80, 320), 16)
    strip = Image.new("RGB", (width, 30), (255, 255, 255))
    ramp = colorize(np.tile(np.linspace(vmin, vmax, bar_width), (10, 1)), vmin, vmax, cmap)
    strip.paste(Image.fromarray(ramp), (40, 4))
    draw = ImageDraw.Draw(strip)
    draw.text((4, 2), f"{vmin:g}", fill=(0, 0, 0), font=_font())
    draw.text((44 + bar_width, 2), f"{vmax:g}", fill=(0, 0, 0), font=_font())
    draw.text((40, 16), label, fill=(0, 0, 0), font=_font())
    return np.concatenate([figure, np.full((GAP, width, 3), 255, np.uint8), np.asarray(strip)], axis=0)


def _point_px(point: tuple[float, float], side: int) -> tuple[float, float]:
    return point[0] * (side - 1), point[1] * (side - 1)


def _query_figure(image: Tensor | np.ndarray, maps: Tensor, points: Sequence[tuple[float, float]], vmin: float,
                  vmax: float, label: str, panel: int) -> np.ndarray:
    """The image with numbered query markers, then one overlay per query map."""
    rgb = _resize(to_rgb(image), panel)
    first = Image.fromarray(rgb)
    draw = ImageDraw.Draw(first)
    panels = []
    for q, point in enumerate(points):
        colour = QUERY_COLOURS[q % len(QUERY_COLOURS)]
        _mark(draw, *_point_px(point, panel), colour, str(q + 1))
        heat = Image.fromarray(overlay(rgb, _upsample(maps[q], panel), vmin, vmax))
        _mark(ImageDraw.Draw(heat), *_point_px(point, panel), colour, str(q + 1))
        panels.append(np.asarray(heat))
    return _with_colorbar(_row([np.asarray(first), *panels]), vmin, vmax, "inferno", label)


def attention_figure(image: Tensor | np.ndarray, features: Tensor, points: Sequence[tuple[float, float]],
                     panel: int = PANEL) -> np.ndarray:
    """Self-attention maps (PixCon's figure): per query point, cosine to every cell, on a fixed 0..1 scale.

    A fixed scale keeps runs comparable: features that find everything similar show as uniformly bright.
    """
    maps = self_similarity_maps(features, query_cells(points, tuple(features.shape[-2:])))
    return _query_figure(image, maps.clamp(min=0), points, 0.0, 1.0, "cosine similarity to the query cell", panel)


def ppm_figure(image: Tensor | np.ndarray, features: Tensor, points: Sequence[tuple[float, float]],
               gamma: float = 2.0, panel: int = PANEL) -> np.ndarray:
    """PixPro PPM propagation weights ``max(cos, 0) ** gamma`` of each query point's cell over the image."""
    maps = ppm_weight_maps(features, query_cells(points, tuple(features.shape[-2:])), gamma)
    return _query_figure(image, maps, points, 0.0, 1.0, f"PPM weight max(cos, 0)^{gamma:g}", panel)


def pca_figure(image: Tensor | np.ndarray, features: Tensor, panel: int = PANEL) -> np.ndarray:
    """The image beside its dense features' first three principal components as RGB (one block per cell)."""
    rgb = _resize(to_rgb(image), panel)
    pca = _resize(to_rgb(pca_rgb(features)), panel, nearest=True)
    return _row([rgb, pca])


def _box_in_view(other: Tensor, box: Tensor, flipped: bool, side: int) -> tuple[float, float, float, float] | None:
    """The part of ``other`` box inside view ``box`` in that view's panel pixels (mirrored when flipped)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ox0, oy0 = max(float(other[0]), x0), max(float(other[1]), y0)  # the intersection of the two boxes
    ox1, oy1 = min(float(other[2]), x1), min(float(other[3]), y1)
    if ox1 <= ox0 or oy1 <= oy0:
        return None
    u0, u1 = (ox0 - x0) / (x1 - x0) * side, (ox1 - x0) / (x1 - x0) * side
    if flipped:
        u0, u1 = side - u1, side - u0
    return u0, (oy0 - y0) / (y1 - y0) * side, u1, (oy1 - y0) / (y1 - y0) * side


def _dashed_rectangle(draw: ImageDraw.ImageDraw, rect: tuple[float, float, float, float], dash: int = 6) -> None:
    x0, y0, x1, y1 = rect
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        _dashed_line(draw, a, b, (255, 255, 255), 2, dash)


def _dashed_line(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float],
                 colour: tuple[int, int, int], width: int, dash: int) -> None:
    length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
    pieces = max(int(length // dash), 1)
    for k in range(0, pieces, 2):
        t0, t1 = k / pieces, min((k + 1) / pieces, 1.0)
        draw.line((a[0] + t0 * (b[0] - a[0]), a[1] + t0 * (b[1] - a[1]),
                   a[0] + t1 * (b[0] - a[0]), a[1] + t1 * (b[1] - a[1])), fill=colour, width=width)


def _cell_centre(cell: int, shape: tuple[int, int], side: int, offset: int = 0) -> tuple[float, float]:
    """Centre of flat cell ``cell`` of an (H, W) map in the pixels of a (side, side) panel shifted right by offset."""
    h, w = shape
    row, col = divmod(int(cell), w)
    return offset + (col + 0.5) * side / w, (row + 0.5) * side / h


def matches_figure(view1: Tensor | np.ndarray, view2: Tensor | np.ndarray, matches: Matches, box1: Tensor,
                   flip1: bool, box2: Tensor, flip2: bool, panel: int = PANEL) -> np.ndarray:
    """The two views side by side, each view-1 cell joined to its match in view 2, coloured by the pair's cosine.

    Solid lines and filled dots: view-1 cells inside the views' intersection (dashed white boxes); dotted lines and
    open dots: cells outside it, which have no true geometric counterpart.
    """
    canvas = Image.fromarray(_row([_resize(to_rgb(view1), panel), _resize(to_rgb(view2), panel)]))
    draw = ImageDraw.Draw(canvas)
    first, second = _box_in_view(box2, box1, flip1, panel), _box_in_view(box1, box2, flip2, panel)
    if first is not None:
        _dashed_rectangle(draw, first)
    if second is not None:
        _dashed_rectangle(draw, (second[0] + panel + GAP, second[1], second[2] + panel + GAP, second[3]))
    colours = colorize(matches.similarity.clamp(min=0).numpy(), 0.0, 1.0, "viridis")
    order = torch.argsort(matches.inside.to(torch.int8), stable=True)  # in-box lines drawn last, on top
    for cell in order.tolist():
        a = _cell_centre(cell, matches.shape1, panel)
        b = _cell_centre(int(matches.index[cell]), matches.shape2, panel, panel + GAP)
        colour = tuple(int(v) for v in colours[cell])
        if bool(matches.inside[cell]):
            draw.line((*a, *b), fill=colour, width=2)
            draw.ellipse((a[0] - 3, a[1] - 3, a[0] + 3, a[1] + 3), fill=colour, outline=(0, 0, 0))
        else:
            _dashed_line(draw, a, b, colour, 1, 4)
            draw.ellipse((a[0] - 3, a[1] - 3, a[0] + 3, a[1] + 3), outline=colour, width=1)
        draw.ellipse((b[0] - 2, b[1] - 2, b[0] + 2, b[1] + 2), fill=colour)
    return _with_colorbar(np.asarray(canvas), 0.0, 1.0, "viridis", "cosine of the matched pair")


def sr_weights_figure(view: Tensor | np.ndarray, weights: Tensor, box: Tensor, flipped: bool, other_box: Tensor,
                      panel: int = PANEL) -> np.ndarray:
    """A query view beside its PixCon-SR weights per cell (1 inside the views' intersection, dashed box)."""
    rgb = _resize(to_rgb(view), panel)
    heat = Image.fromarray(overlay(rgb, _upsample(weights, panel, nearest=True), 0.0, 1.0, alpha=0.75,
                                   cmap="viridis"))
    draw = ImageDraw.Draw(heat)
    rect = _box_in_view(other_box, box, flipped, panel)
    if rect is not None:
        _dashed_rectangle(draw, rect)
    h, w = weights.shape
    if panel // w >= 32:  # cells wide enough: write each cell's weight on it
        for cell in range(h * w):
            x, y = _cell_centre(cell, (h, w), panel)
            draw.text((x - 11, y - 5), f"{float(weights.reshape(-1)[cell]):.2f}", fill=(255, 255, 255), font=_font(),
                      stroke_width=1, stroke_fill=(0, 0, 0))
    return _with_colorbar(_row([rgb, np.asarray(heat)]), 0.0, 1.0, "viridis", "PixCon-SR weight")
