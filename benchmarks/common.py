"""Helpers shared by the benchmark scripts: timing, subprocess isolation, result files, machine facts."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

# Where result tables go: benchmarks/results unless PIXELSSL_BENCH_RESULTS names another folder (run_all.py --quick
# sets it, so that smoke-test numbers never replace a measured table).
RESULTS = Path(os.environ.get("PIXELSSL_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict:
    """What the numbers were measured on."""
    from pixelssl.engine.runtime import cpu_has_native_bf16

    info = {"date": date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": str(torch.__version__), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": cpu_has_native_bf16()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Median and min wall time of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(script: Path, args: list[str], timeout: float = 3600, package_tree: Path | None = None) -> dict:
    """Run one benchmark case in a fresh process (clean peak-memory figure); it prints one JSON line last.
    ``package_tree``: a checkout whose ``pixelssl`` the case imports instead of this one (a before/after run)."""
    env = None
    if package_tree is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_tree), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_results(name: str, payload: dict, table: str, quick: bool = False) -> None:
    """``<results>/<name>.{json,md}``. A smoke test (``quick``) writes to a temporary folder unless
    PIXELSSL_BENCH_RESULTS names one, so that its partial, meaningless table never replaces a measured one."""
    folder = RESULTS
    if quick and not os.environ.get("PIXELSSL_BENCH_RESULTS"):
        folder = Path(tempfile.mkdtemp(prefix=f"{name}_quick_"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (folder / f"{name}.md").write_text(table + "\n")
    print(table)
    if folder != RESULTS:
        print(f"--quick: written to {folder}, not {RESULTS}")


# --------------------------------------------------------------------------- resumable measurements
def read_jsonl(path: Path) -> list[dict]:
    """Rows of a results .jsonl (a torn last line from an interrupted run is ignored), read as run metrics are."""
    from pixelssl.engine.logger import read_metrics

    return read_metrics(path)


def append_jsonl(path: Path, row: dict) -> None:
    """Append one finished row and flush it at once: an interrupted run keeps every row it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def git_commit() -> str:
    """The checkout's commit (with '+dirty' for uncommitted changes), recorded beside each measured row."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head or "unknown"


# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (beyond: the normal 1.96 is within 4%).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for fewer than two values)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else float("nan")


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """Mean of ``a[s] - b[s]`` over the seeds both have, with its 95% t-interval; None below two shared seeds."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    mean, std = mean_std(diffs)
    df = len(diffs) - 1
    half = (_T975[df - 1] if df <= len(_T975) else 1.96) * std / len(diffs) ** 0.5
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": seeds}
