"""``benchmarks/gpu_check.py``, the first-GPU check: it skips cleanly without CUDA, records a failing or overrunning
part and goes on, and its toy CPU mode runs every part (every code path of the script) without an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run_script(*args: str, hide_gpus: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=900)


def test_without_cuda_it_says_so_and_writes_nothing(tmp_path):
    proc = run_script("--out", str(tmp_path / "results"), hide_gpus=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == ["gpu_check: CUDA is not available on this machine; skipped (nothing "
                                                "written)"]
    assert not (tmp_path / "results").exists()


def run_tiny(tmp_path: Path, *parts: str) -> dict:
    selected = ["--parts", ",".join(parts)] if parts else []
    proc = run_script("--device", "cpu", "--tiny", "--out", str(tmp_path), *selected)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    payload = json.loads((tmp_path / "gpu_check.json").read_text())
    assert payload["complete"] and (tmp_path / "gpu_check.md").is_file()
    assert {name: part.get("error") for name, part in payload["parts"].items()} == dict.fromkeys(payload["parts"])
    return payload["parts"]


def check_nccl_and_fill(parts: dict) -> None:
    nccl = parts["nccl"]
    assert nccl["ok"] and nccl["backend"] == "gloo" and nccl["wrapped_as"] == "DistributedDataParallel"
    assert nccl["sync_bn_class"] == "CpuSyncBatchNorm" and nccl["env"]["WORLD_SIZE"] == "1"
    assert [(row["size"], row["dtype"]) for row in parts["fill"]["rows"]] == [(64, "fp32"), (64, "bf16")]


def test_tiny_cpu_mode_runs_the_one_process_distributed_part_and_the_fills(tmp_path):
    """The driver, the distributed worker (the part most exposed to changes in ``engine/distributed.py``) and the
    fill timing; ~25 s, while every part takes 50-80 s on two shared cores (the slow test below)."""
    parts = run_tiny(tmp_path, "nccl", "fill")
    assert set(parts) == {"nccl", "fill"}
    check_nccl_and_fill(parts)


@pytest.mark.slow
def test_tiny_cpu_mode_runs_every_part_without_an_error(tmp_path):
    parts = run_tiny(tmp_path)
    assert set(parts) == {"throughput_bf16", "throughput_compile", "bf16_vs_fp32", "nccl", "fill"}
    assert parts["throughput_bf16"]["images_per_s"] > 0 and parts["throughput_compile"]["compile_s"] >= 0
    comparison = parts["bf16_vs_fp32"]
    assert len(comparison["loss_bf16"]) == len(comparison["loss_fp32"]) == comparison["steps"] == 2
    assert comparison["within_tolerance"]
    check_nccl_and_fill(parts)

def load_script():
    import importlib.util

    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
        sys.modules["gpu_check"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
        path = list(sys.path)
        spec.loader.exec_module(sys.modules["gpu_check"])
        sys.path[:] = path  # the script puts benchmarks/ on the path for its own imports
    return sys.modules["gpu_check"]


def test_a_failing_part_is_recorded_with_its_last_error_line(tmp_path):
    gpu_check = load_script()
    args = SimpleNamespace(device="tpu", tiny=True)  # the part's own argument parser refuses it at once
    result = gpu_check.launch("fill", args, tmp_path, tmp_path, limit=60)
    assert "invalid choice: 'tpu'" in result["error"] and result["returncode"] == 2 and result["log_tail"]


def test_a_part_past_its_limit_is_killed_and_recorded(tmp_path):
    gpu_check = load_script()
    args = SimpleNamespace(device="cpu", tiny=True)
    result = gpu_check.launch("fill", args, tmp_path, tmp_path, limit=0.5)  # still importing torch by then
    assert result["error"] == "timed out after 0.5 s (killed)" and result["part_s"] < 30
