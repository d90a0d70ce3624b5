"""engine.run: a new run never overwrites one; a resumed run takes its saved config and refuses changing overrides."""

from __future__ import annotations

import re

import pytest

from pixelssl.config import PretrainConfig, load_config, to_dict
from pixelssl.engine import run
from pixelssl.engine.checkpoint import save_checkpoint
from pixelssl.errors import PixelSSLError

SAFE = {"train.log_every", "data.num_workers"}


def _cfg(tmp_path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[f"run.output_dir={tmp_path}", *extra])


def _saved_run(tmp_path, step: int = 3):
    """A run directory whose checkpoints/last.pt holds the config of ``_cfg`` (run.name=saved, 10 steps)."""
    cfg = _cfg(tmp_path, "run.name=saved", "train.max_steps=10")
    save_checkpoint(tmp_path / "saved" / "checkpoints", {"step": step, "config": to_dict(cfg)}, step, keep=2)
    return cfg, tmp_path / "saved"


def test_a_new_run_gets_its_named_or_default_directory_with_its_config(tmp_path):
    cfg = _cfg(tmp_path, "run.name=first")
    run_dir = run.make_run_dir(cfg, None, lambda c: "unused")
    assert run_dir == tmp_path / "first"
    assert load_config(PretrainConfig, str(run_dir / "config.yaml")).run.name == "first"
    unnamed = run.make_run_dir(_cfg(tmp_path), None, lambda c: run.timestamped(c.method.name))
    assert re.fullmatch(r"pixpro_\d{8}-\d{6}", unnamed.name) and unnamed.parent == tmp_path


def test_an_existing_run_is_never_overwritten(tmp_path):
    cfg, run_dir = _saved_run(tmp_path)
    with pytest.raises(PixelSSLError, match=f"run directory '{run_dir}' already holds a run; resume it with --resume"):
        run.make_run_dir(cfg, None, lambda c: "unused")


def test_resuming_takes_the_saved_config_and_only_safe_overrides(tmp_path):
    cfg, run_dir = _saved_run(tmp_path)
    resumed, state, resumed_dir = run.start_run(PretrainConfig, None, run_dir, ["train.log_every=7"], SAFE,
                                                lambda c: "unused")
    assert resumed_dir == run_dir and state["step"] == 3
    assert resumed.train.max_steps == 10 and resumed.train.log_every == 7
    with pytest.raises(PixelSSLError, match=r"cannot change these keys when resuming .*: train\.max_steps: 10 -> 20"):
        run.load_run_config(PretrainConfig, None, run_dir, ["train.max_steps=20"], SAFE)


def test_a_checkpoint_file_resumes_too_and_nothing_to_resume_is_named(tmp_path):
    _, run_dir = _saved_run(tmp_path, step=5)
    assert run.find_checkpoint(run_dir) == run_dir / "checkpoints" / "last.pt"
    _, state, path = run.load_run_config(PretrainConfig, None, run_dir / "checkpoints" / "step_00000005.pt", None, SAFE)
    assert state["step"] == 5 and path.name == "step_00000005.pt"
    with pytest.raises(PixelSSLError, match="no checkpoint to resume at"):
        run.find_checkpoint(tmp_path / "nothing")
    with pytest.raises(ValueError, match="a config or a run to resume is needed"):
        run.load_run_config(PretrainConfig, None, None, None, SAFE)
