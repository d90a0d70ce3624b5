"""JPEG decoding per image, one thread: ``read_rgb`` (torchvision.io.decode_jpeg fast path) against the PIL + numpy
path it replaces, side by side on the same files -> results/decode_speed.{json,md}.

Files: CamVid frames when ``../shared/data/camvid`` exists (960x720 street scenes), plus synthetic 640x480 and
1280x960 JPEGs (quality 90). CPU time is reported (the meaningful number on a shared machine) beside wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from pixelssl.data import datasets  # noqa: E402


def best_ms(fn, calls: int, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` (wall, CPU) milliseconds per call."""
    fn()
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        best_wall = min(best_wall, (time.perf_counter() - wall) / calls * 1e3)
        best_cpu = min(best_cpu, (time.process_time() - cpu) / calls * 1e3)
    return best_wall, best_cpu


def synthetic_jpeg(folder: Path, width: int, height: int) -> Path:
    rng = np.random.default_rng(width)
    ramp = np.linspace(0, 200, width)[None, :, None]
    pixels = (rng.random((height, width, 3)) * 50 + ramp).astype(np.uint8)
    path = folder / f"synthetic_{width}x{height}.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.repeats = 5, 1
    torch.set_num_threads(1)  # as in a data-loader worker
    camvid = common.RESULTS.parents[1].parent / "shared" / "data" / "camvid" / "train" / "images"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = [synthetic_jpeg(Path(tmp), 640, 480), synthetic_jpeg(Path(tmp), 1280, 960)]
        files += sorted(camvid.glob("*.jpg"))[:1] if camvid.is_dir() else []
        for path in files:
            fast = best_ms(lambda p=path: datasets.read_rgb(p), args.calls, args.repeats)
            original = datasets._decode_jpeg
            datasets._decode_jpeg = lambda p, image: None  # the PIL path
            try:
                pil = best_ms(lambda p=path: datasets.read_rgb(p), args.calls, args.repeats)
            finally:
                datasets._decode_jpeg = original
            width, height = Image.open(path).size
            rows.append({"file": "CamVid frame" if path.parent == camvid else "synthetic", "size": f"{width}x{height}",
                         "decode_jpeg_ms": round(fast[1], 2), "pil_ms": round(pil[1], 2),
                         "decode_jpeg_wall_ms": round(fast[0], 2), "pil_wall_ms": round(pil[0], 2),
                         "speedup": round(pil[1] / fast[1], 2)})
    info = common.machine()
    lines = [f"JPEG decoding to a uint8 RGB tensor, one thread, CPU ms per image, measured {info['date']} on "
             f"{info['cores']} cores ({info['cpu_capability']})", "",
             "| file | size | decode_jpeg (ms) | PIL + numpy (ms) | speed-up |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['file']} | {r['size']} | {r['decode_jpeg_ms']} | {r['pil_ms']} | {r['speedup']}x |" for r in rows]
    common.write_results("decode_speed", {"machine": info, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
