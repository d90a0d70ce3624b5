"""Filling one hole in a large photo: ``fill_image`` with ``--strategy crop`` at 1024 x 768, 2048 x 1536 and
4096 x 3072 (one 256 x 256 hole, release-sized generator cnum 32, random weights: speed does not depend on them),
and the whole ``pixelssl inpaint fill`` command on a 4096 x 3072 JPEG (import, decode, fill, PNG write).

Each figure is the median of ``--repeats`` calls after one warm-up, with the known pixels checked bit-identical to
the input. Issue #21's goal: the 4096 x 3072 fill under 3 s on this CPU.

    python benchmarks/inpaint_photo.py          # writes benchmarks/results/inpaint_photo.{json,md}
    python benchmarks/inpaint_photo.py --quick  # one repeat, the 1024 px photo only
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
    return {"width": width, "height": height, "hole": HOLE, "known_pixels_identical": True, **timed}


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
    args = parser.parse_args()
    from pixelssl.config import load_config
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import build_generator, save_generator

    repeats = 1 if args.quick else args.repeats
    cfg = load_config(InpaintConfig, overrides=["model.cnum=32"])
    torch.manual_seed(0)
    generator = build_generator(cfg.model).eval()
    rows = [fill_case(generator, w, h, repeats) for w, h in (SIZES[:1] if args.quick else SIZES)]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "generator.safetensors"
        save_generator(generator, cfg.model, weights)
        command = None if args.quick else command_case(weights, Path(tmp), repeats)
    info = machine()
    lines = [f"Filling one {HOLE} x {HOLE} hole with `--strategy crop`, measured {info['date']} on {info['cores']} "
             f"cores ({info['threads']} threads), release-sized generator (cnum 32), median of {repeats}:", "",
             "| photo | `fill_image` (s) | known pixels |", "|---|---:|---|"]
    lines += [f"| {r['width']} x {r['height']} | {r['median_s']:.2f} | bit-identical |" for r in rows]
    if command:
        lines += ["", f"`pixelssl inpaint fill` on a {command['width']} x {command['height']} JPEG, a fresh process "
                      f"each time (import, decode, fill, PNG write): median {command['median_s']:.2f} s."]
    write_results("inpaint_photo", {"machine": info, "fills": rows, "command": command}, "\n".join(lines))


if __name__ == "__main__":
    main()
