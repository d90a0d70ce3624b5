"""methods.pixcon: PixCon-Coord / -Sim / -SR (and DenseCL) matching against constructed cases, and the PixCon recipe."""

from __future__ import annotations

import math

import pytest
import torch
from reference_geometry import cell_centre
from torch import nn

from pixelssl.dense.matching import cells_in_other_view, intersection_grid_cells


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@pytest.mark.parametrize("preset", ["densecl_r18_demo", "pixcon_sim_r18_demo", "pixcon_sr_r18_demo"])
def test_similarity_matching_picks_the_planted_argmax(tiny_method, two_view_batch, preset):
    method = tiny_method(preset)
    g = torch.Generator().manual_seed(1)
    key = torch.randn(4, 32, 3, 3, generator=g)
    planted = torch.stack([torch.randperm(9, generator=g) for _ in range(4)])  # query cell i <- key cell planted[i]
    query = torch.gather(key.flatten(2), 2, planted[:, None, :].expand(-1, 32, -1))
    query = (3.0 * query + 0.3 * torch.randn(query.shape, generator=g)).view(4, 32, 3, 3)  # scaled + noisy copies
    index, weights = method.match(query, key, two_view_batch(4), 1, 2)
    assert torch.equal(index, planted)
    assert weights.shape == (4, 9) and torch.isfinite(weights).all()




def test_coordinate_match_is_the_geometrically_nearest_cell(tiny_method):
    method = tiny_method("pixcon_coord_r18_demo")
    g = torch.Generator().manual_seed(2)
    lo = torch.rand(6, 2, generator=g) * 0.5
    batch = {"box1": torch.cat([lo, lo + 0.3 + torch.rand(6, 2, generator=g) * 0.2], 1),
             "box2": torch.cat([lo * 0.5, lo * 0.5 + 0.5], 1),
             "flip1": torch.tensor([False, True, False, True, False, True]),
             "flip2": torch.tensor([False, False, True, True, False, True])}
    shape = (4, 4)
    feats = torch.randn(6, 8, *shape)  # features play no part in coordinate matching
    index, weights = method.match(feats, feats, batch, 1, 2)
    h, w = shape
    for b in range(6):
        box1, box2 = batch["box1"][b].tolist(), batch["box2"][b].tolist()
        keys = [cell_centre(box2, bool(batch["flip2"][b]), i, j, h, w) for i in range(h) for j in range(w)]
        for n in range(h * w):
            x, y = cell_centre(box1, bool(batch["flip1"][b]), n // w, n % w, h, w)
            nearest = min(range(h * w), key=lambda m: math.hypot(keys[m][0] - x, keys[m][1] - y))
            inside = box2[0] <= x <= box2[2] and box2[1] <= y <= box2[3]
            assert int(index[b, n]) == nearest, (b, n)
            assert float(weights[b, n]) == float(inside), (b, n)  # queries outside the intersection are dropped
    assert 0 < weights.sum() < weights.numel()  # the case has both kinds of query


def test_sr_match_weights_use_the_views_intersection(tiny_method, two_view_batch):
    method = tiny_method("pixcon_sr_r18_demo")
    spatial = tiny_method("pixcon_sr_r18_demo", "method.sr_weights=spatial")
    batch = two_view_batch(2)
    feats_q, feats_k = torch.randn(2, 8, 2, 2), torch.randn(2, 8, 2, 2)
    # View 1 spans [0, 0.6] x [0, 0.7] on a 2x2 map: cell centres x in {0.15, 0.45}, y in {0.175, 0.525};
    # only cell (1, 1) lies inside view 2's box [0.25, 1] x [0.3, 1].
    _, mask = spatial.match(feats_q, feats_k, batch, 1, 2)
    assert mask.tolist() == [[0.0, 0.0, 0.0, 1.0]] * 2
    _, w = method.match(feats_q, feats_k, batch, 1, 2)
    assert torch.equal(w[:, 3], torch.ones(2)) and (w[:, :3] <= 1).all() and (w[:, :3] >= 0).all()
    assert (w[:, :3] == 1).sum(dim=1).tolist() == [1, 1]  # the best out-of-box match of each image


def test_pixcon_methods_take_the_rule_from_the_config(tiny_method, two_view_batch):
    batch = two_view_batch(4, 96)
    for preset in ("pixcon_sr_r18_demo", "pixcon_coord_r18_demo"):
        method = tiny_method(preset, "method.inbox_rule=release")
        got = method.query_cells_in_box(batch, 1, 2, (3, 3))
        assert torch.equal(got, intersection_grid_cells(batch["box1"], batch["flip1"], (3, 3), batch["box2"]))
        method = tiny_method(preset, "method.inbox_rule=centre")
        assert torch.equal(method.query_cells_in_box(batch, 1, 2, (3, 3)),
                           cells_in_other_view(batch["box1"], batch["flip1"], (3, 3), batch["box2"]))


def test_pixcon_recipe_has_bn_heads_online_predictors_and_cosine_momentum(tiny_method):
    method = tiny_method("pixcon_sr_r18_demo")
    assert _has_batch_norm(method.projector) and _has_batch_norm(method.dense_projector)
    assert _has_batch_norm(method.predictor) and _has_batch_norm(method.dense_predictor)
    names = {name.split(".")[0] for name, _ in method.named_parameters()}
    assert {"backbone_k", "projector_k", "dense_projector_k"} <= names
    assert not {"predictor_k", "dense_predictor_k"} & names  # predictors are online only
    assert method.symmetric
    assert method.momentum_at(0, 100) == pytest.approx(0.99)
    assert method.momentum_at(50, 100) == pytest.approx(0.995)
    assert method.momentum_at(100, 100) == 1.0
