"""The contextual attention layer against hand-built cases, explicit loops and a naive per-sample reference."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from naive_reference import naive_contextual_attention

from pixelssl.dense.propagation import similarity_matrix
from pixelssl.inpaint.contextual_attention import (
    AttentionGrid,
    ContextualAttention,
    attention_weights,
    contextual_attention,
    downsample_by_rate,
    flow_to_image,
    fused_scores,
    resize_nearest,
)
from pixelssl.inpaint.tf_geometry import align_corners_indices


def random_case(batch=2, channels=4, height=16, width=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(batch, channels, height, width, generator=g, dtype=torch.float64)
    mask = torch.zeros(batch, 1, height, width, dtype=torch.float64)
    mask[0, :, 2:9, 3:8] = 1
    mask[-1, :, height // 2:, width // 3:] = 1
    return f, mask


def test_foreground_identical_to_a_background_patch_attends_to_it_with_weight_one():
    g = torch.Generator().manual_seed(1)
    b = 3 * torch.randn(1, 8, 10, 10, generator=g, dtype=torch.float64)
    f = b.clone()
    f[..., 6, 7] = b[..., 2, 3]  # the 1x1... its 3x3 patch differs, so copy the whole neighbourhood
    f[..., 5:8, 6:9] = b[..., 1:4, 2:5]
    mask = torch.zeros(1, 1, 10, 10, dtype=torch.float64)
    mask[..., 4:9, 5:10] = 1
    weights = attention_weights(f, b, mask, rate=1, fuse_k=1)  # (1, 100, 100)
    query, source = 6 * 10 + 7, 2 * 10 + 3
    assert weights[0, query, source] > 0.99
    assert weights[0, query].sum() == pytest.approx(1.0)


def test_identical_region_is_copied_into_the_hole_with_fusion_on():
    g = torch.Generator().manual_seed(2)
    b = 3 * torch.randn(1, 6, 16, 16, generator=g, dtype=torch.float64)
    f = b.clone()
    f[..., 8:15, 8:15] = b[..., 1:8, 1:8]  # the hole's content exists elsewhere in the background
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    mask[..., 9:14, 9:14] = 1
    weights = attention_weights(f, b, mask, rate=1, fuse_k=3)
    for i, j in itertools.product(range(10, 13), range(10, 13)):
        assert weights[0, i * 16 + j, (i - 7) * 16 + (j - 7)] > 0.99


# ------------------------------------------------------------------------ the release's downsampling
def test_downsample_modes_pick_the_release_rows_or_every_rate_th_row():
    x = torch.arange(64 * 32, dtype=torch.float32).view(1, 1, 64, 32)
    release = downsample_by_rate(x, 2, "release")
    assert release.shape == (1, 1, 32, 16)
    assert torch.equal(release, x[:, :, align_corners_indices(64, 32)][..., align_corners_indices(32, 16)])
    assert release[0, 0, 16, 8].item() == 33 * 32 + 17
    assert torch.equal(downsample_by_rate(x, 2, "stride"), x[..., ::2, ::2])
    channels_last = x.permute(0, 2, 3, 1)  # the layer downsamples (B, H, W, C) views along dims 1 and 2
    assert torch.equal(downsample_by_rate(channels_last, 2, "release", dims=(1, 2)), release.permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="unknown downsample mode"):
        downsample_by_rate(x, 2, "bilinear")


def test_hole_patches_never_receive_attention():
    f, mask = random_case()
    weights = attention_weights(f, f, mask)
    small = resize_nearest(mask, (8, 8))[:, 0]  # (B, 8, 8): the release's downsampled mask
    touches_hole = F.max_pool2d(small.unsqueeze(1), 3, 1, 1).flatten(1) > 0  # any hole pixel in the 3x3 patch
    assert torch.all(weights.masked_select(touches_hole.unsqueeze(1).expand_as(weights)) == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 64, dtype=torch.float64))
    _, offsets = contextual_attention(f, f, mask)
    rows = torch.arange(8).view(1, -1, 1) + offsets[:, 0]
    cols = torch.arange(8).view(1, 1, -1) + offsets[:, 1]
    chosen = touches_hole.gather(1, (rows * 8 + cols).flatten(1))  # the patch each location copies from
    assert not chosen.any()


def explicit_fusion(scores: torch.Tensor, fh: int, fw: int, bh: int, bw: int) -> torch.Tensor:
    """The release's two identity-kernel passes written as neighbour sums over the flattened score matrix."""
    p_count, q_count = fh * fw, bh * bw

    def one_pass(s, to_flat_p, to_flat_q):
        out = torch.zeros_like(s)
        for p, q in itertools.product(range(p_count), range(q_count)):
            for d in (-1, 0, 1):
                pp, qq = to_flat_p(p) + d, to_flat_q(q) + d
                if 0 <= pp < p_count and 0 <= qq < q_count:
                    out[p, q] += s[to_index_p[pp], to_index_q[qq]]
        return out

    to_index_p = list(range(p_count))
    to_index_q = list(range(q_count))
    first = one_pass(scores, lambda p: p, lambda q: q)  # row-major order
    # Column-major order: position c holds the cell (c % h, c // h).
    to_index_p = [(c % fh) * fw + c // fh for c in range(p_count)]
    to_index_q = [(c % bh) * bw + c // bh for c in range(q_count)]
    return one_pass(first, lambda p: (p % fw) * fh + p // fw, lambda q: (q % bw) * bh + q // bw)


@pytest.mark.parametrize("fh,fw,bh,bw", [(3, 4, 4, 3), (2, 5, 3, 3)])
def test_fusion_equals_an_explicit_neighbour_sum(fh, fw, bh, bw):
    g = torch.Generator().manual_seed(3)
    queries = torch.randn(1, fh * fw, 5, generator=g, dtype=torch.float64)
    keys = torch.randn(1, bh * bw, 5, generator=g, dtype=torch.float64)
    grid = AttentionGrid(fh, fw, bh, bw)
    raw = similarity_matrix(queries.transpose(1, 2), keys.transpose(1, 2))[0]
    expected = explicit_fusion(raw, fh, fw, bh, bw)
    assert torch.allclose(fused_scores(queries, keys, np.arange(fh * fw), grid, 3)[0], expected)
    rows = np.arange(fw, 2 * fw)  # one block of queries (with its halo recomputed) gives the same rows
    assert torch.allclose(fused_scores(queries, keys, rows, grid, 3)[0], expected[fw:2 * fw])


@pytest.mark.parametrize("shape,stride,fuse_k,rate,downsample", [
    ((2, 4, 16, 16), 1, 3, 2, "release"), ((3, 5, 13, 11), 1, 3, 2, "release"), ((2, 3, 10, 14), 2, 3, 2, "release"),
    ((2, 4, 12, 12), 1, 1, 2, "release"), ((1, 3, 18, 10), 1, 5, 2, "release"), ((2, 3, 9, 7), 1, 3, 1, "release"),
    ((2, 4, 16, 16), 1, 3, 2, "stride"), ((2, 3, 10, 14), 2, 3, 2, "stride"), ((1, 3, 18, 10), 1, 5, 2, "stride"),
])
def test_batched_layer_equals_naive_per_sample_reference(shape, stride, fuse_k, rate, downsample):
    f, mask = random_case(*shape)
    b = torch.randn(shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    out, offsets = contextual_attention(f, b, mask, stride=stride, fuse_k=fuse_k, rate=rate, downsample=downsample)
    ref, ref_offsets = naive_contextual_attention(f, b, mask, stride=stride, fuse_k=fuse_k, rate=rate,
                                                  downsample=downsample)
    assert out.shape == f.shape
    assert torch.allclose(out, ref, atol=1e-12)
    assert torch.equal(offsets, ref_offsets)


@pytest.mark.parametrize("height,width", [(1, 1), (5, 3), (7, 9), (17, 6)])
def test_odd_sizes_keep_the_input_shape(height, width):
    f = torch.randn(2, 3, height, width)
    out, offsets = contextual_attention(f, f, torch.zeros(1, 1, height, width))
    assert out.shape == f.shape
    assert offsets.shape == (2, 2, -(-height // 2), -(-width // 2))


def test_release_and_stride_downsampling_give_different_results():
    f, mask = random_case(1, 4, 16, 16)  # even sizes: 16 -> 8 reads rows 0, 2, ..., 6, 9, ..., 15 vs 0, 2, ..., 14
    release, _ = contextual_attention(f, f, mask)
    stride, _ = contextual_attention(f, f, mask, downsample="stride")
    assert not torch.allclose(release, stride)


def test_chunked_equals_unchunked_with_gradients():
    f, mask = random_case(2, 3, 20, 18)
    f.requires_grad_(True)
    weight = torch.randn(f.shape, dtype=torch.float64)
    whole, off_whole = contextual_attention(f, f, mask)
    (grad_whole,) = torch.autograd.grad((whole * weight).sum(), f)
    chunked, off_chunked = contextual_attention(f, f, mask, memory_budget=200)  # 2-row blocks, checkpointed
    (grad_chunked,) = torch.autograd.grad((chunked * weight).sum(), f)
    assert torch.allclose(whole, chunked, atol=1e-12)
    assert torch.equal(off_whole, off_chunked)
    assert torch.allclose(grad_whole, grad_chunked, atol=1e-10)


def test_layer_is_differentiable():
    f, mask = random_case(1, 2, 6, 6)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: contextual_attention(x, x, mask)[0], (f,), atol=1e-6)


def test_flow_picture_is_the_offsets_picture_upsampled_nearest_as_released():
    f, mask = random_case(1, 4, 16, 16)
    layer = ContextualAttention(rate=2)
    _, offsets = contextual_attention(f, f, mask)
    _, flow = layer(f, f, mask)
    small = flow_to_image(offsets)  # (1, 3, 8, 8)
    # release: resize(flow, scale=rate, func=tf.image.resize_nearest_neighbor): x2 reads cell (i // 2, j // 2)
    assert torch.equal(flow, small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    colours = {tuple(c) for c in small[0].flatten(1).t().tolist()}
    assert {tuple(c) for c in flow[0].flatten(1).t().tolist()} <= colours  # no blended (bilinear) colours
