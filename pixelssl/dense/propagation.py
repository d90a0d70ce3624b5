"""Similarity -> sharpen / softmax -> weighted sum of values.

The one mechanism behind PixPro's Pixel Propagation Module and DeepFill's contextual attention:
both score every query cell against a set of key cells, turn scores into weights, and move values
along those weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Dot product of every column of ``a`` (B, C, Na) with every column of ``b`` (B, C, Nb): (B, Na, Nb).

    DeepFill v1's contextual attention scores raw foreground patches against unit background patches this way.
    """
    return torch.bmm(a.transpose(1, 2), b)


def cosine_similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every column of ``a`` (B, C, Na) with every column of ``b`` (B, C, Nb): (B, Na, Nb)."""
    return similarity_matrix(F.normalize(a, dim=1), F.normalize(b, dim=1))


def sharpen(similarity: Tensor, gamma: float) -> Tensor:
    """PixPro eq. 2: ``max(sim, 0) ** gamma``; 1e-6 is added first when gamma < 1 (as the release does)."""
    s = similarity.clamp(min=0)
    if gamma < 1:
        s = s + 1e-6
    return s.pow(gamma)


def masked_softmax(scores: Tensor, valid: Tensor, scale: float = 1.0) -> Tensor:
    """DeepFill v1 contextual attention: mask invalid keys, softmax(scale * scores) over keys, mask again.

    scores (B, Nq, L); valid broadcastable to it (1 = key may be attended to). Rows with no valid key
    give all-zero weights (not NaN).
    """
    valid = valid.to(scores.dtype)
    weights = torch.softmax(scores * (valid * scale), dim=-1)  # one pass over scores; same values for 0/1 masks
    return weights * valid


def propagate(weights: Tensor, values: Tensor) -> Tensor:
    """Weighted sum of values: weights (B, Nq, Nk) @ values (B, Nk, D) -> (B, Nq, D)."""
    return torch.bmm(weights, values.to(weights.dtype))


def propagation_weights(features: Tensor, gamma: float = 2.0) -> Tensor:
    """PPM's similarity of every cell of a (B, C, N) map to every other: ``max(cos(x_i, x_j), 0) ** gamma``, (B, N, N)."""
    return sharpen(cosine_similarity_matrix(features, features), gamma)


def pixel_propagation(features: Tensor, values: Tensor, gamma: float = 2.0) -> Tensor:
    """PixPro's Pixel Propagation Module on (B, C, H, W) maps, in the release's order:

    ``y_i = normalize(sum_j max(cos(x_i, x_j), 0) ** gamma * normalize(v_j))`` with ``v = g(x)`` given as ``values``.
    """
    b, c, h, w = features.shape
    x = features.flatten(2)  # (B, C, N)
    v = F.normalize(values.flatten(2), dim=1)  # (B, C, N)
    s = propagation_weights(x, gamma)  # (B, N, N), symmetric
    y = propagate(s, v.transpose(1, 2))  # (B, N, C)
    return F.normalize(y.transpose(1, 2), dim=1).reshape(b, -1, h, w)


def propagation_rows(queries: Tensor, units: Tensor, values: Tensor, gamma: float) -> Tensor:
    """Un-normalised PPM output of some query cells, ``sum_j max(q_i . a_j, 0) ** gamma * v_j``: (B, Nq, C).

    queries (B, C, Nq) and units (B, C, N) are unit vectors (the queries a subset of the units), values (B, C, N)
    the normalised ``g(x)``; ``dense.chunked`` runs the PPM block by block of query rows with it.
    """
    return propagate(sharpen(similarity_matrix(queries, units), gamma), values.transpose(1, 2))
