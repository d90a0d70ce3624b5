"""Self-supervised losses, one function each, on L2-normalised features, and the same losses as ``nn.Module``s
(``PixProConsistency``, ``InfoNCE``, ``DenseInfoNCE``, ``PixelInfoNCE``, ``NegativeCosine``) for one's own loop.

Dense losses take channel-first maps flattened to (B, C, N) and a positive mask (B, N1, N2) from
``pixelssl.dense.matching``; every one is finite when an image has no positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.dist import global_mean


def _fp32(t: Tensor) -> Tensor:
    """Losses are computed in at least fp32 (autocast may hand over bf16/fp16 products)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def pixpro_consistency(pred: Tensor, key: Tensor, positives: Tensor) -> Tensor:
    """PixPro pixel-to-propagation consistency for one direction (release's ``regression_loss``).

    ``pred`` (B, C, N1) and ``key`` (B, C, N2) are normalised; per image the cosine is averaged over
    its positive pairs, then ``-2 * mean`` over the batch. An image without positives contributes 0
    and still counts in the mean (as the release does).
    """
    return consistency_from_sums(*positive_cosine_sums(pred, key, positives))


def positive_cosine_sums(pred: Tensor, key: Tensor, positives: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, the sum of ``cos(pred_i, key_j)`` over positive pairs and the number of positives: two (B,).

    Sums over disjoint row blocks of ``pred`` / ``positives`` add up to the full sums (``dense.chunked``).
    """
    cos = _fp32(torch.bmm(pred.transpose(1, 2), key.to(pred.dtype)))  # (B, N1, N2)
    pos = positives.to(cos.dtype)
    return (cos * pos).sum(dim=(1, 2)), pos.sum(dim=(1, 2))


def consistency_from_sums(cosine_sums: Tensor, counts: Tensor) -> Tensor:
    """PixPro's reduction: per image mean cosine over its positives, then ``-2 * mean`` over the batch."""
    return -2.0 * (cosine_sums / (counts + 1e-6)).mean()


def negative_cosine(pred: Tensor, target: Tensor) -> Tensor:
    """BYOL-style regression ``-2 * mean(cos(pred, target))`` on (B, C) vectors (PixPro instance branch)."""
    return -2.0 * (F.normalize(_fp32(pred), dim=1) * F.normalize(_fp32(target), dim=1)).sum(dim=1).mean()


def info_nce(query: Tensor, key: Tensor, negatives: Tensor | None, temperature: float,
             reduction: str = "mean") -> Tensor:
    """Instance InfoNCE (MoCo): the positive of query i is key i.

    With a queue, negatives are its entries (K, C); without one, the other keys of the batch.
    ``reduction="none"`` gives the (B,) per-query losses.
    """
    query, key = _fp32(query), _fp32(key).to(_fp32(query).dtype)
    if negatives is None:
        logits = query @ key.t() / temperature  # (B, B): diagonal = positives
        labels = torch.arange(query.shape[0], device=query.device)
        return F.cross_entropy(logits, labels, reduction=reduction)
    # Cross-entropy with the positive as class 0 of [pos, neg] / t, as log(e^pos + sum e^neg) - pos with 1/t applied
    # to the (B, C) queries: the (B, K) logits (K = 65536 queue entries per pixel for DenseCL and PixCon) live in one
    # buffer, are never concatenated, divided or copied, and take one exp each (see _QueueLogSumExp).
    scaled = query / temperature
    pos = (scaled * key).sum(dim=1)  # (B,)
    per_query = _QueueLogSumExp.apply(pos, scaled, negatives.to(query.dtype)) - pos
    return {"none": per_query, "sum": per_query.sum(), "mean": per_query.mean()}[reduction]


class _QueueLogSumExp(torch.autograd.Function):
    """``log(e^pos_i + sum_k e^{q_i . n_k})`` per row for (B, C) queries q and a (K, C) queue n.

    Written out because the (B, K) logits dominate DenseCL's and PixCon's losses (6272 x 65536 for a batch of
    128): one buffer holds the logits, then in place their exponentials, which backward turns in place into the
    logits' gradient (their share of the row's sum). On a CPU, where fresh buffers this size cost their page faults,
    this made PixCon-SR's ResNet-50 step 10% faster than log-softmax over concatenated logits. The matmuls run in
    autocast's precision when it is on (as ``q @ n.T`` would); the exponentials and sums in fp32.
    """

    @staticmethod
    def forward(ctx, pos: Tensor, query: Tensor, negatives: Tensor) -> Tensor:  # type: ignore[override]
        logits = query @ negatives.t()
        ctx.matmul_dtype = logits.dtype
        exp_neg, pos = _fp32(logits), _fp32(pos)
        shift = torch.maximum(pos, exp_neg.amax(dim=1))  # stability; any per-row constant gives the same value
        exp_neg.sub_(shift[:, None]).exp_()
        exp_pos = (pos - shift).exp()
        total = exp_pos + exp_neg.sum(dim=1)
        ctx.save_for_backward(exp_pos, exp_neg, total, query, negatives)
        ctx.used = False
        return shift + total.log()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:  # type: ignore[override]
        if ctx.used:
            raise RuntimeError("info_nce's queue term cannot be differentiated twice (its buffer is reused)")
        ctx.used = True
        exp_pos, exp_neg, total, query, negatives = ctx.saved_tensors
        share = grad / total
        d_logits = exp_neg.mul_(share[:, None]).to(ctx.matmul_dtype)
        d_query = (d_logits @ negatives.to(ctx.matmul_dtype)).to(query.dtype) if ctx.needs_input_grad[1] else None
        d_negatives = ((d_logits.t() @ query.to(ctx.matmul_dtype)).to(negatives.dtype)
                       if ctx.needs_input_grad[2] else None)
        return exp_pos * share, d_query, d_negatives


def dense_info_nce(query: Tensor, key: Tensor, negatives: Tensor, temperature: float,
                   weights: Tensor | None = None) -> Tensor:
    """DenseCL / PixCon dense InfoNCE: each query pixel against its matched key pixel and a queue.

    ``query`` (B, C, N) and ``key`` (B, C, N) are normalised, ``key[:, :, i]`` being the positive of query pixel i
    (gathered by ``dense.matching``); ``negatives`` (K, C) are queue entries (pooled dense keys of other images).
    ``l_i = -log(e^{q_i.k_i/t} / (e^{q_i.k_i/t} + sum_n e^{q_i.n/t}))``; the result is the weighted mean over all
    pixels of the batch ``sum_i w_i l_i / sum_i w_i`` (PixCon-SR, release's ``weights_flat``; a plain mean when
    ``weights`` is None, as DenseCL), 0 when every weight is 0.

        >>> index = feature_argmax(backbone_q, backbone_k)[1]
        >>> key = gather_cells(dense_k, index)
        >>> loss = dense_info_nce(dense_q, key, queue.keys, 0.2)
    """
    b, c, n = query.shape
    flat_q = query.transpose(1, 2).reshape(b * n, c)
    flat_k = key.transpose(1, 2).reshape(b * n, c)
    per_pixel = info_nce(flat_q, flat_k, negatives, temperature, reduction="none")  # (B*N,)
    if weights is None:
        return per_pixel.mean()
    w = weights.reshape(-1).to(per_pixel.dtype)
    # Normalised over the global batch under torchrun: ranks hold different weight sums (global_mean).
    return global_mean((per_pixel * w).sum(), w.sum(), torch.finfo(w.dtype).tiny)


def pixel_info_nce(
    query: Tensor, key: Tensor, positives: Tensor, valid: Tensor, temperature: float,
    negatives: Tensor | None = None,
) -> Tensor:
    """PixContrast: for each query pixel i, ``-log(sum_pos e^{s/t} / (sum_pos e^{s/t} + sum_neg e^{s/t}))``.

    query (B, C, N1) and key (B, C, N2) normalised; positives (B, N1, N2); the other key pixels of the same
    image (and the optional extra ``negatives`` (K, C)) are negatives. Averaged over valid query pixels
    (inside the views' intersection) of the whole (global) batch; pixels without any positive are never averaged.
    """
    logits = _fp32(torch.bmm(query.transpose(1, 2), key.to(query.dtype))) / temperature  # (B, N1, N2)
    pos = positives.to(torch.bool)
    has_pos = pos.any(dim=-1)
    valid = valid.to(torch.bool) & has_pos
    # Rows without positives are excluded below; give them a finite numerator so no NaN reaches backward.
    pos = pos | ~has_pos[..., None]
    log_denominator = torch.logsumexp(logits, dim=-1)
    if negatives is not None:  # the queue's share of the denominator, without concatenating (B, N1, N2 + K) logits
        extra = torch.einsum("bcn,kc->bnk", _fp32(query) / temperature, negatives.to(logits.dtype))  # (B, N1, K)
        log_denominator = torch.logaddexp(log_denominator, torch.logsumexp(extra, dim=-1))
    log_numerator = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=-1)
    per_pixel = torch.where(valid, log_denominator - log_numerator, torch.zeros_like(log_denominator))
    return global_mean(per_pixel.sum(), valid.sum(), 1.0)  # ranks hold different numbers of valid pixels


# --------------------------------------------------------------------------- the losses as modules
class PixProConsistency(nn.Module):
    """PixPro's pixel-to-propagation consistency, one direction (Xie et al., "Propagate Yourself: Exploring
    Pixel-Level Consistency for Unsupervised Visual Representation Learning", CVPR 2021): per image, minus
    twice the mean cosine between the propagated features ``pred`` (B, C, N1) and the momentum features ``key``
    (B, C, N2) over the positive pairs (B, N1, N2); averaged over the batch. Add both directions for PixPro's loss.

        >>> pred, key = F.normalize(torch.randn(2, 16, 49), dim=1), F.normalize(torch.randn(2, 16, 49), dim=1)
        >>> positives = torch.rand(2, 49, 49) < 0.05  # e.g. dense.matching.coordinate_positives(...)
        >>> loss = PixProConsistency()(pred, key, positives)  # in [-2, 2]; -2 when every positive pair agrees
    """

    def forward(self, pred: Tensor, key: Tensor, positives: Tensor) -> Tensor:
        return pixpro_consistency(pred, key, positives)


class InfoNCE(nn.Module):
    """Instance InfoNCE (van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018;
    as MoCo uses it: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020):
    ``-log(e^{q.k+/t} / (e^{q.k+/t} + sum_n e^{q.n/t}))`` per query, the positive of query i being key i; negatives
    from a queue (K, C), or, without one, the batch's other keys.

        >>> q, k = F.normalize(torch.randn(8, 128), dim=1), F.normalize(torch.randn(8, 128), dim=1)
        >>> queue = F.normalize(torch.randn(4096, 128), dim=1)  # or None: the other keys of the batch
        >>> loss = InfoNCE(temperature=0.2)(q, k, queue)
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, query: Tensor, key: Tensor, negatives: Tensor | None = None) -> Tensor:
        return info_nce(query, key, negatives, self.temperature)


class DenseInfoNCE(nn.Module):
    """DenseCL's dense InfoNCE (Wang et al., "Dense Contrastive Learning for Self-Supervised Visual Pre-Training",
    CVPR 2021): each query pixel of ``query`` (B, C, N) against its matched key pixel ``key[..., i]`` and a
    queue (K, C); the mean over all pixels, or the weighted mean ``sum w_i l_i / sum w_i`` of PixCon-SR (Pang et
    al., "Revisiting Pixel-Level Contrastive Pre-Training on Scene Images", WACV 2024) with ``weights`` (B, N).

        >>> q, k = F.normalize(torch.randn(2, 128, 49), dim=1), F.normalize(torch.randn(2, 128, 49), dim=1)
        >>> queue = F.normalize(torch.randn(4096, 128), dim=1)  # k[..., i]: the key pixel matched to query pixel i
        >>> loss = DenseInfoNCE(temperature=0.2)(q, k, queue)
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, query: Tensor, key: Tensor, negatives: Tensor, weights: Tensor | None = None) -> Tensor:
        return dense_info_nce(query, key, negatives, self.temperature, weights)


class PixelInfoNCE(nn.Module):
    """PixContrast's pixel InfoNCE (the contrastive baseline of Xie et al.'s PixPro paper, CVPR 2021): for query
    pixel i, ``-log(sum_pos e^{s/t} / sum_all e^{s/t})`` over the key pixels of the same image (``positives``
    (B, N1, N2) marks the positives, the others are negatives, plus an optional queue (K, C)), averaged over the
    ``valid`` (B, N1) query pixels of the batch.

        >>> q, k = F.normalize(torch.randn(2, 128, 49), dim=1), F.normalize(torch.randn(2, 128, 49), dim=1)
        >>> positives, valid = torch.eye(49, dtype=torch.bool).expand(2, 49, 49), torch.ones(2, 49, dtype=torch.bool)
        >>> loss = PixelInfoNCE(temperature=0.3)(q, k, positives, valid)
    """

    def __init__(self, temperature: float = 0.3) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, query: Tensor, key: Tensor, positives: Tensor, valid: Tensor,
                negatives: Tensor | None = None) -> Tensor:
        return pixel_info_nce(query, key, positives, valid, self.temperature, negatives)


class NegativeCosine(nn.Module):
    """BYOL's regression loss (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020):
    ``-2 * mean(cos(pred, target))`` on (B, C) vectors, 2 - 2 cos up to a constant (PixPro+'s instance branch).

        >>> pred, target = torch.randn(8, 256), torch.randn(8, 256)
        >>> loss = NegativeCosine()(pred, target)  # -2 when every pair points the same way
        >>> bool(-2 <= loss <= 2)
        True
    """

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return negative_cosine(pred, target)
