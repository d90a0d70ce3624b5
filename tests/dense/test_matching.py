"""The PixCon release's in-box rule (intersection box in the query view's own coordinates on the map's grid)."""

from __future__ import annotations

import torch

from pixelssl.dense.matching import cells_in_other_view, intersection_grid_cells


def _grid(boxes, flipped, shape, other) -> torch.Tensor:
    mask = intersection_grid_cells(torch.tensor([boxes]), torch.tensor([flipped]), shape, torch.tensor([other]))
    return mask.reshape(shape).int()


def _expected(shape, rows, cols) -> torch.Tensor:
    out = torch.zeros(shape, dtype=torch.int)
    out[rows[0]:rows[1], cols[0]:cols[1]] = 1
    return out


def test_release_inbox_truncates_the_scaled_intersection():
    # key covers x in [0, 0.55] of the query: 0.55 * 7 = 3.85 -> columns 0..2 (a centre rule also takes column 3)
    assert torch.equal(_grid([0.0, 0.0, 1.0, 1.0], False, (7, 7), [0.0, 0.0, 0.55, 1.0]), _expected((7, 7), (0, 7), (0, 3)))
    centre = cells_in_other_view(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([False]), (7, 7),
                                 torch.tensor([[0.0, 0.0, 0.55, 1.0]])).reshape(7, 7)
    assert bool(centre[0, 3])  # the two rules differ on this border cell


def test_release_inbox_is_in_the_query_views_own_coordinates():
    # intersection x [0.4, 0.6], y [0.2, 0.5] of a query box (0.2, 0.2, 0.6, 0.6): relative x [0.5, 1], y [0, 0.75]
    got = _grid([0.2, 0.2, 0.6, 0.6], False, (7, 7), [0.4, 0.0, 1.0, 0.5])
    assert torch.equal(got, _expected((7, 7), (0, 5), (3, 7)))


def test_release_inbox_mirrors_columns_of_a_flipped_view():
    # relative x [0, 0.55] mirrored to [0.45, 1]: columns floor(3.15) = 3 .. 6
    got = _grid([0.0, 0.0, 1.0, 1.0], True, (7, 7), [0.0, 0.0, 0.55, 1.0])
    assert torch.equal(got, _expected((7, 7), (0, 7), (3, 7)))


def test_release_inbox_uses_the_maps_own_grid():
    got = _grid([0.0, 0.0, 1.0, 1.0], False, (3, 3), [0.5, 0.0, 1.0, 1.0])  # 0.5 * 3 = 1.5 -> columns 1..2
    assert torch.equal(got, _expected((3, 3), (0, 3), (1, 3)))


def test_release_inbox_of_views_that_do_not_overlap_is_empty():
    assert int(_grid([0.0, 0.0, 0.3, 0.3], False, (7, 7), [0.5, 0.5, 1.0, 1.0]).sum()) == 0
