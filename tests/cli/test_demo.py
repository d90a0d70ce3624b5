"""cli.demo: ``pixelssl demo`` end to end at its smoke-test budget: every row measured, files written, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

from pixelssl.cli import main
from pixelssl.cli.demo import ALL_METHODS, run_demo


def test_quick_demo_writes_measured_table(tmp_path):
    rows = run_demo(tmp_path, quick=True, methods=(("PixPro", "pixpro_r18_demo"),), steps=2)
    # the untrained control of the preset's initialisation (zero-init residual) comes first
    assert [r["method"] for r in rows] == ["random init, zero-init residual", "PixPro"]
    assert rows[-1]["steps"] == 2 and rows[-1]["pretrain_s"] > 0
    assert all(0.0 <= r["miou"] <= 1.0 and 0.0 <= r["pixel_acc"] <= 1.0 for r in rows)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][-1]["miou"] == rows[-1]["miou"] and saved["budget"]["steps"] == 2
    table = (tmp_path / "results.md").read_text()
    assert "| PixPro | 2 |" in table and "| random init, zero-init residual |" in table
    assert Path(rows[-1]["run"]).is_dir() and Path(rows[-1]["run"]).parent == tmp_path
    report = (tmp_path / "report.html").read_text()  # the demo ends with its report (tests/report check its content)
    assert "Demo: method comparison" in report and report.count("<img ") >= 8 and saved["report_s"] > 0


def test_demo_presets_all_load():
    from pixelssl.config import PretrainConfig, load_config

    for _, preset in ALL_METHODS:
        cfg = load_config(PretrainConfig, preset, [])
        assert cfg.model.backbone == "resnet18" and cfg.data.image_size == 80 and cfg.train.batch_size == 32


def test_demo_cli_rejects_unknown_method(tmp_path, capsys):
    assert main(["demo", "--quick", "--output-dir", str(tmp_path), "--methods", "pixpro,simclr"]) == 1
    assert "unknown simclr" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_demo_controls_are_the_untrained_start_of_each_initialisation_in_use():
    import torch

    from pixelssl.cli.demo import untrained_controls
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.engine.runtime import seed_everything
    from pixelssl.methods import build_method

    small = ["model.proj_hidden_dim=16", "model.proj_dim=8"]
    configs = [load_config(PretrainConfig, "pixpro_r18_demo", [*small, "model.zero_init_residual=true"]),
               load_config(PretrainConfig, "pixcontrast_r18_demo", [*small, "model.zero_init_residual=true"]),
               load_config(PretrainConfig, "moco_r18_demo", [*small, "model.zero_init_residual=false"])]
    controls = untrained_controls(configs)
    assert [label for label, _ in controls] == ["random init, zero-init residual", "random init"]
    for (_, backbone), cfg in zip(controls, (configs[0], configs[2])):
        seed_everything(cfg.train.seed)
        start = build_method(cfg).backbone.state_dict()
        assert all(torch.equal(v, start[k]) for k, v in backbone.state_dict().items())
