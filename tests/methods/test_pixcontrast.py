"""methods.pixcontrast: PixContrast's pixel InfoNCE against a hand-written reference, with and without its queue."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference_geometry import cell_centre


def _centre(box, flipped, n, side):
    """Cell n of a side x side map (row-major), by the hand formula of ``reference_geometry``."""
    return cell_centre(box, flipped, *divmod(n, side), side, side)


@pytest.mark.parametrize("queue_size", [0, 12])
def test_pixcontrast_loss_equals_a_hand_written_reference(tiny_method, two_view_batch, queue_size):
    method = tiny_method("pixcontrast_r18_demo", f"method.queue_size={queue_size}").double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in two_view_batch(3, 96).items()}
    queue = method.queue.keys.clone() if queue_size else torch.zeros(0, 16, dtype=torch.float64)
    out = method(batch)

    t, ratio = method.settings.temperature, method.settings.pos_ratio
    views = [batch["view1"], batch["view2"]]
    with torch.no_grad():  # network outputs from the modules; positives, in-box cells and the loss by hand
        q = [F.normalize(method.projector(method.backbone(v)), dim=1).flatten(2) for v in views]  # (B, D, 9)
        k = [F.normalize(method.projector_k(method.backbone_k(v)), dim=1).flatten(2) for v in views]
    directions, inside_counts = [], 0
    for a, b in [(0, 1), (1, 0)]:
        terms = []
        for img in range(3):
            box_a, flip_a = batch[f"box{a + 1}"][img].tolist(), bool(batch[f"flip{a + 1}"][img])
            box_b, flip_b = batch[f"box{b + 1}"][img].tolist(), bool(batch[f"flip{b + 1}"][img])
            diagonal = max(math.hypot((bx[2] - bx[0]) / 3, (bx[3] - bx[1]) / 3) for bx in (box_a, box_b))
            for i in range(9):
                x, y = _centre(box_a, flip_a, i, 3)
                inside = box_b[0] <= x <= box_b[2] and box_b[1] <= y <= box_b[3]
                inside_counts += inside
                pos = [j for j in range(9) if math.dist((x, y), _centre(box_b, flip_b, j, 3)) / diagonal < ratio]
                if not inside or not pos:  # only query pixels in the intersection with a positive are averaged
                    continue
                scores = [float(q[a][img][:, i] @ k[b][img][:, j]) / t for j in range(9)]
                scores += [float(q[a][img][:, i] @ n) / t for n in queue]
                numerator = sum(math.exp(scores[j]) for j in pos)
                terms.append(-math.log(numerator / sum(math.exp(s) for s in scores)))
        assert terms
        directions.append(sum(terms) / len(terms))
    assert math.isclose(out["loss"].item(), sum(directions) / 2, rel_tol=1e-9)
    assert out["valid_pixels"].item() == pytest.approx(inside_counts / (2 * 3))


def test_each_step_enqueues_the_pooled_keys_of_one_random_view(tiny_method, two_view_batch):
    method = tiny_method("pixcontrast_r18_demo", "method.queue_size=12")
    batch = two_view_batch(4, 64)
    for step in range(3):
        with torch.no_grad():
            method(batch)
            pooled = [F.normalize(F.normalize(method.projector_k(method.backbone_k(batch[f"view{v}"])), dim=1)
                                  .mean(dim=(2, 3)), dim=1) for v in (1, 2)]
        rows = method.queue.keys[4 * step:4 * step + 4]
        assert any(torch.allclose(rows, pooled[v], atol=1e-6) for v in (0, 1)), step
    assert int(method.queue.ptr) == 0  # 3 steps of 4 keys: once round the queue of 12


def test_without_a_queue_there_is_none_to_fill(tiny_method, two_view_batch):
    method = tiny_method("pixcontrast_r18_demo", "method.queue_size=0")
    assert method.queue is None
    assert torch.isfinite(method(two_view_batch(2, 64))["loss"])
