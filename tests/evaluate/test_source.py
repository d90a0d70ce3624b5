"""Backbone sources: run directories, weights files, random and torchvision controls, and their errors."""

from __future__ import annotations

import pytest
import torch
import torchvision

from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.source import resolve_backbone
from pixelssl.io import sha256_file
from pixelssl.models.backbones import build_backbone, save_backbone


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def weights(tmp_path):
    model = build_backbone("resnet18")
    path = tmp_path / "backbone.safetensors"
    save_backbone(model, path)
    return model, path


def test_random_is_seeded_and_describes_itself():
    first, info = resolve_backbone("random", "resnet18", seed=3)
    second, _ = resolve_backbone("random", "resnet18", seed=3)
    assert _same_weights(first, second)
    assert info == {"kind": "random", "arch": "resnet18", "seed": 3}


def test_torchvision_control_and_local_torchvision_checkpoint(tmp_path):
    backbone, info = resolve_backbone("torchvision", "resnet18")
    assert info["kind"] == "torchvision" and backbone.channels["c5"] == 512
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-local.pth"
    torch.save(net.state_dict(), path)
    loaded, info = resolve_backbone(f"torchvision:{path}", "resnet18")
    assert torch.equal(loaded.conv1.weight, net.conv1.weight)
    assert info["sha256"] == sha256_file(path)


def test_weights_file_with_inferred_arch(weights):
    model, path = weights
    loaded, info = resolve_backbone(str(path))
    assert _same_weights(loaded, model)
    assert info["kind"] == "file" and info["arch"] == "resnet18" and info["sha256"] == sha256_file(path)


def test_run_directory_reads_its_config(weights):
    model, path = weights
    (path.parent / "config.yaml").write_text("model:\n  backbone: resnet18\n")
    loaded, info = resolve_backbone(str(path.parent))
    assert _same_weights(loaded, model)
    assert info["kind"] == "run" and info["arch"] == "resnet18"
    with pytest.raises(PixelSSLError, match="trained a resnet18 but --arch resnet50"):
        resolve_backbone(str(path.parent), "resnet50")


def test_errors_name_the_path_and_the_problem(tmp_path, weights):
    _, path = weights
    with pytest.raises(PixelSSLError, match="not a run directory, a weights file"):
        resolve_backbone(str(tmp_path / "nothing"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(PixelSSLError, match="has no config.yaml"):
        resolve_backbone(str(tmp_path / "empty_dir"))
    with pytest.raises(PixelSSLError, match="does not fit this backbone"):
        resolve_backbone(str(path), "resnet50")
    with pytest.raises(PixelSSLError, match="do not exist"):
        resolve_backbone(str(tmp_path / "missing.safetensors"))
    with pytest.raises(PixelSSLError, match="unknown backbone"):
        resolve_backbone("random", "resnet7")
