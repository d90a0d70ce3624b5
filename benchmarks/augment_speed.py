"""Speed of the BYOL photometric augmentation per view, ms on one core -> results/augment_speed.json.

Reports wall time and process CPU time (best of ``--repeats``); on a shared, busy machine the CPU time is the
meaningful number.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from pixelssl.data.augment import byol_augment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402  (benchmarks/results, or PIXELSSL_BENCH_RESULTS)


def measure(view: int, size: int, calls: int, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` (wall, CPU) milliseconds for one call on a random (3, size, size) uint8 view."""
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    transform = byol_augment(view)
    transform(image)  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            transform(image)
        best_wall = min(best_wall, (time.perf_counter() - wall) / calls * 1e3)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / calls * 1e3)
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a data-loader worker
    rows = []
    for size in (96, 224):
        for view in (0, 1):
            wall, cpu = measure(view, size, args.calls, args.repeats)
            rows.append({"size": size, "view": view, "wall_ms": round(wall, 3), "cpu_ms": round(cpu, 3)})
            print(f"size {size:4d}  view {view}  wall {wall:6.2f} ms  cpu {cpu:6.2f} ms")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "augment_speed.json"
    summary = {"machine": platform.processor() or platform.machine(), "threads": 1, "calls": args.calls}
    out.write_text(json.dumps({**summary, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
