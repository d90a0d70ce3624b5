"""export.exporters: torchvision / timm / detectron2 exports that load into the real models with the same features."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from pixelssl.errors import PixelSSLError
from pixelssl.export import export
from pixelssl.models.backbones import build_backbone, save_backbone


def _backbone_with_stats(arch: str) -> torch.nn.Module:
    """A random backbone whose BatchNorm statistics are not the defaults, so the round trips test them too."""
    torch.manual_seed(0)
    backbone = build_backbone(arch)
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(7)
    return backbone.eval()


def test_torchvision_export_gives_torchvisions_features(tmp_path):
    ours = _backbone_with_stats("resnet50")
    save_backbone(ours, tmp_path / "w.safetensors")
    [path] = export(tmp_path / "w.safetensors", "torchvision")
    assert path == tmp_path / "w_resnet50_torchvision.pth"
    net = torchvision.models.resnet50(weights=None)
    missing, unexpected = net.load_state_dict(torch.load(path, weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    net.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), ours(x).mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


def test_timm_export_gives_timms_features(tmp_path):
    timm = pytest.importorskip("timm")
    ours = _backbone_with_stats("resnet50")
    save_backbone(ours, tmp_path / "w.safetensors")
    [path] = export(tmp_path / "w.safetensors", "timm", tmp_path / "timm_r50.pth")
    net = timm.create_model("resnet50", pretrained=False)
    missing, unexpected = net.load_state_dict(torch.load(path, weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net.eval().forward_features(x), ours(x), rtol=1e-5, atol=1e-6)


def test_detectron2_pkl_holds_the_run_weights_as_detectron2_reads_them(fpn_run, tmp_path, detectron2_names):
    [path] = export(fpn_run, "detectron2", tmp_path / "d2.pkl")  # FCOS-named FPN files are not detectron2's
    with open(path, "rb") as handle:
        data = pickle.load(handle, encoding="latin1")  # as DetectionCheckpointer._load_file does
    assert data["__author__"] == "pixelssl" and data["matching_heuristics"] is True
    assert set(data["model"]) == set(detectron2_names["resnet18"])
    backbone = load_file(str(fpn_run / "backbone.safetensors"))
    assert data["model"]["res5.1.conv2.norm.running_var"].dtype.name == "float32"
    assert torch.equal(torch.from_numpy(data["model"]["res5.1.conv2.norm.running_var"]),
                       backbone["layer4.1.bn2.running_var"])
    assert torch.equal(torch.from_numpy(data["model"]["res3.0.shortcut.weight"]), backbone["layer2.0.downsample.0.weight"])


def test_an_unknown_format_or_suffix_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(PixelSSLError, match="unknown export format 'onnx'; choose from torchvision, timm, detectron2, "
                                            "safetensors"):
        export(tmp_path / "not_read.safetensors", "onnx")
    save_backbone(build_backbone("resnet18"), tmp_path / "w.safetensors")
    with pytest.raises(PixelSSLError, match=r"--out '.*w\.pt': a safetensors export must end in \.safetensors"):
        export(tmp_path / "w.safetensors", "safetensors", tmp_path / "w.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
