"""data.loader: pre-training batches depend only on (seed, step), the basis of exact resume; each process takes a
contiguous shard of them."""

import torch

from pixelssl.data.augment import build_augment
from pixelssl.data.loader import StepBatchSampler, TwoViewDataset, collate_pairs
from pixelssl.data.synthetic import SyntheticScenes
from pixelssl.data.views import TwoViewSampler


def test_resumed_sampler_continues_the_same_batches():
    full = list(StepBatchSampler(num_items=10, batch_size=3, seed=5, start_step=0, total_steps=7))
    resumed = list(StepBatchSampler(num_items=10, batch_size=3, seed=5, start_step=4, total_steps=7))
    assert resumed == full[4:]


def test_each_epoch_is_a_permutation_without_repeats():
    batches = list(StepBatchSampler(num_items=9, batch_size=3, seed=0, start_step=0, total_steps=6))
    for epoch in (0, 1):
        items = [i for b in batches[3 * epoch:3 * epoch + 3] for (e, i) in b]
        assert sorted(items) == list(range(9)) and all(e == epoch for b in batches[3 * epoch:3 * epoch + 3] for e, _ in b)
    assert batches[0] != batches[3]  # a new order every epoch


def test_a_sample_does_not_depend_on_what_was_drawn_before():
    source = SyntheticScenes(4, size=64)
    dataset = TwoViewDataset(source, TwoViewSampler(size=32), (build_augment("byol", 0), build_augment("byol", 1)), 0)
    first = dataset[(1, 2)]
    dataset[(0, 3)]
    torch.rand(10)  # the global RNG moving on must not matter either
    again = dataset[(1, 2)]
    for key in ("view1", "view2", "box1", "box2", "flip1", "flip2"):
        assert torch.equal(first[key], again[key]), key
    batch = collate_pairs([first, again])
    assert batch["view1"].shape == (2, 3, 32, 32) and batch["skipped"] == []


def test_step_shards_are_disjoint_and_concatenate_to_the_global_batch():
    whole = list(StepBatchSampler(num_items=20, batch_size=6, seed=3, start_step=0, total_steps=5))
    shards = [list(StepBatchSampler(20, 6, 3, 0, 5, rank=r, world_size=3)) for r in range(3)]
    for step, batch in enumerate(whole):
        assert [item for shard in shards for item in shard[step]] == batch
    resumed = list(StepBatchSampler(20, 6, 3, start_step=2, total_steps=5, rank=1, world_size=3))
    assert resumed == shards[1][2:]
