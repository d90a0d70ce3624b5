"""Filling one hole in a large photo: ``fill_image`` with ``--strategy crop`` at 1024 x 768, 2048 x 1536 and
4096 x 3072 (one 256 x 256 hole, release-sized generator cnum 32, random weights: speed does not depend on them),
the same with ``--strategy whole`` up to ``--whole-up-to`` px wide (its cost grows with the square of the pixel
count: minutes at 2048 px, hours at 4096), and the whole ``pixelssl inpaint fill`` command on a 4096 x 3072 JPEG
(import, decode, fill, PNG write).

Each crop figure is the median of ``--repeats`` calls after one warm-up; a whole-image figure is one call (the
warm-up of a crop fill has already loaded the code paths). The known pixels are checked bit-identical to the input
in every case. Issue #21's goal: the 4096 x 3072 fill under 3 s on this CPU.

    python benchmarks/inpaint_photo.py          # writes benchmarks/results/inpaint_photo.{json,md}
    python benchmarks/inpaint_photo.py --quick  # one repeat, the 1024 px photo only (crop and whole)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_it, write_results  # noqa: E402

SIZES = [(1024, 768), (2048, 1536), (4096, 3072)]  # (width, height)
HOLE = 256


def photo(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth photo-like uint8 image (gradients plus noise) and a centred HOLE x HOLE hole."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 97 + y / 61)], axis=0) * 200
    image = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    hole = torch.zeros(height, width, dtype=torch.bool)
    top, left = (height - HOLE) // 2, (width - HOLE) // 2
    hole[top:top + HOLE, left:left + HOLE] = True
    return torch.from_numpy(image), hole


def fill_case(generator: torch.nn.Module, width: int, height: int, repeats: int) -> dict:
    from pixelssl.inpaint.fill import fill_image

    image, hole = photo(width, height)
    filled, _ = fill_image(generator, image, hole, strategy="crop")
    assert torch.equal(filled[:, ~hole], image[:, ~hole]), "known pixels changed"
    timed = time_it(lambda: fill_image(generator, image, hole, strategy="crop"), torch.device("cpu"), repeats)
    return {"width": width, "height": height, "hole": HOLE, "strategy": "crop", "known_pixels_identical": True,
            **timed}


def whole_case(generator: torch.nn.Module, width: int, height: int) -> dict:
    """One ``--strategy whole`` fill, timed: at 2048 px a single call already takes minutes."""
    from pixelssl.inpaint.fill import fill_image

    image, hole = photo(width, height)
    started = time.perf_counter()
    filled, _ = fill_image(generator, image, hole, strategy="whole")
    seconds = time.perf_counter() - started
    assert torch.equal(filled[:, ~hole], image[:, ~hole]), "known pixels changed"
    return {"width": width, "height": height, "hole": HOLE, "strategy": "whole", "known_pixels_identical": True,
            "median_s": seconds, "min_s": seconds, "repeats": 1}


def command_case(weights: Path, tmp: Path, repeats: int) -> dict:
    """``pixelssl inpaint fill`` end to end on a 4096 x 3072 JPEG (a fresh process each time, imports included)."""
    width, height = SIZES[-1]
    image, hole = photo(width, height)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp / "photo.jpg", quality=92)
    Image.fromarray(hole.numpy().astype(np.uint8) * 255).save(tmp / "mask.png")
    argv = [sys.executable, "-m", "pixelssl", "inpaint", "fill", "--weights", str(weights), "--image",
            str(tmp / "photo.jpg"), "--mask", str(tmp / "mask.png"), "--out", str(tmp / "filled.png")]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return {"width": width, "height": height, "median_s": float(np.median(times)), "min_s": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat, the 1024 px photo only")
    parser.add_argument("--whole-up-to", type=int, default=2048,
                        help="also time --strategy whole on photos up to this width (0: never; 4096 takes hours)")
    args = parser.parse_args()
    from pixelssl.config import load_config
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import build_generator, save_generator

    repeats = 1 if args.quick else args.repeats
    cfg = load_config(InpaintConfig, overrides=["model.cnum=32"])
    torch.manual_seed(0)
    generator = build_generator(cfg.model).eval()
    sizes = SIZES[:1] if args.quick else SIZES
    rows = [fill_case(generator, w, h, repeats) for w, h in sizes]
    whole = {w: whole_case(generator, w, h) for w, h in sizes if w <= args.whole_up_to}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "generator.safetensors"
        save_generator(generator, cfg.model, weights)
        command = None if args.quick else command_case(weights, Path(tmp), repeats)
    info = machine()
    lines = [f"Filling one {HOLE} x {HOLE} hole, measured {info['date']} on {info['cores']} "
             f"cores ({info['threads']} threads), release-sized generator (cnum 32); crop: median of {repeats} calls:", "",
             "| photo | `fill_image`, crop (s) | `fill_image`, whole (s, one call) | known pixels |", "|---|---:|---:|---|"]
    for r in rows:
        whole_s = f"{whole[r['width']]['median_s']:.1f}" if r["width"] in whole else "not run"
        lines.append(f"| {r['width']} x {r['height']} | {r['median_s']:.2f} | {whole_s} | bit-identical |")
    if command:
        lines += ["", f"`pixelssl inpaint fill` on a {command['width']} x {command['height']} JPEG, a fresh process "
                      f"each time (import, decode, fill, PNG write): median {command['median_s']:.2f} s."]
    write_results("inpaint_photo", {"machine": info, "fills": rows + list(whole.values()), "command": command},
                  "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
    main()
