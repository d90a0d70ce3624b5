"""The shared MoCo-v2(+) core of DenseCL and PixCon: the loss against a hand-written reference, the two queues,
and the recipe switches of the DenseCL -> PixCon-Sim ablation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a / a.norm()) @ (b / b.norm()))


def _info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, t: float) -> float:
    pos = math.exp(float(query @ positive) / t)
    neg = sum(math.exp(float(query @ n) / t) for n in negatives)
    return -math.log(pos / (pos + neg))


def test_pixcon_sr_loss_equals_a_hand_written_reference(tiny_method, two_view_batch):
    method = tiny_method("pixcon_sr_r18_demo").double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in two_view_batch(3, 96).items()}
    queue, dense_queue = method.queue.keys.clone(), method.dense_queue.keys.clone()
    out = method(batch)

    views = [batch["view1"], batch["view2"]]
    t, lam = 0.2, 0.5
    with torch.no_grad():  # network outputs from the modules; everything after them by hand
        feats = [method.backbone(v) for v in views]  # (B, C, 3, 3)
        feats_k = [method.backbone_k(v) for v in views]
        global_q = [method.predictor(method.projector(f.mean(dim=(2, 3)))) for f in feats]
        global_k = [method.projector_k(f.mean(dim=(2, 3))) for f in feats_k]
        dense_q = [method.dense_predictor(method.dense_projector(f)).flatten(2) for f in feats]
        dense_k = [method.dense_projector_k(f).flatten(2) for f in feats_k]
    total_global = total_dense = 0.0
    for a, b in [(0, 1), (1, 0)]:
        box_q, flip_q, box_k = batch[f"box{a + 1}"], batch[f"flip{a + 1}"], batch[f"box{b + 1}"]
        terms = []
        for img in range(3):
            q = F.normalize(global_q[a][img], dim=0)
            total_global += _info_nce(q, F.normalize(global_k[b][img], dim=0), queue, t) / 3
            bq, bk = feats[a][img].flatten(1), feats_k[b][img].flatten(1)  # (C, 9)
            sims = [[_cos(bq[:, i], bk[:, j]) for j in range(9)] for i in range(9)]
            best = [max(range(9), key=lambda j: row[j]) for row in sims]
            s = [row[j] for row, j in zip(sims, best)]
            x0, y0, x1, y1 = box_q[img].tolist()
            if flip_q[img]:
                x0, x1 = x1, x0
            centres = [(x0 + (j + 0.5) * (x1 - x0) / 3, y0 + (i + 0.5) * (y1 - y0) / 3) for i in range(3) for j in range(3)]
            kx0, ky0, kx1, ky1 = box_k[img].tolist()
            inside = [kx0 <= x <= kx1 and ky0 <= y <= ky1 for x, y in centres]
            low, high = min(s), max(v for v, ins in zip(s, inside) if not ins)
            weights = [1.0 if ins else ((v - low) / (high - low)) ** 2 for v, ins in zip(s, inside)]
            for i in range(9):
                q_i = F.normalize(dense_q[a][img][:, i], dim=0)
                k_j = F.normalize(dense_k[b][img][:, best[i]], dim=0)
                terms.append((weights[i], _info_nce(q_i, k_j, dense_queue, t)))
        assert 0 < sum(1 for w, _ in terms if w == 1.0) < len(terms)  # in-box and out-of-box queries both occur
        total_dense += sum(w * loss for w, loss in terms) / sum(w for w, _ in terms)
    expected = (1 - lam) * total_global + lam * total_dense
    assert math.isclose(out["loss_global"].item(), total_global, rel_tol=1e-9)
    assert math.isclose(out["loss_dense"].item(), total_dense, rel_tol=1e-9)
    assert math.isclose(out["loss"].item(), expected, rel_tol=1e-9)


def _pooled_dense_key(method, view: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(method.dense_projector_k(method.backbone_k(view)).mean(dim=(2, 3)), dim=1)


def _global_key(method, view: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(method.projector_k(method.backbone_k(view).mean(dim=(2, 3))), dim=1)


def test_both_queues_get_the_keys_of_one_random_view_per_step(tiny_method, two_view_batch):
    method = tiny_method("pixcon_sim_r18_demo", "method.queue_size=64")
    batch = two_view_batch(4, 64)
    picked = []
    for step in range(6):
        with torch.no_grad():
            method(batch)
        rows = slice(4 * step, 4 * step + 4)
        dense = [_pooled_dense_key(method, batch[f"view{v}"]) for v in (1, 2)]
        glob = [_global_key(method, batch[f"view{v}"]) for v in (1, 2)]
        view = next(v for v in (0, 1) if torch.allclose(method.dense_queue.keys[rows], dense[v], atol=1e-6))
        assert torch.allclose(method.queue.keys[rows], glob[view], atol=1e-6)  # same view in both queues
        assert torch.allclose(method.dense_queue.keys[rows].norm(dim=1), torch.ones(4))
        picked.append(view)
    assert set(picked) == {0, 1}


def test_dense_queue_wraps_around(tiny_method, two_view_batch):
    # DenseCL's recipe enqueues its key view (view 2) every step; 3 steps of 4 keys in a queue of 6.
    method = tiny_method("densecl_r18_demo", "method.queue_size=6", "method.shuffle_bn_groups=1")
    batches = [two_view_batch(4, size) for size in (64, 72, 80)]
    keys = []
    for batch in batches:
        with torch.no_grad():
            method(batch)
        keys.append(_pooled_dense_key(method, batch["view2"]))
    assert int(method.dense_queue.ptr) == int(method.queue.ptr) == 0  # 12 keys: twice round the queue
    expected = torch.cat([keys[1][2:], keys[2]])  # rows 0-1: step 2's last two, rows 2-5: step 3
    assert torch.allclose(method.dense_queue.keys, expected, atol=1e-6)


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def test_densecl_recipe_has_plain_heads_no_predictors_and_constant_momentum(tiny_method):
    method = tiny_method("densecl_r18_demo")
    assert not _has_batch_norm(method.projector) and not _has_batch_norm(method.dense_projector)
    assert isinstance(method.predictor, nn.Identity) and isinstance(method.dense_predictor, nn.Identity)
    assert not method.symmetric and method.shuffle_groups == 2
    assert method.momentum_at(0, 100) == method.momentum_at(60, 100) == 0.999


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


def _swapped(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[:-1] + {"1": "2", "2": "1"}[k[-1]]: v for k, v in batch.items()}


def test_symmetric_loss_adds_both_directions_and_asymmetric_keeps_view1_to_view2(tiny_method, two_view_batch):
    batch = two_view_batch(4, 64)
    both_ways = tiny_method("pixcon_sr_r18_demo")(batch)  # same seed: the three methods start equal
    one_way = tiny_method("pixcon_sr_r18_demo", "method.symmetric=false")(batch)
    other_way = tiny_method("pixcon_sr_r18_demo", "method.symmetric=false")(_swapped(batch))
    for part in ("loss_global", "loss_dense", "loss"):
        assert both_ways[part].item() == pytest.approx(one_way[part].item() + other_way[part].item(), rel=1e-5)
