"""Teacher momentum schedule and EMA, and the negatives queue."""

import math

import pytest
import torch
from torch import nn

from pixelssl.models.momentum import cosine_momentum, ema_update_, make_teacher
from pixelssl.models.queue import FeatureQueue


@pytest.mark.parametrize("step,expected", [(0, 0.99), (50, 0.995), (100, 1.0), (25, 1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)])
def test_cosine_momentum_schedule(step, expected):
    assert math.isclose(cosine_momentum(0.99, step, 100), expected, rel_tol=1e-12)


def test_ema_update_moves_teacher_towards_student():
    student = nn.Linear(3, 2)
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = teacher.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    ema_update_(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, 0.9 * before + 0.1 * student.weight)


def test_queue_wraps_around():
    queue = FeatureQueue(dim=2, size=5)
    keys = torch.arange(14, dtype=torch.float32).view(7, 2)
    queue.enqueue(keys[:3])
    queue.enqueue(keys[3:7])  # 3 + 4 = 7 > 5: two entries wrap to the front
    assert int(queue.ptr) == 2
    assert torch.equal(queue.keys[:2], keys[5:7])
    assert torch.equal(queue.keys[2:5], keys[2:5])


def test_queue_keeps_only_the_newest_when_given_more_than_its_size():
    queue = FeatureQueue(dim=1, size=3)
    queue.enqueue(torch.arange(5, dtype=torch.float32)[:, None])
    assert sorted(queue.keys.flatten().tolist()) == [2.0, 3.0, 4.0]


def test_snapshot_is_a_copy_the_next_enqueue_does_not_change():
    queue = FeatureQueue(dim=2, size=3)
    snapshot = queue.snapshot()
    before = snapshot.clone()
    queue.enqueue(torch.ones(2, 2))
    assert torch.equal(snapshot, before) and not torch.equal(queue.keys, before)
