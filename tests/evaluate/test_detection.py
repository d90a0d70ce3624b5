"""Detection fine-tuning: model construction, norm / freezing, pre-trained FPN loading, schedule, CLI runs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pixelssl.cli import main
from pixelssl.data.coco import CocoDetection
from pixelssl.data.synthetic_coco import export_synthetic_coco
from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.coco_eval import coco_metrics
from pixelssl.evaluate.detection import DetectionConfig, finetune_detection, hflip, load_detector
from pixelssl.evaluate.detection_models import build_detector, load_fpn_state
from pixelssl.models.backbones import build_backbone, save_backbone

TINY = ["min_size=64", "max_size=64", "batch_size=2", "fpn_channels=32", "roi_batch_size=16", "warmup_steps=0",
        "eval_batch_size=2", "detections_per_image=10", "threads=1", "device=cpu"]


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    export_synthetic_coco(root, train_images=4, val_images=2, size=64, num_classes=3, seed=1)
    return root


def _cfg(**overrides):
    return DetectionConfig(**{"min_size": 64, "max_size": 64, **overrides})


# --------------------------------------------------------------------------- model construction
def test_backbone_weights_and_frozen_bn_come_from_the_pixelssl_backbone():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    with torch.no_grad():
        backbone.bn1.running_mean.uniform_()
    model = build_detector(backbone, 4, _cfg(model="fcos"))
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, backbone.conv1.weight)
    assert torch.equal(body.layer3[1].conv2.weight, backbone.layer3[1].conv2.weight)
    assert isinstance(body.bn1, FrozenBatchNorm2d) and torch.equal(body.bn1.running_mean, backbone.bn1.running_mean)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    trainable = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}  # trainable_layers=3, as torchvision's default
    assert list(model.backbone.fpn.state_dict())[0] == "inner_blocks.0.0.weight"
    assert model.backbone.fpn.inner_blocks[0][0].in_channels == 128  # FCOS starts at C3 (R18: 128 channels)


def test_bn_norm_trains_batchnorm_except_in_frozen_stages():
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="faster_rcnn", norm="bn", trainable_layers=2))
    body = model.backbone.body
    assert isinstance(body.layer4[0].bn1, nn.BatchNorm2d) and isinstance(body.layer3[0].bn1, nn.BatchNorm2d)
    assert isinstance(body.layer2[0].bn1, FrozenBatchNorm2d) and isinstance(body.bn1, FrozenBatchNorm2d)
    assert model.backbone.fpn.inner_blocks[0][0].in_channels == 64  # R-CNN's FPN starts at C2
    everything = build_detector(build_backbone("resnet18"), 4, _cfg(model="faster_rcnn", norm="bn",
                                                                    trainable_layers=5))
    assert all(p.requires_grad for p in everything.backbone.body.parameters())


def test_fcos_fpn_width_must_suit_its_group_norm():
    with pytest.raises(PixelSSLError, match="divisible by 32"):
        build_detector(build_backbone("resnet18"), 4, _cfg(model="fcos"), fpn_channels=48)


def test_timm_backbones_are_refused_with_one_line():
    class NotAResNet(nn.Module):
        name = "timm:convnext_tiny"

    with pytest.raises(PixelSSLError, match="needs a torchvision ResNet backbone"):
        build_detector(NotAResNet(), 4, _cfg())


# --------------------------------------------------------------------------- pre-trained FPN
def _fcos_fpn_state(width=32, seed=7):
    """A state dict with torchvision FCOS backbone.fpn key names (what FPN pre-training writes)."""
    torch.manual_seed(seed)
    donor = build_detector(build_backbone("resnet18"), 4, _cfg(model="fcos"), fpn_channels=width)
    return {k: torch.randn_like(v) for k, v in donor.backbone.fpn.state_dict().items()}


def test_fpn_state_loads_whole_into_fcos():
    state = _fcos_fpn_state()
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="fcos"), fpn_channels=32)
    summary = load_fpn_state(model, state, "fcos")
    assert summary["skipped"] == [] and len(summary["loaded"]) == len(state) == 16  # 3 + 3 levels, P6, P7
    for key, value in model.backbone.fpn.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_fpn_state_loads_level_by_level_into_faster_rcnn():
    state = _fcos_fpn_state()
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="faster_rcnn"), fpn_channels=32)
    c2_before = model.backbone.fpn.inner_blocks[0][0].weight.clone()
    summary = load_fpn_state(model, state, "faster_rcnn")
    fpn = model.backbone.fpn
    for level in range(3):  # FCOS level i is C3+i; R-CNN's index i+1
        assert torch.equal(fpn.inner_blocks[level + 1][0].weight, state[f"inner_blocks.{level}.0.weight"])
        assert torch.equal(fpn.layer_blocks[level + 1][0].bias, state[f"layer_blocks.{level}.0.bias"])
    assert torch.equal(fpn.inner_blocks[0][0].weight, c2_before)  # no C2 lateral in FCOS: kept
    assert summary["skipped"] == ["extra_blocks.p6.bias", "extra_blocks.p6.weight", "extra_blocks.p7.bias",
                                  "extra_blocks.p7.weight"]


def test_fpn_state_of_another_shape_is_refused_for_fcos():
    model = build_detector(build_backbone("resnet18"), 4, _cfg(model="fcos"), fpn_channels=64)
    with pytest.raises(PixelSSLError, match="fpn.safetensors does not fit the FCOS FPN .* --no-fpn-init"):
        load_fpn_state(model, _fcos_fpn_state(32), "fcos", "run/fpn.safetensors")
    state = _fcos_fpn_state(64)
    state.pop("extra_blocks.p7.bias")
    with pytest.raises(PixelSSLError, match="missing 'extra_blocks.p7.bias'"):
        load_fpn_state(model, state, "fcos")


def _run_dir(tmp_path, fpn_state):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  backbone: resnet18\n")
    save_backbone(build_backbone("resnet18"), run / "backbone.safetensors")
    save_file({f"backbone.fpn.{k}": v for k, v in fpn_state.items()}, str(run / "fpn.safetensors"))
    return run


def test_cli_loads_the_runs_fpn_into_the_trained_detector(coco_root, tmp_path):
    state = _fcos_fpn_state(32)
    run = _run_dir(tmp_path, state)
    out = tmp_path / "out"
    # fpn_channels=0: the width comes from the file; a tiny lr keeps the loaded values visible after one step
    assert main(["finetune-det", "--backbone", str(run), "--data", str(coco_root), "--model", "fcos", "--steps", "1",
                 "--out", str(out), *TINY, "fpn_channels=0", "lr=1e-9"]) == 0
    record = json.loads((out / "eval.json").read_text())
    assert record["backbone"]["fpn"]["path"] == str((run / "fpn.safetensors").resolve())
    assert record["metrics"]["fpn_channels"] == 32 and len(record["metrics"]["fpn_init"]["loaded"]) == 16
    weights = load_file(str(out / "model.safetensors"))
    for key in ("inner_blocks.2.0.weight", "layer_blocks.0.0.bias", "extra_blocks.p7.weight"):
        assert torch.allclose(weights[f"backbone.fpn.{key}"], state[key], atol=1e-6), key
    assert main(["finetune-det", "--backbone", str(run), "--data", str(coco_root), "--steps", "1", "--no-fpn-init",
                 "--out", str(tmp_path / "out2"), *TINY]) == 0
    record = json.loads((tmp_path / "out2" / "eval.json").read_text())
    assert record["backbone"]["fpn"] is None and record["metrics"]["fpn_init"] is None


# --------------------------------------------------------------------------- data + schedule
def test_hflip_mirrors_boxes_and_masks():
    image = torch.zeros(3, 4, 10)
    image[:, :, 2] = 1
    masks = torch.zeros(1, 4, 10, dtype=torch.uint8)
    masks[0, 1:3, 1:4] = 1  # box x 1..4
    target = {"boxes": torch.tensor([[1.0, 1.0, 4.0, 3.0]]), "masks": masks, "labels": torch.tensor([2])}
    flipped_image, flipped = hflip(image, target)
    assert flipped["boxes"].tolist() == [[6.0, 1.0, 9.0, 3.0]]
    cols = flipped["masks"][0].any(0).nonzero().flatten().tolist()
    assert (cols[0], cols[-1] + 1) == (6, 9) and flipped_image[0, 0, 7] == 1
    again_image, again = hflip(flipped_image, flipped)
    assert torch.equal(again_image, image) and torch.equal(again["boxes"], target["boxes"])


def test_coco_metrics_of_perfect_and_empty_results(coco_root):
    data = json.loads((coco_root / "val.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in data["annotations"]]
    assert coco_metrics(data, perfect)["AP"] == pytest.approx(1.0)
    assert coco_metrics(data, [])["AP"] == 0.0
    shifted = [{**r, "category_id": r["category_id"] % 3 + 1} for r in perfect]  # every class wrong
    assert coco_metrics(data, shifted)["AP"] == 0.0


# --------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("model", ["fcos", "faster_rcnn", "mask_rcnn"])
def test_tiny_finetune_writes_eval_json(coco_root, tmp_path, model):
    out = tmp_path / model
    assert main(["finetune-det", "--backbone", "random", "--arch", "resnet18", "--data", str(coco_root),
                 "--model", model, "--steps", "2", "--out", str(out), *TINY]) == 0
    record = json.loads((out / "eval.json").read_text())
    assert record["kind"] == "finetune-det" and record["config"]["model"] == model
    assert record["backbone"]["kind"] == "random" and record["data"]["num_train"] == 4
    metrics = record["metrics"]
    assert set(metrics["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert ("segm" in metrics) == (model == "mask_rcnn")
    assert [step for step, _ in metrics["train_loss"]] == [2] and metrics["train_loss"][0][1] > 0
    restored, meta = load_detector(out / "model.safetensors")
    assert meta["model"] == model and meta["backbone"] == "resnet18"
    assert restored.backbone.fpn.inner_blocks[0][0].out_channels == 32


def test_train_fraction_trains_on_the_written_subset(coco_root, tmp_path):
    out = tmp_path / "semi"
    assert main(["finetune-det", "--backbone", "random", "--arch", "resnet18", "--data", str(coco_root),
                 "--train-fraction", "0.5", "--subset-seed", "2", "--steps", "1", "--out", str(out), *TINY]) == 0
    record = json.loads((out / "eval.json").read_text())
    assert record["data"]["num_train"] == 2 and record["data"]["subset"]["seed"] == 2
    assert len(json.loads((out / "train_subset.json").read_text())["images"]) == 2


def test_cli_errors_are_one_line(coco_root, tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.json").write_text("not json")
    assert main(["finetune-det", "--backbone", "random", "--arch", "resnet18", "--data", str(tmp_path / "bad")]) == 1
    assert "train.json is not valid JSON" in capsys.readouterr().err
    assert main(["finetune-det", "--backbone", "random", "--train-json", str(coco_root / "train.json")]) == 1
    assert "give --data ROOT or --val-json" in capsys.readouterr().err
    assert main(["finetune-det", "--backbone", "random", "--data", str(coco_root), "norm=group"]) == 1
    assert "config key 'norm'" in capsys.readouterr().err


def test_mask_rcnn_needs_masks(coco_root):
    train = CocoDetection(coco_root / "train.json", coco_root / "images")
    with pytest.raises(PixelSSLError, match="mask_rcnn needs datasets read with masks=True"):
        finetune_detection(build_backbone("resnet18"), train, train, _cfg(model="mask_rcnn", steps=1, warmup_steps=0))


@pytest.mark.slow
def test_a_few_hundred_steps_reach_clearly_non_zero_ap(tmp_path):
    """FCOS on the synthetic export learns: box AP well above 0 after 300 CPU steps (several minutes)."""
    export_synthetic_coco(tmp_path, train_images=64, val_images=24, size=96, num_classes=3, seed=0)
    train = CocoDetection(tmp_path / "train.json", tmp_path / "images")
    val = CocoDetection(tmp_path / "val.json", tmp_path / "images")
    cfg = DetectionConfig(model="fcos", norm="bn", trainable_layers=5, fpn_channels=64, min_size=96, max_size=96,
                          steps=300, batch_size=4, lr=0.01, warmup_steps=30, clip_grad_norm=10, threads=1,
                          device="cpu")
    result = finetune_detection(build_backbone("resnet18"), train, val, cfg)
    assert result["train_loss"][-1][1] < result["train_loss"][0][1]
    assert result["bbox"]["AP50"] > 0.05 and result["bbox"]["AP"] > 0.01
