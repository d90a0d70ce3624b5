"""methods.pixpro: PixPro's loss against a hand-written reference, the value transform, PixPro+ and the chunked matcher."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference_geometry import cell_centre
from torch import nn

from pixelssl.methods.pixpro import value_transform
from pixelssl.models.heads import ConvMLP


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a / a.norm()) @ (b / b.norm()))


def _centre(box, flipped, n, side):
    """Cell n of a side x side map (row-major), by the hand formula of ``reference_geometry``."""
    return cell_centre(box, flipped, *divmod(n, side), side, side)


def _double(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


def test_pixpro_loss_equals_a_hand_written_reference(tiny_method, two_view_batch):
    method = tiny_method("pixpro_r18_demo").double()
    batch = _double(two_view_batch(3, 96))
    out = method(batch)

    gamma, ratio = method.settings.ppm_gamma, method.settings.pos_ratio
    views = [batch["view1"], batch["view2"]]
    with torch.no_grad():  # network outputs from the modules; the PPM, the positives and the loss by hand
        x = [method.projector(method.backbone(v)).flatten(2) for v in views]  # (B, D, 9)
        g = [method.value_transform(method.projector(method.backbone(v))).flatten(2) for v in views]
        keys = [method.projector_k(method.backbone_k(v)).flatten(2) for v in views]
    total, positives = 0.0, []
    for a, b in [(0, 1), (1, 0)]:
        per_image = []
        for img in range(3):
            # PPM: y_i = sum_j max(cos(x_i, x_j), 0) ** gamma * g(x_j) / |g(x_j)|
            y = [sum(max(_cos(x[a][img][:, i], x[a][img][:, j]), 0.0) ** gamma * F.normalize(g[a][img][:, j], dim=0)
                     for j in range(9)) for i in range(9)]
            box_a, flip_a = batch[f"box{a + 1}"][img].tolist(), bool(batch[f"flip{a + 1}"][img])
            box_b, flip_b = batch[f"box{b + 1}"][img].tolist(), bool(batch[f"flip{b + 1}"][img])
            diagonal = max(math.hypot((bx[2] - bx[0]) / 3, (bx[3] - bx[1]) / 3) for bx in (box_a, box_b))
            pairs = [(i, j) for i in range(9) for j in range(9)
                     if math.dist(_centre(box_a, flip_a, i, 3), _centre(box_b, flip_b, j, 3)) / diagonal < ratio]
            cosines = [_cos(y[i], keys[b][img][:, j]) for i, j in pairs]
            per_image.append(sum(cosines) / (len(cosines) + 1e-6))
            if a == 0:
                positives.append(len(pairs))
        total += -2.0 * sum(per_image) / 3
    assert 0 < min(positives) and max(positives) < 81  # both kinds of pair occur
    assert math.isclose(out["loss"].item(), total, rel_tol=1e-9)
    assert out["loss_dense"].item() == out["loss"].item()  # no instance branch in this preset
    assert out["positives_per_image"].item() == pytest.approx(sum(positives) / 3)


def test_pixpro_plus_adds_the_instance_branch_pooled_after_its_predictor(tiny_method, two_view_batch):
    method = tiny_method("pixpro_r18_demo", "method.ins_loss_weight=0.5").double()
    batch = _double(two_view_batch(4, 64))
    out = method(batch)
    views = [batch["view1"], batch["view2"]]
    with torch.no_grad():  # the release's order: per-pixel projector and predictor, then average pooling
        preds = [method.predictor(method.projector_instance(method.backbone(v))).mean(dim=(2, 3)) for v in views]
        targets = [method.projector_instance_k(method.backbone_k(v)).mean(dim=(2, 3)) for v in views]
    expected = sum(-2.0 * F.cosine_similarity(preds[a], targets[1 - a], dim=1).mean() for a in (0, 1))
    assert math.isclose(out["loss_instance"].item(), float(expected), rel_tol=1e-9)
    assert math.isclose(out["loss"].item(), out["loss_dense"].item() + 0.5 * out["loss_instance"].item(), rel_tol=1e-12)
    names = {name.split(".")[0] for name, _ in method.named_parameters()}
    assert {"projector_instance", "projector_instance_k", "predictor"} <= names
    assert "predictor_k" not in names  # the predictor is online only (BYOL asymmetry)


def test_value_transform_layers_choose_identity_conv_or_mlp():
    assert isinstance(value_transform(0, 8), nn.Identity)
    one = value_transform(1, 8)
    assert isinstance(one, nn.Conv2d) and one.kernel_size == (1, 1) and one.in_channels == one.out_channels == 8
    assert isinstance(value_transform(2, 8), ConvMLP)


def test_plain_pixpro_with_chunking_matches_unchunked(tiny_method, two_view_batch):
    batch = two_view_batch(2, 96)
    losses = [float(tiny_method("pixpro_r18_demo", f"method.match_chunk_mib={b}")(batch)["loss"].detach()) for b in (0, 0.001)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
