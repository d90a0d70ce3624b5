"""The cell-centre formula of docs/design.md (Contracts: Geometry), by hand and one cell at a time: the independent
reference the method tests compare ``dense.geometry`` with."""

from __future__ import annotations


def cell_centre(box, flipped, i, j, h, w):
    """Centre (x, y), in source-image coordinates, of cell (i, j) of an h x w map computed from a view of ``box``."""
    x0, y0, x1, y1 = box
    if flipped:
        x0, x1 = x1, x0
    return x0 + (j + 0.5) * (x1 - x0) / w, y0 + (i + 0.5) * (y1 - y0) / h
