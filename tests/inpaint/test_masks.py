"""Mask generators: holes inside their boxes, boxes inside the image, reproducible from the seed."""

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.errors import DataError
from pixelssl.inpaint.masks import (
    boxes_to_mask,
    crop_boxes,
    hole_bbox,
    load_mask,
    random_boxes,
    rectangle_holes,
    sample_training_masks,
    stroke_holes,
)


@pytest.mark.parametrize("kind", ["rect", "stroke", "mixed"])
def test_holes_lie_inside_their_boxes_and_are_never_empty(kind):
    boxes, holes = sample_training_masks(32, 64, 80, kind, 32, 8, torch.Generator().manual_seed(0), margin=2)
    assert holes.shape == (32, 1, 64, 80)
    assert torch.all(boxes[:, 0] >= 2) and torch.all(boxes[:, 0] + boxes[:, 2] <= 62)
    assert torch.all(boxes[:, 1] >= 2) and torch.all(boxes[:, 1] + boxes[:, 3] <= 78)
    assert torch.all(holes <= boxes_to_mask(boxes, 64, 80))
    assert torch.all(holes.flatten(1).sum(1) > 0)
    assert set(holes.unique().tolist()) <= {0.0, 1.0}


def test_rectangles_shrink_by_at_most_half_of_max_delta_per_side():
    boxes = random_boxes(64, 64, 64, 32, torch.Generator().manual_seed(1))
    holes = rectangle_holes(boxes, 64, 64, 8, torch.Generator().manual_seed(2))
    bbox = hole_bbox(holes)
    shrink = torch.cat([bbox[:, :2] - boxes[:, :2], (boxes[:, :2] + boxes[:, 2:]) - (bbox[:, :2] + bbox[:, 2:])], 1)
    assert torch.all((shrink >= 0) & (shrink <= 4))
    assert torch.equal(shrink[:, 0], shrink[:, 2]) and torch.equal(shrink[:, 1], shrink[:, 3])  # same on both sides
    assert torch.equal(holes.flatten(1).sum(1), (bbox[:, 2] * bbox[:, 3]).float())  # a filled rectangle


def test_masks_depend_only_on_the_seed():
    first = sample_training_masks(4, 32, 32, "mixed", 16, 4, torch.Generator().manual_seed(7))
    second = sample_training_masks(4, 32, 32, "mixed", 16, 4, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_strokes_are_thin_free_form_shapes():
    boxes = torch.tensor([[0, 0, 64, 64]] * 8)
    holes = stroke_holes(boxes, 64, 64, torch.Generator().manual_seed(3), max_width=8)
    filled = holes.flatten(1).mean(1)
    assert torch.all(filled > 0) and torch.all(filled < 0.9)


def test_hole_bbox_of_hand_masks():
    mask = torch.zeros(2, 1, 10, 12)
    mask[0, 0, 2:5, 3:9] = 1
    mask[0, 0, 7, 1] = 1
    assert hole_bbox(mask).tolist() == [[2, 1, 6, 8], [0, 0, 0, 0]]


def test_crop_boxes_takes_each_samples_own_box():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    crops = crop_boxes(x, torch.tensor([[0, 0, 2, 2], [3, 4, 2, 2]]), 2)
    assert torch.equal(crops[0, 0], x[0, 0, :2, :2]) and torch.equal(crops[1, 0], x[1, 0, 3:5, 4:6])


def _write(path, array):
    Image.fromarray(array).save(path)
    return path


def test_load_mask_reads_white_as_hole_and_rejects_bad_masks(tmp_path):
    array = np.zeros((5, 7), np.uint8)
    array[1:3, 2:4] = 255
    hole = load_mask(_write(tmp_path / "m.png", array), (5, 7), "in.png")
    assert hole.dtype == torch.bool and int(hole.sum()) == 4
    with pytest.raises(DataError, match="m.png' is 7x5 but image 'in.png' is 8x5"):
        load_mask(tmp_path / "m.png", (5, 8), "in.png")
    with pytest.raises(DataError, match="no hole pixels"):
        load_mask(_write(tmp_path / "empty.png", np.zeros((5, 7), np.uint8)))
    with pytest.raises(DataError, match="whole image"):
        load_mask(_write(tmp_path / "full.png", np.full((5, 7), 255, np.uint8)))
    with pytest.raises(DataError, match="does not exist"):
        load_mask(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read mask"):
        load_mask(tmp_path / "bad.png")


def test_load_mask_reads_strokes_on_a_transparent_layer(tmp_path):
    """Black (or any colour) strokes painted on a transparent layer: the opaque pixels are the hole; a fully opaque
    RGBA mask is read by brightness as usual."""
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[2, 1:6] = (0, 0, 0, 255)  # black, opaque stroke
    hole = load_mask(_write(tmp_path / "stroke.png", rgba))
    assert int(hole.sum()) == 5 and bool(hole[2, 1:6].all())
    opaque = np.zeros((5, 7, 4), np.uint8)
    opaque[..., 3] = 255
    opaque[0, 0, :3] = 255  # one white pixel on opaque black
    assert int(load_mask(_write(tmp_path / "opaque.png", opaque)).sum()) == 1
