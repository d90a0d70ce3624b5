"""Synthetic scenes: deterministic per (seed, split, index), both protocols, labels and instances consistent."""

from __future__ import annotations

import pytest
import torch

from pixelssl.data.synthetic import MAX_CLASSES, SyntheticScenes


def test_same_seed_and_index_give_the_same_scene():
    first, second = SyntheticScenes(10, seed=3), SyntheticScenes(10, seed=3)
    for index in (0, 7):
        image1, label1 = first[index]
        image2, label2 = second[index]
        assert torch.equal(image1, image2) and torch.equal(label1, label2)


def test_scene_depends_on_index_and_seed():
    ds = SyntheticScenes(10, seed=0)
    assert not torch.equal(ds.load(0), ds.load(1))
    assert not torch.equal(ds.load(0), SyntheticScenes(10, seed=1).load(0))


def test_val_scenes_differ_from_train_scenes():
    train, val = SyntheticScenes(20, split="train"), SyntheticScenes(20, split="val")
    assert all(not torch.equal(train.load(i), val.load(i)) for i in range(5))


def test_image_and_label_types_and_range():
    ds = SyntheticScenes(8, size=64, num_classes=4)
    image, label = ds[2]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert label.dtype == torch.int64 and label.shape == (64, 64)
    assert 0 <= int(label.min()) and int(label.max()) <= 4
    assert torch.equal(ds.load(2), image)


def test_dataset_attributes_follow_segmentation_protocol():
    ds = SyntheticScenes(5, num_classes=6, split="val")
    assert ds.num_classes == 7 and ds.ignore_index == 255
    assert len(ds.class_names) == 7 and ds.class_names[0] == "background"
    assert len(set(ds.class_names)) == 7
    assert ds.describe(4) == ds.name(4) == "synthetic:val:4"
    assert len(ds) == 5


def test_every_class_appears_over_fifty_scenes():
    ds = SyntheticScenes(50, size=64, num_classes=MAX_CLASSES)
    seen = set()
    for index in range(len(ds)):
        seen.update(ds[index][1].unique().tolist())
    assert seen == set(range(MAX_CLASSES + 1))


def test_instance_masks_are_disjoint_and_match_the_label_map():
    ds = SyntheticScenes(6, size=96)
    for index in range(len(ds)):
        _, label = ds[index]
        instances = ds.instances(index)
        assert 1 <= len(instances) <= 8
        covered = torch.zeros_like(label, dtype=torch.int64)
        for cls, mask in instances:
            assert mask.dtype == torch.bool and mask.shape == label.shape and mask.any()
            assert (label[mask] == cls).all()
            covered += mask.long()
        assert covered.max() <= 1  # disjoint: occluded pixels belong to the object painted last
        assert torch.equal(covered.bool(), label > 0)


def test_colour_alone_is_a_weak_cue():
    """Nearest class-mean colour tells object classes apart only a little better than chance (1/6)."""
    ds = SyntheticScenes(40, size=64, num_classes=6)
    colours, classes = [], []
    for index in range(len(ds)):
        image, label = ds[index]
        mask = label > 0
        colours.append(image.permute(1, 2, 0)[mask].float())
        classes.append(label[mask])
    x, y = torch.cat(colours), torch.cat(classes)
    half = len(x) // 2
    means = torch.stack([x[:half][y[:half] == c].mean(0) for c in range(1, 7)])
    predicted = torch.cdist(x[half:], means).argmin(1) + 1
    assert (predicted == y[half:]).float().mean() < 0.4


def test_size_scales_the_scene():
    assert SyntheticScenes(2, size=40).load(0).shape == (3, 40, 40)


def test_out_of_range_index_raises_index_error():
    with pytest.raises(IndexError, match="3"):
        SyntheticScenes(3).load(3)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_classes": 0}, "num_classes"), ({"num_classes": MAX_CLASSES + 1}, "num_classes"),
     ({"split": "dev"}, "split"), ({"objects": (3, 1)}, "objects")],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticScenes(4, **kwargs)
