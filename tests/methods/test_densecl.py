"""methods.densecl: DenseCL's release recipe on the shared core, matching by feature argmax with every pixel weighted 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def test_densecl_recipe_has_plain_heads_no_predictors_and_constant_momentum(tiny_method):
    method = tiny_method("densecl_r18_demo")
    assert not _has_batch_norm(method.projector) and not _has_batch_norm(method.dense_projector)
    assert isinstance(method.predictor, nn.Identity) and isinstance(method.dense_predictor, nn.Identity)
    assert not method.symmetric and method.shuffle_groups == 2
    assert method.momentum_at(0, 100) == method.momentum_at(60, 100) == 0.999


def test_densecl_matches_by_feature_argmax_and_weighs_every_query_pixel_equally(tiny_method, two_view_batch):
    method = tiny_method("densecl_r18_demo")
    g = torch.Generator().manual_seed(4)
    query, key = torch.randn(4, 32, 3, 3, generator=g), torch.randn(4, 32, 3, 3, generator=g)
    index, weights = method.match(query, key, two_view_batch(4), 1, 2)
    cosines = F.normalize(query.flatten(2), dim=1).transpose(1, 2) @ F.normalize(key.flatten(2), dim=1)  # (B, 9, 9)
    assert torch.equal(index, cosines.argmax(dim=2))
    assert torch.equal(weights, torch.ones(4, 9))
