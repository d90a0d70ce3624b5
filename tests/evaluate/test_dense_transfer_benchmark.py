"""benchmarks/dense_transfer.py on a tiny segmentation folder: rows for a control and a method, a re-run that
measures nothing again, the tables, and the one-line refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _split(root: Path, count: int, seed: int) -> None:
    """Images of two-class halves (the class sets the colour) with their class-index label PNGs, 112 x 96."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir(parents=True)
    for n in range(count):
        labels = np.zeros((96, 112), np.uint8)
        labels[:, rng.integers(30, 80):] = 1
        image = np.where(labels[..., None] == 1, [200, 40, 40], [30, 160, 60]) + rng.integers(0, 40, (96, 112, 3))
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{n:02d}.png")
        Image.fromarray(labels).save(root / "labels" / f"{n:02d}.png")


def _rows(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "dense_transfer.jsonl").read_text().splitlines()]


def test_quick_rows_resume_and_tables(load_script, tmp_path, capsys):
    bench = load_script(REPO / "benchmarks" / "dense_transfer.py")
    data, results, runs = tmp_path / "seg", tmp_path / "results", tmp_path / "runs"
    _split(data / "train", 32, 0)  # one pre-training batch (the benchmark fixes batch 32)
    _split(data / "val", 3, 1)
    argv = ["--quick", "--data", str(data), "--results", str(results), "--runs", str(runs), "--methods", "control",
            "pixpro", "--budget-min", "0.01", "--image-size", "64", "--probe-size", "64", "--ft-size", "64",
            "--ft-crop", "48"]
    bench.main(argv)
    rows = _rows(results)
    assert [r["kind"] for r in rows] == ["calibration", "row", "row"]
    control, pixpro = rows[1], rows[2]
    assert (control["method"], control["steps"], pixpro["method"]) == ("control", 0, "pixpro")
    assert pixpro["steps"] == rows[0]["steps"] >= 1  # the calibrated step count is the one trained
    for row in (control, pixpro):
        assert 0 <= row["probe"]["miou"] <= 1 and 0 <= row["finetune"]["miou"] <= 1
    assert (runs / next(p.name for p in runs.iterdir() if p.name.startswith("pixpro_s0_")) / "backbone.safetensors").is_file()
    table = (results / "dense_transfer.md").read_text()
    assert "| random init | 0 | 1 |" in table and "| PixPro |" in table
    summary = json.loads((results / "dense_transfer.json").read_text())
    assert set(summary["methods"]) == {"control", "pixpro"} and summary["claims"] == []  # one seed: no claim tested

    bench.main(argv)  # everything measured: nothing is measured again
    assert len(_rows(results)) == len(rows)


def test_bad_data_and_budget_are_one_line(load_script, tmp_path):
    bench = load_script(REPO / "benchmarks" / "dense_transfer.py")
    with pytest.raises(SystemExit, match="must hold train/images"):
        bench.main(["--quick", "--data", str(tmp_path / "absent"), "--results", str(tmp_path / "r")])
    (tmp_path / "seg" / "train" / "images").mkdir(parents=True)
    (tmp_path / "seg" / "val" / "images").mkdir(parents=True)
    with pytest.raises(SystemExit, match="--budget-min must be > 0"):
        bench.main(["--data", str(tmp_path / "seg"), "--results", str(tmp_path / "r"), "--budget-min", "0"])
