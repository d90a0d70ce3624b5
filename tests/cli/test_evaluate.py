"""cli.evaluate: ``pixelssl probe`` / ``finetune-seg`` / ``probe-cls`` write eval.json; errors are one line."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from pixelssl.cli import main
from pixelssl.models.backbones import build_backbone, save_backbone

TINY_SYNTHETIC = ["synthetic.train_images=6", "synthetic.val_images=3", "synthetic.size=64", "threads=1"]
pytestmark = pytest.mark.usefixtures("one_thread")  # as the evaluation tests: tiny ops, one thread each

EVAL_KEYS = {"kind", "created", "pixelssl_version", "backbone", "data", "config", "metrics"}


def make_segmentation_split(root, count, size=64, num_classes=3, seed=0):
    """root/images/NAME.png + root/labels/NAME.png with random block labels."""
    generator = torch.Generator().manual_seed(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(count):
        label = torch.randint(num_classes, (size // 16, size // 16), generator=generator, dtype=torch.uint8)
        label = label.repeat_interleave(16, 0).repeat_interleave(16, 1)
        image = torch.randint(0, 256, (size, size, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(image.numpy()).save(root / "images" / f"frame{k}.png")
        Image.fromarray(label.numpy(), mode="L").save(root / "labels" / f"frame{k}.png")
    return root


@pytest.fixture
def seg_folder(tmp_path):
    make_segmentation_split(tmp_path / "seg" / "train", 4)
    make_segmentation_split(tmp_path / "seg" / "val", 2, seed=1)
    (tmp_path / "seg" / "classes.json").write_text('{"classes": ["a", "b", "c"], "ignore_index": 255}')
    return tmp_path / "seg"


def read_eval(folder):
    record = json.loads((folder / "eval.json").read_text())
    assert set(record) == EVAL_KEYS
    return record


def test_probe_on_synthetic_writes_eval_json(tmp_path):
    out = tmp_path / "probe_out"
    rc = main(["probe", "--backbone", "random", "--arch", "resnet18", "--data", "synthetic", "--out", str(out),
               "epochs=2", *TINY_SYNTHETIC])
    assert rc == 0
    record = read_eval(out)
    assert record["kind"] == "probe" and record["backbone"] == {"kind": "random", "arch": "resnet18", "seed": 0}
    assert {"miou", "pixel_acc", "per_class_iou", "class_names", "timing"} <= set(record["metrics"])
    assert record["config"]["epochs"] == 2 and record["data"]["num_train"] == 6
    assert record["metrics"]["class_names"][0] == "background"


def test_finetune_seg_on_a_folder_writes_eval_json_and_the_model(seg_folder, tmp_path):
    out = tmp_path / "ft_out"
    rc = main(["finetune-seg", "--backbone", "torchvision", "--arch", "resnet18", "--data", str(seg_folder),
               "--head", "fcn", "--out", str(out), "steps=2", "batch_size=2", "head_channels=8",
               "augmentation.crop_size=[64,64]", "threads=1", "device=cpu"])
    assert rc == 0
    record = read_eval(out)
    assert record["config"]["head"] == "fcn" and record["metrics"]["class_names"] == ["a", "b", "c"]
    assert record["data"]["train"].endswith("train") and (out / "model.safetensors").is_file()


def test_run_directory_backbone_writes_into_the_run(tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  backbone: resnet18\n")
    save_backbone(build_backbone("resnet18"), run / "backbone.safetensors")
    assert main(["probe", "--backbone", str(run), "--data", "synthetic", "epochs=1", *TINY_SYNTHETIC]) == 0
    record = read_eval(run / "eval" / "probe")
    assert record["backbone"]["kind"] == "run" and len(record["backbone"]["sha256"]) == 64


def test_probe_cls_with_a_weights_file_defaults_to_the_working_directory(tmp_path, monkeypatch):
    for split, count in (("train", 3), ("val", 1)):
        for cls, red in (("x", 0), ("y", 255)):
            (tmp_path / "cls" / split / cls).mkdir(parents=True)
            for k in range(count):
                Image.new("RGB", (40, 36), (red, k * 40, 0)).save(tmp_path / "cls" / split / cls / f"{k}.jpg")
    save_backbone(build_backbone("resnet18"), tmp_path / "w.safetensors")
    monkeypatch.chdir(tmp_path)
    rc = main(["probe-cls", "--backbone", "w.safetensors", "--data", "cls", "resize=32", "crop=32", "epochs=2",
               "threads=1"])
    assert rc == 0
    record = read_eval(tmp_path / "eval_probe-cls")
    assert record["backbone"]["arch"] == "resnet18"  # inferred from the file
    assert {"top1", "top5", "per_class_acc"} <= set(record["metrics"])


def test_label_size_mismatch_is_one_line_naming_the_file(seg_folder, capsys):
    Image.new("L", (10, 10)).save(seg_folder / "val" / "labels" / "frame1.png")
    rc = main(["probe", "--backbone", "random", "--arch", "resnet18", "--data", str(seg_folder), "epochs=1",
               "threads=1", "--out", str(seg_folder / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("error: label ") and "frame1.png" in err[0]


@pytest.mark.parametrize("argv, message", [
    (["--data", "/no/such/folder"], "data folder /no/such/folder does not exist"),
    (["--data", "synthetic", "epoch=3"], "did you mean 'epochs'"),
    (["--data", "synthetic", "--val", "x"], "--val cannot be combined"),
    (["--data", "synthetic", "synthetic.size=16"], "config key 'synthetic.size': must be >= 32 (got 16)"),
    (["--data", "synthetic", "synthetic.sise=64"], "did you mean 'synthetic.size'"),
])
def test_user_errors_are_one_line(argv, message, capsys):
    rc = main(["probe", "--backbone", "random", "--arch", "resnet18", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and message in err[0]
