"""Figure functions: hand-computed maps, matches against the dense code, and deterministic RGB output."""

from __future__ import annotations

import hashlib
import math
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pixelssl.dense.propagation import pixel_propagation, propagation_weights
from pixelssl.methods.base import Method
from pixelssl.methods.dense_moco import DenseMoCo
from pixelssl.methods.pixcon import PixConSR
from pixelssl.report import attention as A

FULL = torch.tensor([0.0, 0.0, 1.0, 1.0])


def cells_2x2() -> torch.Tensor:
    """(C=2, 2, 2) map whose cells are the vectors [1, 0], [0, 1], [1, 1], [-1, 0] in row-major order."""
    return torch.tensor([[1.0, 0.0, 1.0, -1.0], [0.0, 1.0, 1.0, 0.0]]).reshape(2, 2, 2)


def random_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=generator)
    features = torch.rand(16, 4, 4, generator=generator)
    return image, features


def digest(rgb: np.ndarray) -> str:
    return hashlib.sha256(rgb.tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------------- computing
def test_query_cells_map_image_fractions_to_flat_cells():
    assert A.query_cells([(0.0, 0.0), (0.99, 0.0), (0.5, 0.5), (1.0, 1.0)], (2, 4)).tolist() == [0, 3, 6, 7]
    with pytest.raises(ValueError, match="outside the image"):
        A.query_cells([(1.2, 0.5)], (2, 2))


def test_self_similarity_is_the_cosine_to_every_cell():
    maps = A.self_similarity_maps(cells_2x2(), torch.tensor([0, 2]))
    assert maps.shape == (2, 2, 2)
    assert torch.allclose(maps[0].flatten(), torch.tensor([1.0, 0.0, 1 / math.sqrt(2), -1.0]))
    assert torch.allclose(maps[1].flatten(), torch.tensor([1 / math.sqrt(2), 1 / math.sqrt(2), 1.0, -1 / math.sqrt(2)]))


def test_ppm_weights_are_the_sharpened_clamped_cosine():
    maps = A.ppm_weight_maps(cells_2x2(), torch.tensor([0]), gamma=2.0)
    assert torch.allclose(maps[0].flatten(), torch.tensor([1.0, 0.0, 0.5, 0.0]))


def test_ppm_weights_are_the_rows_pixel_propagation_sums_with():
    x = torch.randn(1, 5, 3, 3, dtype=torch.float64)
    v = torch.randn(1, 5, 3, 3, dtype=torch.float64)
    rows = A.ppm_weight_maps(x[0], torch.arange(9), gamma=2.0).reshape(9, 9).double()
    mixed = rows @ torch.nn.functional.normalize(v.flatten(2)[0], dim=0).T  # (9, C)
    expected = pixel_propagation(x, v, 2.0).flatten(2)[0].T
    assert torch.allclose(torch.nn.functional.normalize(mixed, dim=1), expected, atol=1e-5)
    assert torch.allclose(propagation_weights(x.flatten(2), 2.0)[0], rows, atol=1e-6)


def test_pca_rgb_of_a_one_directional_map_is_a_ramp_in_red_and_grey_elsewhere():
    ramp = torch.arange(6, dtype=torch.float64).reshape(1, 2, 3)
    features = torch.cat([3 * ramp, -2 * ramp, torch.ones(1, 2, 3)], dim=0)  # cells on one line in feature space
    rgb = A.pca_rgb(features)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.float32
    assert np.allclose(rgb[..., 0].ravel(), np.linspace(0, 1, 6)) or np.allclose(rgb[..., 0].ravel(),
                                                                                  np.linspace(1, 0, 6))
    assert np.allclose(rgb[..., 1:], 0.5)


def test_pca_rgb_is_in_range_and_sign_stable():
    _, features = random_case()
    rgb = A.pca_rgb(features)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert np.allclose(rgb, A.pca_rgb(-features), atol=1e-6)  # negated features: same picture, no colour flip
    for k in range(3):
        assert rgb[..., k].min() == 0.0 and rgb[..., k].max() == 1.0


def test_feature_matches_of_identical_views_are_the_identity():
    _, features = random_case()
    m = A.view_matches(features, features, FULL, False, FULL, False, by="feature")
    assert m.index.tolist() == list(range(16))
    assert torch.allclose(m.similarity, torch.ones(16)) and bool(m.inside.all())


def test_coordinate_matches_of_a_flipped_copy_mirror_columns():
    _, features = random_case()
    m = A.view_matches(features, features.flip(-1), FULL, False, FULL, True, by="coordinate")
    rows, cols = np.divmod(np.arange(16), 4)
    assert m.index.tolist() == (rows * 4 + (3 - cols)).tolist()
    assert torch.allclose(m.similarity, torch.ones(16))  # a mirrored map puts the same feature there
    feature = A.view_matches(features, features.flip(-1), FULL, False, FULL, True, by="feature")
    assert torch.equal(feature.index, m.index)


def test_inside_marks_view1_cells_within_view2s_box():
    _, features = random_case()
    left, right = torch.tensor([0.0, 0.0, 0.5, 1.0]), torch.tensor([0.25, 0.0, 1.0, 1.0])
    m = A.view_matches(features, features, left, False, right, False)
    # view 1's columns sit at x = 0.0625, 0.1875, 0.3125, 0.4375: the last two are inside [0.25, 1]
    assert m.inside.reshape(4, 4).tolist() == [[False, False, True, True]] * 4
    with pytest.raises(ValueError, match="choose 'feature' or 'coordinate'"):
        A.view_matches(features, features, left, False, right, False, by="nearest")


def test_sr_weights_equal_pixcon_sr_training_weights():
    generator = torch.Generator().manual_seed(3)
    q, k = torch.randn(8, 3, 3, generator=generator), torch.randn(8, 3, 3, generator=generator)
    box1, box2 = torch.tensor([0.0, 0.1, 0.6, 0.9]), torch.tensor([0.3, 0.0, 1.0, 0.7])
    batch = {"box1": box1[None], "flip1": torch.tensor([True]), "box2": box2[None], "flip2": torch.tensor([False])}
    for power, spatial in ((2.0, False), (3.0, False), (2.0, True)):
        sr = SimpleNamespace(power=power, spatial_only=spatial, geometry=Method.geometry, release_inbox=False)
        sr.query_cells_in_box = partial(DenseMoCo.query_cells_in_box, sr)
        _, expected = PixConSR.match(sr, q[None], k[None], batch, 1, 2)
        matches = A.view_matches(q, k, box1, True, box2, False, by="feature")
        assert torch.allclose(A.sr_weight_map(matches, power, spatial).flatten(), expected[0])
    with pytest.raises(ValueError, match="feature-argmax"):
        A.sr_weight_map(A.view_matches(q, k, box1, True, box2, False, by="coordinate"))


# ------------------------------------------------------------------------------------------------- drawing
def test_to_rgb_accepts_chw_hwc_uint8_and_float():
    chw = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1).expand(3, 2, 2)
    rgb = A.to_rgb(chw)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8 and rgb[0, 0].tolist() == [0, 128, 255]
    assert np.array_equal(A.to_rgb(rgb), rgb)
    with pytest.raises(ValueError, match="expected an RGB image"):
        A.to_rgb(np.zeros((4, 4)))


def test_colorize_maps_the_range_ends_to_the_colormap_ends_and_clips():
    lut = A._lut("inferno")
    out = A.colorize(np.array([-1.0, 0.0, 1.0, 2.0]), 0.0, 1.0)
    assert out.tolist() == [lut[0].tolist(), lut[0].tolist(), lut[255].tolist(), lut[255].tolist()]


def panels(width: int, count: int, panel: int) -> bool:
    return width == count * panel + (count - 1) * A.GAP


def test_attention_figure_shape_and_fixed_scale():
    image, _ = random_case()
    constant = torch.ones(8, 4, 4)  # every cell equals the query: cosine 1 everywhere
    rgb = A.attention_figure(image, constant, [(0.5, 0.5)], panel=64)
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3 and panels(rgb.shape[1], 2, 64)
    base = A._resize(A.to_rgb(image), 64).astype(np.float64)
    expected = np.round(0.4 * base + 0.6 * A._lut("inferno")[255]).astype(np.uint8)
    assert np.array_equal(rgb[:10, 64 + A.GAP:64 + A.GAP + 10], expected[:10, :10])  # corner, away from the marker


def test_figures_are_deterministic_on_fixed_input():
    image, features = random_case(seed=7)
    points = [(0.2, 0.3), (0.8, 0.6)]
    m = A.view_matches(features, features.roll(1, -1), torch.tensor([0.0, 0.0, 0.8, 0.9]), False,
                       torch.tensor([0.3, 0.2, 1.0, 1.0]), True)
    make = {
        "attention": lambda: A.attention_figure(image, features, points, panel=96),
        "ppm": lambda: A.ppm_figure(image, features, points, gamma=2.0, panel=96),
        "pca": lambda: A.pca_figure(image, features, panel=96),
        "matches": lambda: A.matches_figure(image, image, m, torch.tensor([0.0, 0.0, 0.8, 0.9]), False,
                                            torch.tensor([0.3, 0.2, 1.0, 1.0]), True, panel=96),
        "sr": lambda: A.sr_weights_figure(image, A.sr_weight_map(m), torch.tensor([0.0, 0.0, 0.8, 0.9]), False,
                                          torch.tensor([0.3, 0.2, 1.0, 1.0]), panel=96),
    }
    widths = {"attention": 3, "ppm": 3, "pca": 2, "matches": 2, "sr": 2}
    for name, fn in make.items():
        first, second = fn(), fn()
        assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3, name
        assert panels(first.shape[1], widths[name], 96), name
        assert digest(first) == digest(second), name
    assert digest(make["attention"]()) != digest(make["ppm"]())


def test_matches_figure_draws_in_box_pairs_solid_and_out_of_box_dotted():
    image, features = random_case()
    m = A.view_matches(features, features, FULL, False, FULL, False)
    yellow = A._lut("viridis")[255]  # similarity 1 everywhere

    def coloured_pixels(inside: bool) -> int:
        variant = A.Matches(m.index, m.similarity, torch.full((16,), inside), m.shape1, m.shape2, m.by)
        rgb = A.matches_figure(image, image, variant, FULL, False, FULL, False, panel=96)[:96]
        return int(np.all(rgb == yellow, axis=-1).sum())

    solid, dotted = coloured_pixels(True), coloured_pixels(False)
    assert dotted > 0 and solid > 1.5 * dotted
