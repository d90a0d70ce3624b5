"""report.sources: what a report reads from a run directory, each missing or unreadable piece a one-line note."""

from __future__ import annotations

import json

from torch import nn

from pixelssl.config import PretrainConfig, load_config, to_yaml
from pixelssl.report.sources import demo_runs, demo_summary, load_run


def _started_run(root, name="started"):
    """A run directory as a run leaves it before its first log line: config.yaml only."""
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(load_config(PretrainConfig, "moco_r18_demo")))
    return run


def test_a_missing_run_directory_is_a_note_in_every_section(tmp_path):
    run = load_run(tmp_path / "gone")
    assert run.label == "gone" and run.cfg is None and run.model is None
    assert run.notes == {section: f"run directory {tmp_path / 'gone'} does not exist"
                         for section in ("config", "curves", "figures")}


def test_a_started_run_has_its_config_and_notes_for_what_it_lacks(tmp_path):
    run = load_run(_started_run(tmp_path))
    assert run.cfg.method.name == "moco" and "name: moco" in run.config_yaml
    assert run.notes["curves"] == "no metrics yet"
    assert run.notes["figures"].startswith("no usable checkpoint in")
    assert set(run.notes) == {"curves", "figures"} and not run.evals and run.model is None
    assert "figures" not in load_run(_started_run(tmp_path, "again"), with_model=False).notes  # nothing asked


def test_unreadable_metrics_evaluations_and_config_are_named(tmp_path):
    run_dir = _started_run(tmp_path)
    (run_dir / "metrics.jsonl").write_text("{torn\n")
    for name, text in (("probe", json.dumps({"kind": "probe", "metrics": {"miou": 0.5}})), ("broken", "[1, 2]"),
                       ("cut", '{"kind": ')):
        (run_dir / "eval" / name).mkdir(parents=True)
        (run_dir / "eval" / name / "eval.json").write_text(text)
    run = load_run(run_dir, with_model=False)
    assert run.notes["curves"] == "metrics.jsonl holds no readable record"
    assert run.evals == [("eval/probe/eval.json", {"kind": "probe", "metrics": {"miou": 0.5}})]
    assert run.notes["evaluation"].startswith("eval/broken/eval.json unreadable (not a JSON object); "
                                              "eval/cut/eval.json unreadable (")
    (run_dir / "config.yaml").write_text("train:\n  base_lr: -1\n")
    run = load_run(run_dir, with_model=False)
    assert run.notes["config"].startswith(f"cannot read {run_dir / 'config.yaml'}: ") and "train.base_lr" in \
        run.notes["config"]
    assert run.config_yaml == "train:\n  base_lr: -1\n" and run.cfg is None  # shown as it is


def test_a_model_in_memory_is_used_as_it_is(tmp_path):
    model = nn.Linear(2, 2)
    run = load_run(_started_run(tmp_path), method=model, label="demo PixPro")
    assert run.model is model and run.model_source == "the model in memory (end of training)"
    assert run.label == "demo PixPro" and "figures" not in run.notes


def test_a_demo_folder_lists_its_runs_even_after_it_was_moved(tmp_path):
    assert demo_summary(tmp_path) is None
    (tmp_path / "results.json").write_text(json.dumps({"rows": "not a list"}))
    assert demo_summary(tmp_path) is None
    (tmp_path / "kept").mkdir()
    rows = [{"method": "random init", "run": None}, {"method": "PixPro", "run": str(tmp_path / "kept")},
            {"method": "MoCo", "run": "/elsewhere/before/the/move/moco"}]
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    summary = demo_summary(tmp_path)
    assert summary["rows"] == rows
    assert demo_runs(tmp_path, summary) == [tmp_path / "kept", tmp_path / "moco"]
