"""cli.detect: ``pixelssl finetune-det`` writes eval.json and the model (a run's FPN, a train subset); one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from pixelssl.cli import main
from pixelssl.evaluate.detection import load_detector
from pixelssl.models.backbones import build_backbone, save_backbone

TINY = ["min_size=64", "max_size=64", "batch_size=2", "fpn_channels=32", "roi_batch_size=16", "warmup_steps=0",
        "eval_batch_size=2", "detections_per_image=10", "threads=1", "device=cpu"]
pytestmark = pytest.mark.usefixtures("one_thread")  # as the evaluation tests: one thread


def _run_dir(tmp_path, fpn_state):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  backbone: resnet18\n")
    save_backbone(build_backbone("resnet18"), run / "backbone.safetensors")
    save_file({f"backbone.fpn.{k}": v for k, v in fpn_state.items()}, str(run / "fpn.safetensors"))
    return run


def test_cli_loads_the_runs_fpn_into_the_trained_detector(coco_root, tmp_path, fcos_fpn_state):
    state = fcos_fpn_state(32)
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
