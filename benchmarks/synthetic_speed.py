"""Rendering speed of the built-in synthetic scenes, ms per image on one core -> results/synthetic_speed.json.

Reports wall time and process CPU time (best of ``--repeats``); on a shared, busy machine the CPU time is the
meaningful number, since one thread's CPU time does not grow while it waits for a core.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from pixelssl.data.synthetic import SyntheticScenes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402  (benchmarks/results, or PIXELSSL_BENCH_RESULTS)


def measure(size: int, num_classes: int, images: int, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` (wall, CPU) milliseconds to render one scene with ``load``, as pre-training does."""
    scenes = SyntheticScenes(images, size=size, num_classes=num_classes)
    scenes.load(0)  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(images):
            scenes.load(index)
        best_wall = min(best_wall, (time.perf_counter() - wall) / images * 1e3)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / images * 1e3)
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for size, num_classes in ((128, 6), (128, 12), (224, 6)):
        wall, cpu = measure(size, num_classes, args.images, args.repeats)
        rows.append({"size": size, "num_classes": num_classes, "wall_ms": round(wall, 3), "cpu_ms": round(cpu, 3)})
        print(f"size {size:4d}  classes {num_classes:2d}  wall {wall:6.2f} ms/image  cpu {cpu:6.2f} ms/image")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "synthetic_speed.json"
    summary = {"machine": platform.processor() or platform.machine(), "threads": 1, "images": args.images}
    out.write_text(json.dumps({**summary, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
