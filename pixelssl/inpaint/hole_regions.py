"""Where strategy ``crop`` fills: each hole's bounding box (8-connected components), the context crop around it, and
crops merged until none overlap. Geometry only; ``fill`` runs the generator on the crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from torch import Tensor

MIN_MARGIN = 32  # context around a hole's box on each side, at least (the margin is half the box's longer side)
MAX_HOLES = 256  # more holes than this: strategy crop fills one crop around all of them (fill_regions)


@dataclass(frozen=True)
class Region:
    """A crop of the image, rows [top, bottom) and columns [left, right), around one hole or a group of holes."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def of(self, x: Tensor) -> Tensor:
        """The crop of an (..., H, W) tensor (a view)."""
        return x[..., self.top:self.bottom, self.left:self.right]


def hole_boxes(hole: Tensor) -> list[Region]:
    """Bounding boxes of the 8-connected components of a bool (H, W) hole, in OpenCV's label order."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(hole.numpy().astype(np.uint8), connectivity=8)
    return [Region(int(y), int(x), int(y + h), int(x + w)) for x, y, w, h, _ in stats[1:]]


def context_box(box: Region, height: int, width: int, min_margin: int = MIN_MARGIN) -> Region:
    """The crop around a hole's box: a margin of half the box's longer side (>= min_margin) each side, clipped."""
    margin = max(min_margin, math.ceil(max(box.height, box.width) / 2))
    return Region(max(box.top - margin, 0), max(box.left - margin, 0), min(box.bottom + margin, height),
                  min(box.right + margin, width))


def _groups(overlap: np.ndarray) -> list[list[int]]:
    """Connected components of a symmetric boolean adjacency matrix, as lists of indices."""
    seen = np.zeros(len(overlap), bool)
    groups = []
    for start in range(len(overlap)):
        if seen[start]:
            continue
        seen[start], group, frontier = True, [start], [start]
        while frontier:
            found = np.flatnonzero(overlap[frontier].any(axis=0) & ~seen)
            seen[found] = True
            group += found.tolist()
            frontier = found.tolist()
        groups.append(sorted(group))
    return groups


def fill_regions(hole: Tensor, min_margin: int = MIN_MARGIN) -> list[Region]:
    """The crops of strategy ``crop`` for a bool (H, W) hole: one per hole, holes whose crops overlap merged.

    Merged holes get one crop around the bounding box of their union; merging repeats until no two crops overlap,
    so every hole pixel lies in exactly one crop and no crop holds pixels of another crop's holes. A mask of more
    than ``MAX_HOLES`` holes (speckles, a dithered mask) gets one crop around all of them: the overlap test is
    quadratic in the number of holes (a 5% speckled 4096 x 3072 mask has ~600k of them).
    """
    height, width = hole.shape
    boxes = hole_boxes(hole)
    if len(boxes) > MAX_HOLES:
        boxes = [Region(min(b.top for b in boxes), min(b.left for b in boxes), max(b.bottom for b in boxes),
                        max(b.right for b in boxes))]
    while True:
        crops = [context_box(b, height, width, min_margin) for b in boxes]
        c = np.array([[r.top, r.left, r.bottom, r.right] for r in crops]).reshape(-1, 4)
        overlap = ((c[:, None, 0] < c[None, :, 2]) & (c[None, :, 0] < c[:, None, 2])
                   & (c[:, None, 1] < c[None, :, 3]) & (c[None, :, 1] < c[:, None, 3]))
        groups = _groups(overlap)
        if len(groups) == len(boxes):
            return crops
        boxes = [Region(min(boxes[i].top for i in g), min(boxes[i].left for i in g),
                        max(boxes[i].bottom for i in g), max(boxes[i].right for i in g)) for g in groups]
