"""pixelssl export: torchvision / timm state dicts that load into the real models and give the same features,
detectron2 .pkl files in detectron2's ResNet names, safetensors, from run directories and weights files."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from pixelssl.cli import main
from pixelssl.config import PretrainConfig, load_config
from pixelssl.errors import PixelSSLError
from pixelssl.export import detectron2_name, export, load_source
from pixelssl.models.backbones import build_backbone, save_backbone
from pixelssl.train.loop import pretrain

# detectron2's ResNet-50 parameter and buffer names (detectron2/modeling/backbone/resnet.py: BasicStem.conv1,
# stages res2-res5 of 3/4/6/3 BottleneckBlocks with conv1-conv3 and, in block 0, a projection shortcut; every conv
# a detectron2 Conv2d whose FrozenBatchNorm2d is `norm`).
D2_R50 = """
    stem.conv1.weight stem.conv1.norm.weight stem.conv1.norm.bias stem.conv1.norm.running_mean
    stem.conv1.norm.running_var res2.0.shortcut.weight res2.0.shortcut.norm.weight res2.0.shortcut.norm.bias
    res2.0.shortcut.norm.running_mean res2.0.shortcut.norm.running_var res2.0.conv1.weight res2.0.conv1.norm.weight
    res2.0.conv1.norm.bias res2.0.conv1.norm.running_mean res2.0.conv1.norm.running_var res2.0.conv2.weight
    res2.0.conv2.norm.weight res2.0.conv2.norm.bias res2.0.conv2.norm.running_mean res2.0.conv2.norm.running_var
    res2.0.conv3.weight res2.0.conv3.norm.weight res2.0.conv3.norm.bias res2.0.conv3.norm.running_mean
    res2.0.conv3.norm.running_var res2.1.conv1.weight res2.1.conv1.norm.weight res2.1.conv1.norm.bias
    res2.1.conv1.norm.running_mean res2.1.conv1.norm.running_var res2.1.conv2.weight res2.1.conv2.norm.weight
    res2.1.conv2.norm.bias res2.1.conv2.norm.running_mean res2.1.conv2.norm.running_var res2.1.conv3.weight
    res2.1.conv3.norm.weight res2.1.conv3.norm.bias res2.1.conv3.norm.running_mean res2.1.conv3.norm.running_var
    res2.2.conv1.weight res2.2.conv1.norm.weight res2.2.conv1.norm.bias res2.2.conv1.norm.running_mean
    res2.2.conv1.norm.running_var res2.2.conv2.weight res2.2.conv2.norm.weight res2.2.conv2.norm.bias
    res2.2.conv2.norm.running_mean res2.2.conv2.norm.running_var res2.2.conv3.weight res2.2.conv3.norm.weight
    res2.2.conv3.norm.bias res2.2.conv3.norm.running_mean res2.2.conv3.norm.running_var res3.0.shortcut.weight
    res3.0.shortcut.norm.weight res3.0.shortcut.norm.bias res3.0.shortcut.norm.running_mean
    res3.0.shortcut.norm.running_var res3.0.conv1.weight res3.0.conv1.norm.weight res3.0.conv1.norm.bias
    res3.0.conv1.norm.running_mean res3.0.conv1.norm.running_var res3.0.conv2.weight res3.0.conv2.norm.weight
    res3.0.conv2.norm.bias res3.0.conv2.norm.running_mean res3.0.conv2.norm.running_var res3.0.conv3.weight
    res3.0.conv3.norm.weight res3.0.conv3.norm.bias res3.0.conv3.norm.running_mean res3.0.conv3.norm.running_var
    res3.1.conv1.weight res3.1.conv1.norm.weight res3.1.conv1.norm.bias res3.1.conv1.norm.running_mean
    res3.1.conv1.norm.running_var res3.1.conv2.weight res3.1.conv2.norm.weight res3.1.conv2.norm.bias
    res3.1.conv2.norm.running_mean res3.1.conv2.norm.running_var res3.1.conv3.weight res3.1.conv3.norm.weight
    res3.1.conv3.norm.bias res3.1.conv3.norm.running_mean res3.1.conv3.norm.running_var res3.2.conv1.weight
    res3.2.conv1.norm.weight res3.2.conv1.norm.bias res3.2.conv1.norm.running_mean res3.2.conv1.norm.running_var
    res3.2.conv2.weight res3.2.conv2.norm.weight res3.2.conv2.norm.bias res3.2.conv2.norm.running_mean
    res3.2.conv2.norm.running_var res3.2.conv3.weight res3.2.conv3.norm.weight res3.2.conv3.norm.bias
    res3.2.conv3.norm.running_mean res3.2.conv3.norm.running_var res3.3.conv1.weight res3.3.conv1.norm.weight
    res3.3.conv1.norm.bias res3.3.conv1.norm.running_mean res3.3.conv1.norm.running_var res3.3.conv2.weight
    res3.3.conv2.norm.weight res3.3.conv2.norm.bias res3.3.conv2.norm.running_mean res3.3.conv2.norm.running_var
    res3.3.conv3.weight res3.3.conv3.norm.weight res3.3.conv3.norm.bias res3.3.conv3.norm.running_mean
    res3.3.conv3.norm.running_var res4.0.shortcut.weight res4.0.shortcut.norm.weight res4.0.shortcut.norm.bias
    res4.0.shortcut.norm.running_mean res4.0.shortcut.norm.running_var res4.0.conv1.weight res4.0.conv1.norm.weight
    res4.0.conv1.norm.bias res4.0.conv1.norm.running_mean res4.0.conv1.norm.running_var res4.0.conv2.weight
    res4.0.conv2.norm.weight res4.0.conv2.norm.bias res4.0.conv2.norm.running_mean res4.0.conv2.norm.running_var
    res4.0.conv3.weight res4.0.conv3.norm.weight res4.0.conv3.norm.bias res4.0.conv3.norm.running_mean
    res4.0.conv3.norm.running_var res4.1.conv1.weight res4.1.conv1.norm.weight res4.1.conv1.norm.bias
    res4.1.conv1.norm.running_mean res4.1.conv1.norm.running_var res4.1.conv2.weight res4.1.conv2.norm.weight
    res4.1.conv2.norm.bias res4.1.conv2.norm.running_mean res4.1.conv2.norm.running_var res4.1.conv3.weight
    res4.1.conv3.norm.weight res4.1.conv3.norm.bias res4.1.conv3.norm.running_mean res4.1.conv3.norm.running_var
    res4.2.conv1.weight res4.2.conv1.norm.weight res4.2.conv1.norm.bias res4.2.conv1.norm.running_mean
    res4.2.conv1.norm.running_var res4.2.conv2.weight res4.2.conv2.norm.weight res4.2.conv2.norm.bias
    res4.2.conv2.norm.running_mean res4.2.conv2.norm.running_var res4.2.conv3.weight res4.2.conv3.norm.weight
    res4.2.conv3.norm.bias res4.2.conv3.norm.running_mean res4.2.conv3.norm.running_var res4.3.conv1.weight
    res4.3.conv1.norm.weight res4.3.conv1.norm.bias res4.3.conv1.norm.running_mean res4.3.conv1.norm.running_var
    res4.3.conv2.weight res4.3.conv2.norm.weight res4.3.conv2.norm.bias res4.3.conv2.norm.running_mean
    res4.3.conv2.norm.running_var res4.3.conv3.weight res4.3.conv3.norm.weight res4.3.conv3.norm.bias
    res4.3.conv3.norm.running_mean res4.3.conv3.norm.running_var res4.4.conv1.weight res4.4.conv1.norm.weight
    res4.4.conv1.norm.bias res4.4.conv1.norm.running_mean res4.4.conv1.norm.running_var res4.4.conv2.weight
    res4.4.conv2.norm.weight res4.4.conv2.norm.bias res4.4.conv2.norm.running_mean res4.4.conv2.norm.running_var
    res4.4.conv3.weight res4.4.conv3.norm.weight res4.4.conv3.norm.bias res4.4.conv3.norm.running_mean
    res4.4.conv3.norm.running_var res4.5.conv1.weight res4.5.conv1.norm.weight res4.5.conv1.norm.bias
    res4.5.conv1.norm.running_mean res4.5.conv1.norm.running_var res4.5.conv2.weight res4.5.conv2.norm.weight
    res4.5.conv2.norm.bias res4.5.conv2.norm.running_mean res4.5.conv2.norm.running_var res4.5.conv3.weight
    res4.5.conv3.norm.weight res4.5.conv3.norm.bias res4.5.conv3.norm.running_mean res4.5.conv3.norm.running_var
    res5.0.shortcut.weight res5.0.shortcut.norm.weight res5.0.shortcut.norm.bias res5.0.shortcut.norm.running_mean
    res5.0.shortcut.norm.running_var res5.0.conv1.weight res5.0.conv1.norm.weight res5.0.conv1.norm.bias
    res5.0.conv1.norm.running_mean res5.0.conv1.norm.running_var res5.0.conv2.weight res5.0.conv2.norm.weight
    res5.0.conv2.norm.bias res5.0.conv2.norm.running_mean res5.0.conv2.norm.running_var res5.0.conv3.weight
    res5.0.conv3.norm.weight res5.0.conv3.norm.bias res5.0.conv3.norm.running_mean res5.0.conv3.norm.running_var
    res5.1.conv1.weight res5.1.conv1.norm.weight res5.1.conv1.norm.bias res5.1.conv1.norm.running_mean
    res5.1.conv1.norm.running_var res5.1.conv2.weight res5.1.conv2.norm.weight res5.1.conv2.norm.bias
    res5.1.conv2.norm.running_mean res5.1.conv2.norm.running_var res5.1.conv3.weight res5.1.conv3.norm.weight
    res5.1.conv3.norm.bias res5.1.conv3.norm.running_mean res5.1.conv3.norm.running_var res5.2.conv1.weight
    res5.2.conv1.norm.weight res5.2.conv1.norm.bias res5.2.conv1.norm.running_mean res5.2.conv1.norm.running_var
    res5.2.conv2.weight res5.2.conv2.norm.weight res5.2.conv2.norm.bias res5.2.conv2.norm.running_mean
    res5.2.conv2.norm.running_var res5.2.conv3.weight res5.2.conv3.norm.weight res5.2.conv3.norm.bias
    res5.2.conv3.norm.running_mean res5.2.conv3.norm.running_var
""".split()

# ResNet-18: BasicBlocks (conv1, conv2), 2 per stage; res2's first block keeps 64 channels, so it has no shortcut.
D2_R18 = """
    stem.conv1.weight stem.conv1.norm.weight stem.conv1.norm.bias stem.conv1.norm.running_mean
    stem.conv1.norm.running_var res2.0.conv1.weight res2.0.conv1.norm.weight res2.0.conv1.norm.bias
    res2.0.conv1.norm.running_mean res2.0.conv1.norm.running_var res2.0.conv2.weight res2.0.conv2.norm.weight
    res2.0.conv2.norm.bias res2.0.conv2.norm.running_mean res2.0.conv2.norm.running_var res2.1.conv1.weight
    res2.1.conv1.norm.weight res2.1.conv1.norm.bias res2.1.conv1.norm.running_mean res2.1.conv1.norm.running_var
    res2.1.conv2.weight res2.1.conv2.norm.weight res2.1.conv2.norm.bias res2.1.conv2.norm.running_mean
    res2.1.conv2.norm.running_var res3.0.shortcut.weight res3.0.shortcut.norm.weight res3.0.shortcut.norm.bias
    res3.0.shortcut.norm.running_mean res3.0.shortcut.norm.running_var res3.0.conv1.weight res3.0.conv1.norm.weight
    res3.0.conv1.norm.bias res3.0.conv1.norm.running_mean res3.0.conv1.norm.running_var res3.0.conv2.weight
    res3.0.conv2.norm.weight res3.0.conv2.norm.bias res3.0.conv2.norm.running_mean res3.0.conv2.norm.running_var
    res3.1.conv1.weight res3.1.conv1.norm.weight res3.1.conv1.norm.bias res3.1.conv1.norm.running_mean
    res3.1.conv1.norm.running_var res3.1.conv2.weight res3.1.conv2.norm.weight res3.1.conv2.norm.bias
    res3.1.conv2.norm.running_mean res3.1.conv2.norm.running_var res4.0.shortcut.weight res4.0.shortcut.norm.weight
    res4.0.shortcut.norm.bias res4.0.shortcut.norm.running_mean res4.0.shortcut.norm.running_var res4.0.conv1.weight
    res4.0.conv1.norm.weight res4.0.conv1.norm.bias res4.0.conv1.norm.running_mean res4.0.conv1.norm.running_var
    res4.0.conv2.weight res4.0.conv2.norm.weight res4.0.conv2.norm.bias res4.0.conv2.norm.running_mean
    res4.0.conv2.norm.running_var res4.1.conv1.weight res4.1.conv1.norm.weight res4.1.conv1.norm.bias
    res4.1.conv1.norm.running_mean res4.1.conv1.norm.running_var res4.1.conv2.weight res4.1.conv2.norm.weight
    res4.1.conv2.norm.bias res4.1.conv2.norm.running_mean res4.1.conv2.norm.running_var res5.0.shortcut.weight
    res5.0.shortcut.norm.weight res5.0.shortcut.norm.bias res5.0.shortcut.norm.running_mean
    res5.0.shortcut.norm.running_var res5.0.conv1.weight res5.0.conv1.norm.weight res5.0.conv1.norm.bias
    res5.0.conv1.norm.running_mean res5.0.conv1.norm.running_var res5.0.conv2.weight res5.0.conv2.norm.weight
    res5.0.conv2.norm.bias res5.0.conv2.norm.running_mean res5.0.conv2.norm.running_var res5.1.conv1.weight
    res5.1.conv1.norm.weight res5.1.conv1.norm.bias res5.1.conv1.norm.running_mean res5.1.conv1.norm.running_var
    res5.1.conv2.weight res5.1.conv2.norm.weight res5.1.conv2.norm.bias res5.1.conv2.norm.running_mean
    res5.1.conv2.norm.running_var
""".split()


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


@pytest.fixture(scope="module")
def fpn_run(tmp_path_factory) -> Path:
    """A finished 2-step pixpro_fpn run (ResNet-18): checkpoints, backbone.safetensors and fpn.safetensors."""
    root = tmp_path_factory.mktemp("export")
    cfg = load_config(PretrainConfig, "pixpro_fpn_r18_demo", [
        "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=64", "data.synthetic.num_images=4",
        "data.synthetic.size=64", "data.num_workers=0", "train.batch_size=2", "train.max_steps=2",
        "train.warmup_steps=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32",
        "train.threads=1", f"run.output_dir={root}", "run.name=fpn",
    ])
    return pretrain(cfg).run_dir


@pytest.mark.parametrize("arch, expected", [("resnet50", D2_R50), ("resnet18", D2_R18)])
def test_detectron2_names_are_exactly_detectron2s(arch, expected):
    with torch.device("meta"):
        keys = [k for k in build_backbone(arch).state_dict() if not k.endswith("num_batches_tracked")]
    mapped = [detectron2_name(k) for k in keys]
    assert len(set(mapped)) == len(mapped) == len(expected)
    assert set(mapped) == set(expected)


def test_detectron2_name_hand_cases():
    assert detectron2_name("bn1.running_var") == "stem.conv1.norm.running_var"
    assert detectron2_name("layer1.0.downsample.0.weight") == "res2.0.shortcut.weight"
    assert detectron2_name("layer4.2.bn3.bias") == "res5.2.conv3.norm.bias"
    with pytest.raises(PixelSSLError, match="fc.weight"):
        detectron2_name("fc.weight")


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


def test_detectron2_pkl_holds_the_run_weights_as_detectron2_reads_them(fpn_run, tmp_path):
    [path] = export(fpn_run, "detectron2", tmp_path / "d2.pkl")  # FCOS-named FPN files are not detectron2's
    with open(path, "rb") as handle:
        data = pickle.load(handle, encoding="latin1")  # as DetectionCheckpointer._load_file does
    assert data["__author__"] == "pixelssl" and data["matching_heuristics"] is True
    assert set(data["model"]) == set(D2_R18)
    backbone = load_file(str(fpn_run / "backbone.safetensors"))
    assert data["model"]["res5.1.conv2.norm.running_var"].dtype.name == "float32"
    assert torch.equal(torch.from_numpy(data["model"]["res5.1.conv2.norm.running_var"]),
                       backbone["layer4.1.bn2.running_var"])
    assert torch.equal(torch.from_numpy(data["model"]["res3.0.shortcut.weight"]), backbone["layer2.0.downsample.0.weight"])


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


def test_cli_export_and_one_line_errors(fpn_run, tmp_path, capsys):
    out = tmp_path / "r18.pkl"
    assert main(["export", str(fpn_run), "--to", "detectron2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)  # log lines may come first
    save_file({"encoder.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    cases = [
        ([str(tmp_path / "nothing")], "is neither a run directory nor a weights file"),
        ([str(fpn_run), "--out", str(tmp_path / "x.pth")], "must end in .pkl"),
        ([str(tmp_path / "other.safetensors")], "does not hold a torchvision ResNet"),
        ([str(tmp_path)], "has no config.yaml"),
    ]
    for args, message in cases:
        assert main(["export", *args[:1], "--to", "detectron2", *args[1:]]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
