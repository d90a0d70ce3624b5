"""The chunked PixPro matcher / loss / PPM: equal to the unchunked computation (values and gradients), and no
tensor produced on the way (forward or backward) larger than the memory budget."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from pixelssl.dense.chunked import (
    PAIR_BYTES,
    CellPairs,
    chunked_consistency,
    chunked_pixel_propagation,
    rows_per_block,
)
from pixelssl.dense.matching import coordinate_positives
from pixelssl.dense.propagation import pixel_propagation
from pixelssl.losses import pixpro_consistency


class MemoryProbe(TorchDispatchMode):
    """Tensor memory of everything operators return (autograd's backward included): the largest single tensor and
    the peak of live storage bytes (a storage counts until its last tensor is freed)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = self.current = self.peak = 0
        self._live: dict[int, list[int]] = {}  # data_ptr -> [bytes, live tensors]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        self.largest = max(self.largest, t.numel() * t.element_size())
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0:
            return
        entry = self._live.get(ptr)
        if entry is None:
            entry = self._live[ptr] = [nbytes, 0]
            self.current += nbytes
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self._live[ptr]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self._live[ptr]


def _batch(b: int) -> dict[str, torch.Tensor]:
    """Overlapping views, the second flipped in odd images, different boxes per image."""
    g = torch.Generator().manual_seed(b)
    lo = torch.rand(b, 2, generator=g) * 0.3
    hi = 0.6 + torch.rand(b, 2, generator=g) * 0.4
    return {"box1": torch.cat([lo, hi], 1), "box2": torch.cat([lo + 0.1, (hi + 0.1).clamp(max=1.0)], 1),
            "flip1": torch.zeros(b, dtype=torch.bool), "flip2": torch.arange(b) % 2 == 1}


def _budget_for_rows(b: int, cols: int, rows: int) -> float:
    """A budget in MiB that fits exactly ``rows`` query rows against ``cols`` key cells."""
    return rows * b * cols * PAIR_BYTES / 2**20


def test_rows_per_block_fits_the_budget():
    # 1 MiB = 1048576 B; one row of 2 images x 1024 keys x 8 B = 16384 B -> 64 rows.
    assert rows_per_block(2, 3136, 1024, 1.0) == 64
    assert rows_per_block(2, 10, 1024, 1.0) == 10  # never more rows than there are
    assert rows_per_block(2, 3136, 1024, 1e-9) == 1  # at least one row
    assert rows_per_block(2, 3136, 1024, 0) == 3136  # 0 = never split


def test_positives_of_row_blocks_are_rows_of_the_full_mask():
    batch = _batch(3)
    pairs = CellPairs.of_views(batch, (6, 5), (4, 7), 0.7)
    full = coordinate_positives(batch["box1"], batch["flip1"], (6, 5), batch["box2"], batch["flip2"], (4, 7), 0.7)
    assert torch.equal(pairs.positives(), full)
    assert torch.equal(pairs.positives(slice(7, 19)), full[:, 7:19])
    assert torch.equal(pairs.transposed().positives(), full.transpose(1, 2))


@pytest.mark.parametrize("key_grad", [False, True])  # teacher keys (summed per query first) / keys with gradients
@pytest.mark.parametrize("rows", [1, 7, 16])  # 7 does not divide 36: a shorter last block
def test_chunked_consistency_equals_unchunked(rows, key_grad):
    b, c, shape = 3, 8, (6, 6)
    batch = _batch(b)
    pairs = CellPairs.of_views(batch, shape, shape, 0.7)
    g = torch.Generator().manual_seed(rows)
    pred = torch.nn.functional.normalize(torch.randn(b, c, 36, generator=g, dtype=torch.float64), dim=1)
    key = torch.nn.functional.normalize(torch.randn(b, c, 36, generator=g, dtype=torch.float64), dim=1)
    pred_a, pred_b = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    key_a, key_b = key.clone().requires_grad_(key_grad), key.clone().requires_grad_(key_grad)

    expected = pixpro_consistency(pred_a, key_a, pairs.positives())
    loss, counts = chunked_consistency(pred_b, key_b, pairs, _budget_for_rows(b, 36, rows))
    assert rows_per_block(b, 36, 36, _budget_for_rows(b, 36, rows)) == rows
    assert torch.allclose(loss, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(counts, pairs.positives().sum(dim=(1, 2)).to(counts.dtype))
    expected.backward()
    loss.backward()
    assert torch.allclose(pred_b.grad, pred_a.grad, rtol=1e-12, atol=1e-12)
    if key_grad:
        assert torch.allclose(key_b.grad, key_a.grad, rtol=1e-12, atol=1e-12)


def test_chunked_consistency_without_positives_is_zero():
    batch = {"box1": torch.tensor([[0.0, 0.0, 0.3, 0.3]]), "box2": torch.tensor([[0.7, 0.7, 1.0, 1.0]]),
             "flip1": torch.zeros(1, dtype=torch.bool), "flip2": torch.zeros(1, dtype=torch.bool)}
    pairs = CellPairs.of_views(batch, (5, 5), (5, 5), 0.7)
    x = torch.nn.functional.normalize(torch.randn(1, 4, 25), dim=1)
    loss, counts = chunked_consistency(x, x, pairs, _budget_for_rows(1, 25, 3))
    assert float(loss) == 0.0 and float(counts) == 0.0


@pytest.mark.parametrize("rows", [1, 10, 25])
def test_chunked_propagation_equals_unchunked(rows):
    b, c = 2, 6
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(b, c, 7, 5, generator=g, dtype=torch.float64)
    v = torch.randn(b, c, 7, 5, generator=g, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    va, vb = v.clone().requires_grad_(), v.clone().requires_grad_()
    expected = pixel_propagation(xa, va, 2.0)
    got = chunked_pixel_propagation(xb, vb, 2.0, _budget_for_rows(b, 35, rows))
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    w = torch.randn(expected.shape, generator=g, dtype=torch.float64)  # a generic downstream gradient
    (expected * w).sum().backward()
    (got * w).sum().backward()
    assert torch.allclose(xb.grad, xa.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(vb.grad, va.grad, rtol=1e-10, atol=1e-12)


def test_budget_zero_and_small_maps_take_the_unchunked_path_exactly():
    batch = _batch(2)
    pairs = CellPairs.of_views(batch, (4, 4), (4, 4), 0.7)
    x = torch.nn.functional.normalize(torch.randn(2, 5, 16), dim=1)
    expected = pixpro_consistency(x, x.flip(2), pairs.positives())
    for budget in (0.0, 256.0):
        assert torch.equal(chunked_consistency(x, x.flip(2), pairs, budget)[0], expected)
        maps = x.reshape(2, 5, 4, 4)
        assert torch.equal(chunked_pixel_propagation(maps, maps, 2.0, budget), pixel_propagation(maps, maps, 2.0))


@pytest.mark.parametrize("key_grad", [False, True])
def test_memory_stays_within_the_budget_in_forward_and_backward(key_grad):
    """A 24x24 level (N = 576) under a 0.25 MiB budget: the unchunked path holds several (B, N, N) blocks at once;
    the chunked path never creates a tensor over the budget, and its peak of live memory (forward + backward) is a
    few blocks plus the (B, N, C) maps, because each block is recomputed in backward instead of being kept."""
    b, c, shape, budget = 2, 16, (24, 24), 0.25
    n, budget_bytes = shape[0] * shape[1], int(0.25 * 2**20)
    batch = _batch(b)
    pairs = CellPairs.of_views(batch, shape, shape, 0.7)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(b, c, *shape, generator=g).requires_grad_()
    key = torch.nn.functional.normalize(torch.randn(b, c, n, generator=g), dim=1).requires_grad_(key_grad)

    def step(chunk_mib: float) -> tuple[MemoryProbe, float]:
        feats.grad = None
        with MemoryProbe() as probe:
            y = chunked_pixel_propagation(feats, feats * 2, 2.0, chunk_mib)
            loss, _ = chunked_consistency(y.flatten(2), key, pairs, chunk_mib)
            loss.backward()
        return probe, float(loss.detach())

    full, full_loss = step(0.0)
    chunked, chunk_loss = step(budget)
    block, maps = b * n * n * 4, b * n * c * 4
    assert full.largest >= block > budget_bytes and full.peak >= 4 * block
    assert chunked.largest <= budget_bytes
    assert chunked.peak <= 4 * budget_bytes + 16 * maps < full.peak / 8
    assert chunk_loss == pytest.approx(full_loss, rel=1e-5)
