"""dense.matching: the PixCon release's in-box rule (on the query view's own grid) and PixCon-SR's semantic weights."""

from __future__ import annotations

import torch

from pixelssl.dense.matching import cells_in_other_view, intersection_grid_cells, semantic_weights


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


# --------------------------------------------------------------------------------------- semantic weights (PixCon-SR)
def test_semantic_weights_on_a_hand_case():
    s = torch.tensor([[0.2, 0.5, 0.9, 0.4]])
    in_box = torch.tensor([[False, False, True, False]])
    # min over all 0.2, max over out-of-box 0.5: (0, 1, in-box -> 1, (0.2 / 0.3)) then ** 2.
    expected = torch.tensor([[0.0, 1.0, 1.0, (0.2 / 0.3) ** 2]])
    assert torch.allclose(semantic_weights(s, in_box, power=2.0), expected)
    assert torch.allclose(semantic_weights(s, in_box, power=1.0), expected.sqrt())


def test_semantic_weights_are_one_in_box_bounded_outside_and_grow_with_similarity():
    g = torch.Generator().manual_seed(3)
    s = torch.rand(5, 49, generator=g) * 2 - 1
    in_box = torch.rand(5, 49, generator=g) < 0.4
    w = semantic_weights(s, in_box, power=2.0)
    assert torch.equal(w[in_box], torch.ones(int(in_box.sum())))
    out = w[~in_box]
    assert out.min() >= 0 and out.max() <= 1
    for b in range(5):
        outside = (~in_box[b]).nonzero().flatten()
        order = s[b, outside].argsort()
        assert (w[b, outside][order].diff() > 0).all()  # strictly increasing with similarity
        assert float(w[b, outside].max()) == 1.0  # the best out-of-box match is trusted fully


def test_semantic_weights_degenerate_cases_are_finite():
    all_in = semantic_weights(torch.rand(2, 9), torch.ones(2, 9, dtype=torch.bool))
    equal = semantic_weights(torch.full((2, 9), 0.3), torch.arange(9).expand(2, 9) < 4)
    lone = semantic_weights(torch.tensor([[0.1, 0.9, 0.8]]), torch.tensor([[False, True, True]]))
    for w in (all_in, equal, lone):
        assert torch.isfinite(w).all()
        assert torch.equal(w, torch.ones_like(w))  # no semantic evidence: falls back to PixCon-Sim's weights


def test_spatial_only_weights_are_the_in_box_mask():
    in_box = torch.tensor([[True, False, True, False]])
    w = semantic_weights(torch.tensor([[0.1, 0.9, -0.5, 0.3]]), in_box, power=2.0, spatial_only=True)
    assert torch.equal(w, torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
