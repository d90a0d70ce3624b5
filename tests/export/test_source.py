"""export.source: what ``pixelssl export`` reads from a run directory or a weights file."""

from __future__ import annotations

import shutil

import torch
import torchvision
from safetensors.torch import load_file, save_file

from pixelssl.export import export, load_source
from pixelssl.models.backbones import build_backbone


def test_run_export_reads_the_newest_checkpoint_and_writes_the_fpn(fpn_run):
    source = load_source(fpn_run)
    assert "step 2" in source.origin and source.arch == "resnet18"
    written = export(fpn_run, "safetensors")
    assert [p.name for p in written] == ["resnet18_safetensors.safetensors", "fpn.safetensors"]
    assert all(p.parent == fpn_run / "export" for p in written)
    for exported, final in ((written[0], "backbone.safetensors"), (written[1], "fpn.safetensors")):
        a, b = load_file(str(exported)), load_file(str(fpn_run / final))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_without_checkpoints_exports_its_safetensors(fpn_run, tmp_path):
    run = tmp_path / "copied"
    run.mkdir()
    for name in ("config.yaml", "backbone.safetensors", "fpn.safetensors"):
        shutil.copy(fpn_run / name, run / name)
    written = export(run, "torchvision", tmp_path / "out" / "r18.pth")
    assert [p.name for p in written] == ["r18.pth", "fpn.safetensors"]
    net = torchvision.models.resnet18(weights=None)
    missing, _ = net.load_state_dict(torch.load(written[0], weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"]


def test_a_methods_weights_file_gives_its_backbone_without_the_heads_or_fc(tmp_path):
    backbone = build_backbone("resnet18").state_dict()
    state = {**{f"backbone.{k}": v for k, v in backbone.items()}, "projector.0.weight": torch.zeros(4, 512, 1, 1)}
    save_file(state, str(tmp_path / "method.safetensors"))
    source = load_source(tmp_path / "method.safetensors")
    assert source.arch == "resnet18" and source.backbone.keys() == backbone.keys()
    assert source.default_dir == tmp_path and source.stem == "method_resnet18" and not source.extra
    tv = torchvision.models.resnet18(weights=None).state_dict()
    save_file(tv, str(tmp_path / "tv.safetensors"))
    assert not any(k.startswith("fc.") for k in load_source(tmp_path / "tv.safetensors").backbone)
