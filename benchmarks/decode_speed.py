"""JPEG decoding per image, one thread: ``read_rgb`` (torchvision.io.decode_jpeg fast path) against the PIL + numpy
path it replaces, side by side on the same files; and what ``data.device_decode`` moves off the loader workers
-> results/decode_speed.{json,md}.

Files: a CamVid frame when ``../shared/data/camvid`` exists (480x360 street scene), plus synthetic 640x480 and
1280x960 JPEGs (quality 90). CPU time is reported (the meaningful number on a shared machine) beside wall time.

Second table, per sample with two 224 px views and ``data.device_augment`` (so no photometric work in the worker):
the loader worker's CPU time when it decodes and crops (default) and when it only reads the bytes, the header and
draws the crops (``data.device_decode``); and the device-side time per image of decoding + cropping a batch of
those JPEGs (``PendingDecode.fill``): here on the CPU (batch 16), and on CUDA (batch 128, nvJPEG) when available.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from pixelssl.data import datasets, decode  # noqa: E402
from pixelssl.data.device_augment import build_param_samplers  # noqa: E402
from pixelssl.data.device_decode import PendingDecode  # noqa: E402
from pixelssl.data.loader import TwoViewDataset, collate_pairs  # noqa: E402
from pixelssl.data.views import TwoViewSampler  # noqa: E402


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
    camvid_root = os.environ.get("PIXELSSL_CAMVID") or Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
    camvid = Path(camvid_root) / "train" / "images"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = [synthetic_jpeg(Path(tmp), 640, 480), synthetic_jpeg(Path(tmp), 1280, 960)]
        files += sorted(camvid.glob("*.jpg"))[:1] if camvid.is_dir() else []
        for path in files:
            fast = best_ms(lambda p=path: decode.read_rgb(p), args.calls, args.repeats)
            original = decode._decode_jpeg
            decode._decode_jpeg = lambda p, image: None  # the PIL path
            try:
                pil = best_ms(lambda p=path: decode.read_rgb(p), args.calls, args.repeats)
            finally:
                decode._decode_jpeg = original
            width, height = Image.open(path).size
            rows.append({"file": "CamVid frame" if path.parent == camvid else "synthetic", "size": f"{width}x{height}",
                         "decode_jpeg_ms": round(fast[1], 2), "pil_ms": round(pil[1], 2),
                         "decode_jpeg_wall_ms": round(fast[0], 2), "pil_wall_ms": round(pil[0], 2),
                         "speedup": round(pil[1] / fast[1], 2)})
        device_rows = [device_decode_row(path, camvid, args) for path in files]
    info = common.machine()
    lines = [f"JPEG decoding to a uint8 RGB tensor, one thread, CPU ms per image, measured {info['date']} on "
             f"{info['cores']} cores ({info['cpu_capability']})", "",
             "| file | size | decode_jpeg (ms) | PIL + numpy (ms) | speed-up |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['file']} | {r['size']} | {r['decode_jpeg_ms']} | {r['pil_ms']} | {r['speedup']}x |" for r in rows]
    lines += ["", "Loader worker CPU ms per sample (two 224 px views, device_augment on) and device ms per image of "
              "decoding + cropping a batch there", "",
              "| file | size | worker: decode + crop (ms) | worker: device_decode (ms) | device part, CPU (ms) |"
              " device part, CUDA (ms) |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['file']} | {r['size']} | {r['worker_cpu_path_ms']} | {r['worker_device_decode_ms']} | "
              f"{r['device_part_cpu_ms']} | {r.get('device_part_cuda_ms', 'n/a')} |" for r in device_rows]
    common.write_results("decode_speed", {"machine": info, "rows": rows, "device_decode": device_rows},
                         "\n".join(lines), quick=args.quick)


def device_decode_row(path: Path, camvid: Path, args: argparse.Namespace) -> dict:
    """Worker CPU per sample with and without ``data.device_decode``, and the device part per image."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / path.name).symlink_to(path.resolve())
        source = datasets.ImageFolder(tmp)
        views = TwoViewSampler(224, scale=(0.2, 1.0))
        samplers = build_param_samplers("byol")
        cpu_set = TwoViewDataset(source, views, (None, None), 0, samplers)  # type: ignore[arg-type]
        device_set = TwoViewDataset(source, views, (None, None), 0, samplers, device_decode=True)  # type: ignore[arg-type]
        cpu_path = best_ms(lambda: cpu_set[(0, 0)], args.calls, args.repeats)
        device_path = best_ms(lambda: device_set[(0, 0)], args.calls, args.repeats)
        width, height = Image.open(path).size
        row = {"file": "CamVid frame" if path.parent == camvid else "synthetic", "size": f"{width}x{height}",
               "worker_cpu_path_ms": round(cpu_path[1], 2), "worker_device_decode_ms": round(device_path[1], 2),
               "device_part_cpu_ms": round(device_part_ms(device_set, torch.device("cpu"), 16, args), 2)}
        if torch.cuda.is_available():
            row["device_part_cuda_ms"] = round(device_part_ms(device_set, torch.device("cuda"), 128, args), 3)
    return row


def device_part_ms(dataset: TwoViewDataset, device: torch.device, batch_size: int, args: argparse.Namespace) -> float:
    """Wall ms per image of ``PendingDecode.fill`` on a batch of ``batch_size`` copies of the dataset's sample."""
    batch = collate_pairs([dataset[(0, 0)] for _ in range(batch_size)])
    views = {key: batch[key].to(device) for key in ("view1", "view2", "box1", "box2", "flip1", "flip2")}
    photo = [batch["photo1"], batch["photo2"]]
    pending = PendingDecode.take(batch)
    assert pending is not None

    def fill() -> None:
        pending.fill(views, photo, 224)
        common.sync(device)

    calls = max(1, args.calls // 4)
    return best_ms(fill, calls, args.repeats)[0] / batch_size


if __name__ == "__main__":
    main()
