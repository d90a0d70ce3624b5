"""inpaint.hole_regions: the crops strategy ``crop`` fills, one per hole or group of holes, never overlapping."""

import torch

from pixelssl.inpaint.hole_regions import MAX_HOLES, Region, fill_regions, hole_boxes


def _hole(height, width, *boxes):
    hole = torch.zeros(height, width, dtype=torch.bool)
    for top, left, h, w in boxes:
        hole[top:top + h, left:left + w] = True
    return hole


def test_a_crop_is_the_hole_box_plus_half_its_longer_side():
    assert fill_regions(_hole(1000, 1000, (300, 400, 256, 100))) == [Region(172, 272, 684, 628)]  # margin 128
    assert fill_regions(_hole(1000, 1000, (10, 500, 20, 40))) == [Region(0, 468, 62, 572)]  # >= 32, clipped


def test_nearby_holes_share_one_crop_and_distant_holes_get_their_own():
    hole = _hole(1000, 1000, (100, 100, 40, 40), (100, 170, 40, 40), (700, 700, 40, 40))
    regions = sorted(fill_regions(hole), key=lambda r: r.top)
    # The first two crops overlap: one crop around their union (100..140 x 100..210, longer side 110 -> margin 55).
    assert regions == [Region(45, 45, 195, 265), Region(668, 668, 772, 772)]


def test_merging_repeats_until_no_crops_overlap():
    # Crops (columns): a 68..152 and b 128..212 overlap; c 216..300 overlaps neither, but the crop of a + b's union
    # (100..180, margin 40: 60..220) reaches it, so all three end in one crop around 100..268 (margin 84).
    hole = _hole(600, 2000, (300, 100, 20, 20), (300, 160, 20, 20), (300, 248, 20, 20))
    assert fill_regions(hole) == [Region(216, 16, 404, 352)]


def test_hole_pixels_touching_at_a_corner_are_one_hole():
    assert hole_boxes(_hole(10, 10, (2, 2, 1, 1), (3, 3, 1, 1))) == [Region(2, 2, 4, 4)]  # 8-connected
    assert sorted(hole_boxes(_hole(10, 10, (2, 2, 1, 1), (2, 4, 1, 1))), key=lambda r: r.left) == [
        Region(2, 2, 3, 3), Region(2, 4, 3, 5)]


def test_more_holes_than_the_limit_get_one_crop_around_all_of_them():
    few = torch.zeros(3000, 3000, dtype=torch.bool)
    few[1000:1400:100, 1000:1400:100] = True  # 16 single pixels 100 apart: crops of 65 px never meet
    assert len(fill_regions(few)) == 16
    many = torch.zeros(3000, 3000, dtype=torch.bool)
    many[1000:3000:100, 1000:3000:100] = True  # 400 of them
    assert len(hole_boxes(many)) == 400 > MAX_HOLES
    # their bounding box 1000..2901 (longer side 1901, margin 951), clipped to the image
    assert fill_regions(many) == [Region(49, 49, 3000, 3000)]
