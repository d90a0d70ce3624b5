"""The geometry contract: cell centres, normalised distances and positives against hand-computed cases."""

import math

import pytest
import torch

from pixelssl.data.views import crop_box
from pixelssl.dense.geometry import bin_diagonal, cell_centers, in_box, normalized_distances
from pixelssl.dense.matching import cells_in_other_view, coordinate_positives, nearest_cell

FULL = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
NOFLIP = torch.tensor([False])
FLIP = torch.tensor([True])


def test_crop_box_uses_inclusive_pixels_over_size_minus_one():
    box = crop_box(top=10, left=20, height=51, width=101, image_h=101, image_w=201)
    assert torch.allclose(box, torch.tensor([0.1, 0.1, 0.6, 0.6]))


def test_single_cell_centre_is_box_centre():
    box = torch.tensor([[0.2, 0.4, 0.6, 1.0]])
    assert torch.allclose(cell_centers(box, NOFLIP, 1, 1), torch.tensor([[[0.4, 0.7]]]))


def test_two_by_two_centres_are_row_major():
    expected = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]])
    assert torch.allclose(cell_centers(FULL, NOFLIP, 2, 2), expected)


def test_flipped_view_runs_right_to_left():
    expected = torch.tensor([[[0.75, 0.25], [0.25, 0.25], [0.75, 0.75], [0.25, 0.75]]])
    assert torch.allclose(cell_centers(FULL, FLIP, 2, 2), expected)


def test_non_square_map_and_box():
    box = torch.tensor([[0.0, 0.5, 0.3, 1.0]])
    centres = cell_centers(box, NOFLIP, 1, 3)  # one row, three columns of width 0.1
    assert torch.allclose(centres, torch.tensor([[[0.05, 0.75], [0.15, 0.75], [0.25, 0.75]]]))
    assert torch.allclose(bin_diagonal(box, 1, 3), torch.tensor([math.hypot(0.1, 0.5)]))


def test_distance_normalised_by_larger_bin_diagonal():
    small = torch.tensor([[0.0, 0.0, 0.5, 0.5]])  # 1x1 map: centre (0.25, 0.25), diagonal sqrt(0.5)
    big = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # 1x1 map: centre (0.5, 0.5), diagonal sqrt(2)
    d = normalized_distances(small, NOFLIP, (1, 1), big, NOFLIP, (1, 1))
    assert torch.allclose(d, torch.tensor([[[math.hypot(0.25, 0.25) / math.sqrt(2)]]]))


def test_identical_views_match_only_themselves_on_7x7():
    pos = coordinate_positives(FULL, NOFLIP, (7, 7), FULL, NOFLIP, (7, 7), 0.7)
    assert torch.equal(pos[0], torch.eye(49, dtype=torch.bool))


def test_flip_mirrors_matches():
    pos = coordinate_positives(FULL, NOFLIP, (7, 7), FULL, FLIP, (7, 7), 0.7)[0]
    mirror = torch.arange(49).view(7, 7).flip(1).flatten()
    assert torch.equal(pos.nonzero()[:, 1], mirror)


def test_disjoint_views_have_no_positives():
    left = torch.tensor([[0.0, 0.0, 0.4, 1.0]])
    right = torch.tensor([[0.6, 0.0, 1.0, 1.0]])
    assert not coordinate_positives(left, NOFLIP, (7, 7), right, NOFLIP, (7, 7), 0.7).any()


def test_threshold_bounds_positives_and_is_symmetric():
    torch.manual_seed(1)
    lo = torch.rand(8, 2) * 0.4
    boxes1 = torch.cat([lo, lo + 0.3 + torch.rand(8, 2) * 0.3], 1)
    boxes2 = torch.cat([lo + 0.1, lo + 0.5], 1)
    flips = torch.rand(8) < 0.5
    d12 = normalized_distances(boxes1, flips, (5, 5), boxes2, ~flips, (5, 5))
    d21 = normalized_distances(boxes2, ~flips, (5, 5), boxes1, flips, (5, 5))
    assert torch.allclose(d12, d21.transpose(1, 2))
    assert torch.equal(coordinate_positives(boxes1, flips, (5, 5), boxes2, ~flips, (5, 5), 0.7), d12 < 0.7)


def test_in_box_and_intersection_cells():
    points = torch.tensor([[[0.5, 0.5], [0.1, 0.9], [1.0, 1.0]]])
    assert in_box(points, torch.tensor([[0.2, 0.2, 1.0, 1.0]])).tolist() == [[True, False, True]]
    inside = cells_in_other_view(FULL, NOFLIP, (2, 2), torch.tensor([[0.5, 0.0, 1.0, 1.0]]))
    assert inside.tolist() == [[False, True, False, True]]


def test_nearest_cell_of_identical_flipped_views_is_the_mirror():
    index, valid = nearest_cell(FULL, NOFLIP, (4, 4), FULL, FLIP, (4, 4))
    assert valid.all()
    assert torch.equal(index[0], torch.arange(16).view(4, 4).flip(1).flatten())


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (7, 7)])
def test_batched_geometry_equals_per_image(h, w):
    torch.manual_seed(h * w)
    lo = torch.rand(4, 2) * 0.5
    boxes = torch.cat([lo, lo + 0.2 + torch.rand(4, 2) * 0.3], 1)
    flips = torch.tensor([True, False, True, False])
    batched = cell_centers(boxes, flips, h, w)
    for i in range(4):
        assert torch.allclose(batched[i : i + 1], cell_centers(boxes[i : i + 1], flips[i : i + 1], h, w))
