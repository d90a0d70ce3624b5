"""cli.train: ``pixelssl pretrain`` (figures, --resume checks), ``info`` and ``config``; errors are one line."""

from __future__ import annotations

import json

from pixelssl.cli import main
from pixelssl.config import PretrainConfig, load_config, to_yaml


def test_the_pretrain_command_hands_the_figures_to_training_and_the_api_warns_without_them(tmp_path, caplog):
    """``pixelssl pretrain`` hands ``TensorBoardFigures`` to the loop (train/ does not import report/); a direct
    ``pretrain(cfg)`` with ``train.figure_every`` and no drawer says so and trains without figures."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pixelssl.train.loop import pretrain

    common = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=64",
              "data.synthetic.num_images=4", "data.synthetic.size=64", "data.num_workers=0", "train.batch_size=4",
              "train.max_steps=1", "train.progress=false", "train.amp=fp32", "train.tensorboard=true",
              "train.figure_every=1", f"run.output_dir={tmp_path}"]
    with caplog.at_level(logging.WARNING, logger="pixelssl.train.loop"):
        result = pretrain(load_config(PretrainConfig, overrides=[*common, "run.name=api"]))
    assert "given no figure drawer" in caplog.text
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == []
    assert main(["pretrain", "--config", "pixpro_r18_demo", *common, "run.name=cli"]) == 0  # (resets logging)
    events = EventAccumulator(str(tmp_path / "cli" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "figures/attention/0" in events.Tags()["images"]


def test_resume_auto_needs_a_run_name(tmp_path, capsys):
    assert main(["pretrain", "--resume", "auto", "--config", "pixpro_r18_demo", f"run.output_dir={tmp_path}"]) == 1
    assert "run.name" in capsys.readouterr().err


def test_resume_takes_the_saved_config_not_a_new_one(tmp_path, capsys):
    assert main(["pretrain", "--resume", str(tmp_path), "--config", "pixpro_r18_demo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --resume continues a run with its saved config; do not pass --config with it"]


def test_info_summarises_a_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "eval" / "probe").mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(load_config(PretrainConfig, "pixcontrast_r18_demo")))
    records = [{"step": 1, "loss": 2.5, "lr": 0.1}, {"step": 2, "loss": 2.25, "lr": 0.05},
               {"step": 2, "monitor/probe_miou": 0.125}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "eval" / "probe" / "eval.json").write_text(json.dumps({"metrics": {"miou": 0.375, "class_names": ["a"]}}))
    assert main(["info", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"run:      {run}" in lines and "method:   pixcontrast   backbone: resnet18" in lines
    assert "data:     synthetic scenes at 80px, batch 32" in lines
    assert "last:     step=2, loss=2.25, lr=0.05" in lines  # the last training record, not the monitor's
    assert "monitor:  step=2, monitor/probe_miou=0.125" in lines
    assert "resume:   no checkpoint" in lines and "backbone: not exported yet (run unfinished)" in lines
    assert "eval:     probe: miou=0.375" in lines


def test_info_on_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: '{tmp_path}' is not a run directory (no config.yaml)"


def test_config_lists_the_presets_and_prints_a_resolved_one(capsys):
    assert main(["config", "--list"]) == 0
    presets = capsys.readouterr().out.split()
    assert {"pixpro_r18_demo", "densecl_r50", "moco_r18_demo"} <= set(presets) and presets == sorted(presets)
    assert main(["config", "--config", "moco_r18_demo", "train.batch_size=16"]) == 0
    printed = capsys.readouterr().out
    assert "name: moco" in printed and "batch_size: 16" in printed
