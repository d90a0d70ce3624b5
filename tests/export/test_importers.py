"""export.importers: released checkpoints in each release's exact layout give our backbone and heads; pickled code refused."""

from __future__ import annotations

import argparse
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

from pixelssl.cli import build_parser, main
from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.source import resolve_backbone
from pixelssl.export import export, import_checkpoint, write_imported
from pixelssl.models.backbones import build_backbone, save_backbone
from pixelssl.models.heads import MLP, ConvMLP, global_pool

X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
R18_TENSORS = len(build_backbone("resnet18").state_dict())


# ------------------------------------------------------------------------------- release models, as their code has them
def _with_stats(module: nn.Module, seed: int) -> nn.Module:
    """Non-default BatchNorm weights and statistics (so the imports must carry them) on the random init, eval mode."""
    torch.manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(sub.weight, 0.5, 1.5)
            nn.init.uniform_(sub.bias, -0.1, 0.1)
            sub.running_mean.uniform_(-0.1, 0.1)
            sub.running_var.uniform_(0.5, 1.5)
            sub.num_batches_tracked.fill_(7)
    return module.eval()


def _resnet18(seed: int, fc: bool = False, **kwargs) -> nn.Module:
    """torchvision's resnet18 (PixPro's contrast/resnet.py and OpenSelfSup / MMSelfSup ResNets use its names and
    strides); without ``fc`` as PixPro's ``head_type='early_return'`` and the mmcv backbones."""
    net = torchvision.models.resnet18(weights=None, **kwargs)
    if not fc:
        del net.fc
    return _with_stats(net, seed)


def _c5(net: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


class MLP2d(nn.Module):
    """PixPro's projector / predictor (contrast/models/PixPro.py)."""

    def __init__(self, in_dim: int, inner_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Conv2d(in_dim, inner_dim, 1)
        self.bn1 = nn.BatchNorm2d(inner_dim)
        self.relu1 = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv2d(inner_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.relu1(self.bn1(self.linear1(x))))


class PixProRelease(nn.Module):
    """PixPro(base_encoder) with transform layer 1, as main_pretrain.py trains it; PixPro+ adds the instance branch."""

    def __init__(self, instance: bool = False) -> None:
        super().__init__()
        self.encoder, self.encoder_k = _resnet18(1), _resnet18(2)
        self.projector, self.projector_k = _with_stats(MLP2d(512, 32, 16), 3), _with_stats(MLP2d(512, 32, 16), 4)
        self.value_transform = nn.Conv2d(16, 16, 1)
        if instance:
            self.projector_instance = _with_stats(MLP2d(512, 32, 16), 5)
            self.projector_instance_k = _with_stats(MLP2d(512, 32, 16), 6)
            self.predictor = _with_stats(MLP2d(16, 32, 16), 7)


class DDP(nn.Module):
    """DistributedDataParallel's ``module.`` prefix, as ``model.state_dict()`` of a DDP model has it."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _pixpro_file(tmp_path: Path, instance: bool = False) -> tuple[Path, PixProRelease]:
    model = PixProRelease(instance)
    ddp = DDP(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    opt = argparse.Namespace(arch="resnet18", model="PixPro", pixpro_p=2.0, pixpro_momentum=0.99,
                             lr_decay_epochs=[120, 160, 200], amp_opt_level="O1", output_dir="./output", local_rank=0)
    state = {"opt": opt, "model": ddp.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": 100, "amp": {"loss_scaler0": {"loss_scale": 65536.0}}}
    path = tmp_path / "ckpt_epoch_100.pth"
    torch.save(state, path)  # main_pretrain.py save_checkpoint
    return path, model


class DenseCLNeck(nn.Module):
    """OpenSelfSup's DenseCLNeck (``syncbn=False``), or MMSelfSup's for PixCon with SyncBN after the first layer."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, bn: bool = False) -> None:
        super().__init__()
        norm1, norm2 = (nn.BatchNorm1d(hidden), nn.BatchNorm2d(hidden)) if bn else (nn.Identity(), nn.Identity())
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), *([norm1] if bn else []), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_dim))
        self.mlp2 = nn.Sequential(nn.Conv2d(in_dim, hidden, 1), *([norm2] if bn else []), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, out_dim, 1))


class MoCoV2Neck(nn.Module):
    """MMSelfSup's MoCoV2Neck with ``syncbn=True`` (PixCon's predictor and predictor_dense)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, out_dim))


class DenseCLRelease(nn.Module):
    """openselfsup/models/densecl.py (``pixcon=False``) or mmselfsup/models/algorithms/pixcon.py (``pixcon=True``)."""

    def __init__(self, pixcon: bool = False) -> None:
        super().__init__()
        self.encoder_q = nn.Sequential(_resnet18(1), _with_stats(DenseCLNeck(512, 32, 16, bn=pixcon), 3))
        self.encoder_k = nn.Sequential(_resnet18(2), _with_stats(DenseCLNeck(512, 32, 16, bn=pixcon), 4))
        self.backbone = self.encoder_q[0]
        if pixcon:
            self.predictor = _with_stats(MoCoV2Neck(16, 32, 16), 5)
            self.predictor_dense = _with_stats(MoCoV2Neck(16, 32, 16), 6)
        self.register_buffer("queue", torch.randn(16, 64))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("queue2", torch.randn(16, 64))
        self.register_buffer("queue2_ptr", torch.zeros(1, dtype=torch.long))


def _mmcv_meta(pixcon: bool) -> dict:
    """mmcv's checkpoint meta: versions, config text, env info, epoch/iter; MMSelfSup's seed is a numpy int64."""
    meta = {"env_info": "sys.platform: linux\nPython: 3.8", "config": "model = dict(type='DenseCL')", "epoch": 200,
            "iter": 1000, "mmcv_version": "1.0.3", "time": "Sat Jan  2 00:00:00 2021"}
    if pixcon:
        meta.update(seed=np.int64(1234567), exp_name="pixcon_sr_resnet50-coslr-800e_coco.py",
                    mmselfsup_version="0.9.0", fp16={"loss_scaler": {"scale": 512.0, "_growth_tracker": 0}},
                    hook_msgs={"last_ckpt": "work_dirs/epoch_800.pth"})
    else:
        meta.update(seed=None, openselfsup_version="0.2.0")
    return meta


def _mmcv_file(tmp_path: Path, pixcon: bool) -> tuple[Path, DenseCLRelease]:
    model = DenseCLRelease(pixcon)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = {"meta": _mmcv_meta(pixcon), "state_dict": OrderedDict(model.state_dict()),
             "optimizer": optimizer.state_dict()}
    path = tmp_path / ("pixcon_epoch_800.pth" if pixcon else "densecl_epoch_200.pth")
    if pixcon:  # tools/model_converters/publish_model.py: no optimizer, legacy torch format
        del state["optimizer"]
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(state, path)
    return path, model


class MoCoRelease(nn.Module):
    """moco/builder.py with ``mlp=True`` (MoCo v2): torchvision resnet18(num_classes=dim), fc -> Linear-ReLU-fc."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.encoder_q = _resnet18(1, fc=True, num_classes=dim)
        self.encoder_k = _resnet18(2, fc=True, num_classes=dim)
        for encoder in (self.encoder_q, self.encoder_k):
            encoder.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), encoder.fc)
        self.register_buffer("queue", torch.randn(dim, 64))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


def _moco_file(tmp_path: Path) -> tuple[Path, MoCoRelease]:
    model = MoCoRelease()
    ddp = DDP(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.03, momentum=0.9)
    path = tmp_path / "checkpoint_0199.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet18", "state_dict": ddp.state_dict(), "optimizer": optimizer.state_dict()},
               path, _use_new_zipfile_serialization=False)  # main_moco.py, 2020: torch 1.4's format
    return path, model


def _convert_pretrain_to_detectron2(state: dict, prefix: str) -> dict:
    """The releases' detection/convert-pretrain-to-detectron2.py (MoCo; PixPro's and DenseCL's are the same)."""
    newmodel = {}
    for k, v in state.items():
        if not k.startswith(prefix):
            continue
        k = k.replace(prefix, "")
        if "layer" not in k:
            k = "stem." + k
        for t in [1, 2, 3, 4]:
            k = k.replace(f"layer{t}", f"res{t + 1}")
        for t in [1, 2, 3]:
            k = k.replace(f"bn{t}", f"conv{t}.norm")
        k = k.replace("downsample.0", "shortcut")
        k = k.replace("downsample.1", "shortcut.norm")
        newmodel[k] = v.numpy()
    return {"model": newmodel, "__author__": "MOCO", "matching_heuristics": True}


def _ours(state: dict[str, torch.Tensor], arch: str = "resnet18") -> nn.Module:
    backbone = build_backbone(arch)
    backbone.load_state_dict(state)
    return backbone.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------- each release gives the same features
@torch.no_grad()
def test_pixpro_checkpoint_gives_the_online_encoder_and_its_projector(tmp_path):
    path, release = _pixpro_file(tmp_path)
    imported = import_checkpoint(path, "pixpro")
    assert imported.arch == "resnet18" and "module.encoder.*" in imported.encoder
    _close(_ours(imported.backbone)(X), _c5(release.encoder))
    projector = ConvMLP(512, 32, 16)
    projector.load_state_dict(imported.heads["projector"])
    feats = torch.randn(1, 512, 2, 2)
    _close(projector.eval()(feats), release.projector(feats))
    value_transform = nn.Conv2d(16, 16, 1)
    value_transform.load_state_dict(imported.heads["value_transform"])
    assert torch.equal(value_transform.weight, release.value_transform.weight)
    assert any(k.startswith("module.encoder_k.") for k in imported.ignored)
    assert set(imported.entries) == {"opt", "optimizer", "scheduler", "epoch", "amp"}


@torch.no_grad()
def test_pixpro_key_encoder_on_request(tmp_path):
    path, release = _pixpro_file(tmp_path)
    imported = import_checkpoint(path, "pixpro", encoder="key")
    assert "encoder_k" in imported.encoder and set(imported.heads) == {"projector"}
    _close(_ours(imported.backbone)(X), _c5(release.encoder_k))
    assert torch.equal(imported.heads["projector"]["0.weight"], release.projector_k.linear1.weight)


@torch.no_grad()
def test_pixpro_plus_instance_heads(tmp_path):
    path, release = _pixpro_file(tmp_path, instance=True)
    imported = import_checkpoint(path, "pixpro")
    assert set(imported.heads) == {"projector", "value_transform", "projector_instance", "predictor"}
    predictor = ConvMLP(16, 32, 16)
    predictor.load_state_dict(imported.heads["predictor"])
    feats = torch.randn(1, 16, 2, 2)
    _close(predictor.eval()(feats), release.predictor(feats))
    assert torch.equal(imported.heads["projector_instance"]["3.bias"], release.projector_instance.linear2.bias)


@torch.no_grad()
def test_densecl_training_checkpoint_and_its_neck(tmp_path):
    path, release = _mmcv_file(tmp_path, pixcon=False)
    imported = import_checkpoint(path, "densecl")
    resnet, neck = release.encoder_q
    _close(_ours(imported.backbone)(X), _c5(resnet))
    projector, dense = MLP(512, 32, 16), ConvMLP(512, 32, 16, batch_norm=False)
    projector.load_state_dict(imported.heads["projector"])
    dense.load_state_dict(imported.heads["dense_projector"])
    c5 = _c5(resnet)
    _close(projector.eval()(global_pool(c5)), neck.mlp(global_pool(c5)))
    _close(dense.eval()(c5), neck.mlp2(c5))
    assert any(k.startswith("backbone.") for k in imported.ignored)  # encoder_q.0 registered twice
    assert "queue" in imported.ignored and imported.entries == ["meta", "optimizer"]


@torch.no_grad()
def test_densecl_extracted_backbone(tmp_path):
    _, release = _mmcv_file(tmp_path, pixcon=False)
    state = {k[len("backbone."):]: v for k, v in release.state_dict().items() if k.startswith("backbone.")}
    path = tmp_path / "densecl_r18.pth"
    torch.save({"state_dict": state, "author": "DenseCL"}, path)  # tools/extract_backbone_weights.py
    imported = import_checkpoint(path, "densecl")
    _close(_ours(imported.backbone)(X), _c5(release.encoder_q[0]))
    assert not imported.ignored and not imported.heads
    with pytest.raises(PixelSSLError, match="holds a single encoder"):
        import_checkpoint(path, "densecl", encoder="key")


@torch.no_grad()
def test_pixcon_published_checkpoint_with_numpy1_meta_and_its_predictors(tmp_path):
    path, release = _mmcv_file(tmp_path, pixcon=True)
    # As published with numpy 1.x: the seed's scalar reconstructor under numpy 1's module name.
    data = path.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    imported = import_checkpoint(path, "pixcon")
    resnet, neck = release.encoder_q
    c5 = _c5(resnet)
    _close(_ours(imported.backbone)(X), c5)
    assert set(imported.heads) == {"projector", "dense_projector", "predictor", "dense_predictor"}
    dense, dense_predictor = ConvMLP(512, 32, 16), ConvMLP(16, 32, 16)
    dense.load_state_dict(imported.heads["dense_projector"])
    dense_predictor.load_state_dict(imported.heads["dense_predictor"])
    grid = neck.mlp2(c5)  # (B, C, H, W)
    b, c, h, w = grid.shape
    per_pixel = release.predictor_dense.mlp(grid.flatten(2).transpose(1, 2).reshape(-1, c))  # "(b m) c"
    _close(dense_predictor.eval()(dense.eval()(c5)), per_pixel.reshape(b, h * w, -1).transpose(1, 2).reshape(b, -1, h, w))


@torch.no_grad()
def test_pixcon_mmselfsup_backbone_layout(tmp_path):
    net = _resnet18(5)
    state = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    state.update({"neck.fc.weight": torch.zeros(8, 512), "neck.fc.bias": torch.zeros(8)})
    path = tmp_path / "mmselfsup.pth"
    torch.save({"meta": _mmcv_meta(pixcon=True), "state_dict": state}, path)
    imported = import_checkpoint(path, "pixcon")
    _close(_ours(imported.backbone)(X), _c5(net))
    assert imported.ignored == ["neck.fc.weight", "neck.fc.bias"]


@torch.no_grad()
def test_moco_checkpoint_gives_encoder_q_and_its_mlp_head(tmp_path):
    path, release = _moco_file(tmp_path)
    imported = import_checkpoint(path, "moco")
    _close(_ours(imported.backbone)(X), _c5(release.encoder_q))
    head = MLP(512, 512, 16)
    head.load_state_dict(imported.heads["head"])
    pooled = global_pool(_c5(release.encoder_q))
    _close(head.eval()(pooled), release.encoder_q.fc(pooled))
    assert {"module.queue", "module.queue_ptr"} <= set(imported.ignored)
    assert set(imported.entries) == {"epoch", "arch", "optimizer"}


@pytest.mark.parametrize("protocol", [2, 4])
@torch.no_grad()
def test_detectron2_pkl_from_the_release_converter(tmp_path, protocol):
    _, release = _moco_file(tmp_path)
    payload = _convert_pretrain_to_detectron2(DDP(release).state_dict(), "module.encoder_q.")
    path = tmp_path / "moco_r18.pkl"
    with open(path, "wb") as handle:
        pickle.dump(payload, handle, protocol=protocol)
    imported = import_checkpoint(path, "detectron2")
    _close(_ours(imported.backbone)(X), _c5(release.encoder_q))
    assert sorted(imported.ignored) == ["stem.fc.0.bias", "stem.fc.0.weight", "stem.fc.2.bias", "stem.fc.2.weight"]


@torch.no_grad()
def test_detectron2_detector_checkpoint_gives_its_bottom_up_resnet(tmp_path):
    net = _resnet18(6)
    exported = tmp_path / "r18.pkl"
    save_backbone(_ours(net.state_dict()), tmp_path / "r18.safetensors")
    export(tmp_path / "r18.safetensors", "detectron2", exported)
    with open(exported, "rb") as handle:
        names = pickle.load(handle)["model"]
    model = {f"backbone.bottom_up.{k}": torch.from_numpy(v) for k, v in names.items()}
    model.update({"backbone.fpn_lateral2.weight": torch.zeros(8, 64, 1, 1), "roi_heads.box_predictor.cls_score.bias":
                  torch.zeros(3)})
    path = tmp_path / "model_final.pth"
    torch.save({"model": model, "iteration": 90000, "scheduler": {"base_lrs": [0.02], "last_epoch": 90000}}, path)
    imported = import_checkpoint(path, "detectron2")
    _close(_ours(imported.backbone)(X), _c5(net))
    assert sorted(imported.ignored) == ["backbone.fpn_lateral2.weight", "roi_heads.box_predictor.cls_score.bias"]


@torch.no_grad()
def test_torchvision_state_dict(tmp_path):
    net = _resnet18(7, fc=True)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    imported = import_checkpoint(path, "torchvision")
    _close(_ours(imported.backbone)(X), _c5(net))
    assert imported.ignored == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("to", ["detectron2", "torchvision"])
@torch.no_grad()
def test_export_then_import_round_trip(tmp_path, to):
    ours = _ours(_resnet18(8).state_dict())
    save_backbone(ours, tmp_path / "ours.safetensors")
    [exported] = export(tmp_path / "ours.safetensors", to)
    imported = import_checkpoint(exported, to)
    again = _ours(imported.backbone)
    assert torch.equal(again(X), ours(X))
    own = ours.state_dict()
    assert all(torch.equal(imported.backbone[k], own[k]) for k in own if not k.endswith("num_batches_tracked"))


# ------------------------------------------------------------------------------- pickled code is refused
class _Payload:
    """What a malicious checkpoint pickles: a call to os.system when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind", ["zip", "legacy", "pkl"])
def test_pickled_code_is_refused_in_one_line(tmp_path, capsys, kind):
    marker = tmp_path / "ran"
    path = tmp_path / ("evil.pkl" if kind == "pkl" else "evil.pth")
    state = {"model": {"module.encoder.conv1.weight": torch.zeros(1)}, "opt": _Payload(marker)}
    if kind == "pkl":
        path.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": np.zeros(1)}, "x": _Payload(marker)}))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=kind == "zip")
    fmt = "detectron2" if kind == "pkl" else "pixpro"
    assert main(["import", str(path), "--from", fmt]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: refused: {path} holds pickled code (posix.system), which pixelssl does not run")
    assert len(err.splitlines()) == 1 and "weights_only" not in err
    assert not marker.exists()


def test_release_checkpoint_without_from_is_refused_with_a_hint(tmp_path):
    path, _ = _pixpro_file(tmp_path)
    with pytest.raises(PixelSSLError, match=r"pickled code \(argparse.Namespace\).*--from"):
        resolve_backbone(str(path))


# ------------------------------------------------------------------------------- the CLI, --from elsewhere, errors
def test_cli_import_writes_safetensors_and_prints_the_report(tmp_path, capsys):
    path, release = _pixpro_file(tmp_path)
    assert main(["import", str(path), "--from", "pixpro"]) == 0
    out_dir = tmp_path / "ckpt_epoch_100_pixelssl"
    report = capsys.readouterr().out
    assert f"used {R18_TENSORS} tensors for the backbone, e.g. module.encoder.conv1.weight -> conv1.weight" in report
    assert "architecture: resnet18" in report and "encoder: online encoder (module.encoder.*)" in report
    assert f"module.encoder_k.* ({R18_TENSORS})" in report and "other entries (not weights): opt" in report
    assert f"wrote {out_dir / 'backbone.safetensors'}" in report
    assert {p.name for p in out_dir.iterdir()} == {"backbone.safetensors", "projector.safetensors",
                                                   "value_transform.safetensors"}
    backbone = build_backbone("resnet18", weights=str(out_dir / "backbone.safetensors")).eval()
    with torch.no_grad():
        _close(backbone(X), _c5(release.encoder))
    assert set(load_file(str(out_dir / "projector.safetensors"))) == set(ConvMLP(512, 32, 16).state_dict())


def test_cli_import_out_file_names_heads_beside_it(tmp_path, capsys):
    path, _ = _moco_file(tmp_path)
    out = tmp_path / "w" / "moco_r18.safetensors"
    assert main(["import", str(path), "--from", "moco", "--out", str(out)]) == 0
    assert "used 4 tensors for the head 'head' (MLP)" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["moco_r18.safetensors", "moco_r18_head.safetensors"]


def test_probe_and_export_take_a_release_file_with_from(tmp_path):
    path, release = _pixpro_file(tmp_path)
    args = build_parser().parse_args(["probe", "--backbone", str(path), "--from", "pixpro", "--data", "synthetic"])
    backbone, source = resolve_backbone(args.backbone, args.arch, from_format=args.from_format)
    assert source["kind"] == "import" and source["format"] == "pixpro" and source["arch"] == "resnet18"
    with torch.no_grad():
        _close(backbone.eval()(X), _c5(release.encoder))
    assert build_parser().parse_args(["finetune-det", "--backbone", str(path), "--from", "pixpro"]).from_format == "pixpro"
    [exported] = export(path, "torchvision", tmp_path / "tv.pth", from_format="pixpro")
    net = torchvision.models.resnet18(weights=None)
    missing, _ = net.load_state_dict(torch.load(exported, weights_only=True), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"]
    with torch.no_grad():
        _close(_c5(net.eval()), _c5(release.encoder))


def test_errors_are_one_line_and_name_the_file(tmp_path, capsys):
    pixpro, _ = _pixpro_file(tmp_path)
    moco, _ = _moco_file(tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(pixpro.read_bytes()[: pixpro.stat().st_size // 2])
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    no_layer4 = tmp_path / "no_layer4.pth"
    torch.save({k: v for k, v in _resnet18(9).state_dict().items() if not k.startswith("layer4.")}, no_layer4)
    cases = [
        (tmp_path / "missing.pth", "pixpro", "does not exist"),
        (moco, "pixpro", "is not a PixPro checkpoint: no 'model' state dict (entries: epoch, arch, state_dict, "
                         "optimizer); it looks like a moco file (--from moco)"),
        (moco, "densecl", "is not a DenseCL checkpoint: no 'module.encoder_q.0.*' (ResNet) tensors"),
        (moco, "detectron2", "it looks like a moco file (--from moco)"),
        (no_layer4, "torchvision", "unknown architecture in"),
        (truncated, "pixpro", "truncated"),
        (empty, "moco", "is empty"),
    ]
    for path, fmt, message in cases:
        assert main(["import", str(path), "--from", fmt]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and str(path) in err and len(err.splitlines()) == 1, err
    assert main(["import", str(moco), "--from", "torchvision", "--encoder", "key"]) == 1
    assert "holds a single encoder" in capsys.readouterr().err


def test_written_import_is_what_probe_reads(tmp_path):
    path, release = _moco_file(tmp_path)
    written = write_imported(import_checkpoint(path, "moco"), tmp_path / "out")
    backbone, source = resolve_backbone(str(written["backbone"]))
    assert source["kind"] == "file" and source["arch"] == "resnet18"
    with torch.no_grad():
        _close(backbone.eval()(X), _c5(release.encoder_q))
