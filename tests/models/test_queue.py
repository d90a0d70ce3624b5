"""models.queue: the FIFO queue of negatives wraps around, keeps the newest keys, and hands out snapshots."""

import pytest
import torch

from pixelssl.models.queue import FeatureQueue


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


def test_a_new_queue_holds_unit_vectors_and_an_empty_one_is_refused():
    queue = FeatureQueue(dim=8, size=6)
    assert queue.keys.shape == (6, 8) and int(queue.ptr) == 0 and queue.size == 6
    torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(6))
    assert set(dict(queue.named_buffers())) == {"keys", "ptr"}  # checkpointed with the model
    with pytest.raises(ValueError, match="queue size must be >= 1"):
        FeatureQueue(dim=8, size=0)
