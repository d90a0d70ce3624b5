"""MoCo-v2: the released one-direction loss against a hand computation, and the symmetrised option."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _batch(b: int = 4, size: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"view1": torch.randn(b, 3, size, size, generator=g), "view2": torch.randn(b, 3, size, size, generator=g),
            "box1": torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(b, 1), "box2": torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(b, 1),
            "flip1": torch.zeros(b, dtype=torch.bool), "flip2": torch.zeros(b, dtype=torch.bool)}


def test_released_moco_loss_is_view1_queries_against_view2_keys(tiny_method):
    method = tiny_method("moco_r18_demo", "method.symmetric=false", "method.shuffle_bn_groups=1").double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in _batch().items()}
    queue = method.queue.keys.clone()  # (K, D)
    loss = float(method(batch)["loss"])

    with torch.no_grad():
        q = F.normalize(method.head(method.backbone(batch["view1"]).mean(dim=(2, 3))), dim=1)
        k = F.normalize(method.head_k(method.backbone_k(batch["view2"]).mean(dim=(2, 3))), dim=1)
    t = method.temperature
    expected = 0.0
    for i in range(q.shape[0]):  # facebookresearch/moco builder.py: logits [q.k+, q.queue] / t, label 0
        pos = math.exp(float(q[i] @ k[i]) / t)
        neg = sum(math.exp(float(q[i] @ n) / t) for n in queue)
        expected += -math.log(pos / (pos + neg)) / q.shape[0]
    assert math.isclose(loss, expected, rel_tol=1e-9)


def test_released_moco_enqueues_the_keys_of_view2(tiny_method):
    method = tiny_method("moco_r18_demo", "method.symmetric=false", "method.shuffle_bn_groups=1")
    batch = _batch()
    with torch.no_grad():
        method(batch)
        k = F.normalize(method.head_k(method.backbone_k(batch["view2"]).mean(dim=(2, 3))), dim=1)
    assert torch.allclose(method.queue.keys[: k.shape[0]], k, atol=1e-5)


def test_symmetric_moco_averages_both_directions(tiny_method):
    one_way = tiny_method("moco_r18_demo", "method.symmetric=false", "method.shuffle_bn_groups=1")
    both = tiny_method("moco_r18_demo", "method.symmetric=true", "method.shuffle_bn_groups=1")
    swapped = {"view1": _batch()["view2"], "view2": _batch()["view1"]}
    forward = float(one_way(_batch())["loss"])
    backward = float(tiny_method("moco_r18_demo", "method.symmetric=false", "method.shuffle_bn_groups=1")(
        {**_batch(), **swapped})["loss"])
    assert math.isclose(float(both(_batch())["loss"]), 0.5 * (forward + backward), rel_tol=1e-5)


def test_moco_r50_preset_is_the_released_one_direction_loss():
    from pixelssl.config import PretrainConfig, load_config

    assert not load_config(PretrainConfig, "moco_r50").method.symmetric
