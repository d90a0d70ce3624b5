"""Views: crops land where their boxes say, flips mirror, overlap resampling works, draws are reproducible."""

import pytest
import torch

from pixelssl.data.views import TwoViewSampler, boxes_overlap, random_resized_crop_params


def coordinate_image(h: int, w: int) -> torch.Tensor:
    """Channel 0 holds the column index, channel 1 the row index (so a crop reveals where it came from)."""
    xs = torch.arange(w).view(1, w).expand(h, w)
    ys = torch.arange(h).view(h, 1).expand(h, w)
    return torch.stack([xs, ys, torch.zeros(h, w, dtype=torch.long)]).to(torch.uint8)


@pytest.mark.parametrize("seed", range(5))
def test_crop_content_matches_its_box(seed):
    h, w = 120, 200
    sampler = TwoViewSampler(size=64, scale=(0.2, 0.6), flip_prob=0.0)
    view = sampler.view(coordinate_image(h, w), torch.Generator().manual_seed(seed))
    x0, y0, x1, y1 = (view.box * torch.tensor([w - 1, h - 1, w - 1, h - 1])).tolist()
    centre = view.image[:, 32, 32].float()
    # The view's centre pixel shows the source pixel at the box centre (up to resampling).
    assert abs(float(centre[0]) - (x0 + x1) / 2) < 2.5
    assert abs(float(centre[1]) - (y0 + y1) / 2) < 2.5
    assert float(view.image[0, :, 0].float().mean()) == pytest.approx(x0, abs=2.5)


def test_flipped_view_shows_the_right_edge_first():
    h, w = 50, 100
    sampler = TwoViewSampler(size=32, scale=(0.3, 0.5), flip_prob=1.0)
    view = sampler.view(coordinate_image(h, w), torch.Generator().manual_seed(3))
    assert view.flipped
    x1 = float(view.box[2]) * (w - 1)
    assert float(view.image[0, :, 0].float().mean()) == pytest.approx(x1, abs=2.5)


def test_crop_params_stay_inside_the_image_and_respect_scale():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(90, 160, (0.08, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top and top + h <= 90 and 0 <= left and left + w <= 160
        assert h * w <= 90 * 160


def test_require_overlap_resamples_disjoint_pairs():
    image = coordinate_image(100, 100)
    loose = TwoViewSampler(size=32, scale=(0.02, 0.05), require_overlap=False)
    strict = TwoViewSampler(size=32, scale=(0.02, 0.05), require_overlap=True, max_resample=200)
    disjoint = sum(not boxes_overlap(*(v.box for v in loose(image, torch.Generator().manual_seed(s))))
                   for s in range(100))
    assert disjoint > 50  # small crops usually miss each other...
    assert all(boxes_overlap(*(v.box for v in strict(image, torch.Generator().manual_seed(s)))) for s in range(100))


def test_same_generator_seed_gives_the_same_views():
    image = coordinate_image(64, 64)
    sampler = TwoViewSampler(size=32)
    a = sampler(image, torch.Generator().manual_seed(7))
    b = sampler(image, torch.Generator().manual_seed(7))
    for va, vb in zip(a, b):
        assert torch.equal(va.image, vb.image) and torch.equal(va.box, vb.box) and va.flipped == vb.flipped


# ------------------------------------------------------------------ TwoViews: the transform for one's own data
def test_two_views_gives_the_batch_format_the_methods_take():
    import numpy as np
    from PIL import Image

    from pixelssl.data.views import TwoViews, collate_views

    views = TwoViews(32, augment="none")
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    inputs = [Image.fromarray(rgb), Image.fromarray(rgb).convert("L"), rgb, torch.from_numpy(rgb).permute(2, 0, 1),
              torch.from_numpy(rgb).permute(2, 0, 1).float() / 255]
    samples = [views(image, torch.Generator().manual_seed(1)) for image in inputs]
    assert {k: tuple(v.shape) for k, v in samples[0].items()} == {"view1": (3, 32, 32), "view2": (3, 32, 32),
                                                                 "box1": (4,), "box2": (4,), "flip1": (), "flip2": ()}
    assert samples[0]["view1"].dtype == torch.float32 and samples[0]["flip1"].dtype == torch.bool
    for other in (samples[2], samples[3], samples[4]):  # the same pixels in any form: the same views
        assert all(torch.equal(samples[0][k], other[k]) for k in samples[0])
    assert torch.equal(samples[0]["box1"], samples[1]["box1"])  # a grey image: the same crops
    batch = collate_views([*samples, (samples[0], 7)])  # a torchvision dataset's (sample, label) pairs too
    assert batch["view1"].shape == (6, 3, 32, 32) and batch["box2"].shape == (6, 4) and batch["flip1"].shape == (6,)


def test_two_views_matches_the_pretraining_sampler_and_augments_each_view():
    from pixelssl.data.views import TwoViews

    image = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sampler = TwoViewSampler(24, scale=(0.3, 1.0), require_overlap=True)
    first, second = sampler(image, torch.Generator().manual_seed(5))
    plain = TwoViews(24, scale=(0.3, 1.0), require_overlap=True, augment=(lambda v: v.float(), lambda v: -v.float()))
    sample = plain(image, torch.Generator().manual_seed(5))
    assert torch.equal(sample["box1"], first.box) and torch.equal(sample["box2"], second.box)
    assert torch.equal(sample["view1"], first.image.float()) and torch.equal(sample["view2"], -second.image.float())
    assert bool(sample["flip2"]) == second.flipped
    torch.manual_seed(3)
    a = TwoViews(24)(image)
    torch.manual_seed(3)
    assert all(torch.equal(a[k], v) for k, v in TwoViews(24)(image).items())  # torch's seed decides it all
    with pytest.raises(TypeError, match="expected a PIL image"):
        TwoViews(24)(torch.zeros(2, 10, 10))
