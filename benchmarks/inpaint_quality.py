"""Inpainting quality on CamVid after a fixed CPU training budget: DeepFill v1, its no-attention ablation, Telea, NS.

Both generators train for the same wall-clock budget on random crops of ``camvid/train/images`` (same seed, same
data order, same holes), then every method fills the same seeded holes in centre crops of ``camvid/val/images``
and is scored with mean L1, mean L2, PSNR, total variation and SSIM (``pixelssl.inpaint.metrics``).

The default budget is small (a few CPU minutes per model, ~15 minutes in all), far from the release's days on a
GPU: the numbers show where a short CPU run gets, not the paper's quality. ``--minutes`` buys more.

    python benchmarks/inpaint_quality.py                 # writes benchmarks/results/inpaint_quality.{json,md}
    python benchmarks/inpaint_quality.py --quick         # 1 minute per model, 16 images: a smoke test
    python benchmarks/inpaint_quality.py --minutes 60 --size 256 --cnum 32
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine, write_results  # noqa: E402

DEFAULT_CAMVID = Path(os.environ.get("PIXELSSL_CAMVID", HERE.parent.parent / "shared" / "data" / "camvid"))


def train_one(camvid: Path, run_dir: Path, contextual_attention: bool, args: argparse.Namespace):
    """Train one generator for ``args.minutes`` of wall-clock time; returns the training result."""
    from pixelssl.config import load_config
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import train_inpainting

    overrides = [
        f"run.output_dir={run_dir}", f"run.name={'full' if contextual_attention else 'no_ca'}",
        f"data.root={camvid / 'train' / 'images'}", f"data.val_root={camvid / 'val' / 'images'}", "data.val_images=16",
        f"data.image_size={args.size}", f"mask.box_size={args.size // 2}", f"mask.max_delta={args.size // 8}",
        f"model.cnum={args.cnum}", f"model.critic_cnum={2 * args.cnum}",
        f"model.contextual_attention={str(contextual_attention).lower()}",
        f"train.batch_size={args.batch_size}", f"train.lr={args.lr}", f"train.critic_steps={args.critic_steps}",
        "train.max_steps=1000000", f"train.time_budget={args.minutes * 60}", f"train.seed={args.seed}",
        "train.checkpoint_every=1000000", "train.image_every=0", "train.log_every=50", "train.progress=false",
    ]
    return train_inpainting(load_config(InpaintConfig, overrides=overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", type=Path, default=DEFAULT_CAMVID, help="folder with train/images and val/images")
    parser.add_argument("--minutes", type=float, default=6.0, help="training wall-clock budget per model")
    parser.add_argument("--size", type=int, default=128, help="training and evaluation crop side (hole box: size/2)")
    parser.add_argument("--cnum", type=int, default=16, help="generator channel base (release: 32)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam lr (release: 1e-4; higher for short budgets)")
    parser.add_argument("--critic-steps", type=int, default=1, help="release: 5")
    parser.add_argument("--eval-images", type=int, default=101, help="first N validation images (CamVid val has 101)")
    parser.add_argument("--masks", default="rect", choices=("rect", "stroke", "mixed"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--quick", action="store_true", help="1 minute per model and 16 images (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.eval_images = 1.0, 16
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.camvid / "train" / "images").is_dir() or not (args.camvid / "val" / "images").is_dir():
        sys.exit(f"CamVid not found at {args.camvid} (expected train/images and val/images; see --camvid)")

    from pixelssl.data.datasets import ImageFolder
    from pixelssl.inpaint.evaluate import (
        evaluate_fillers,
        evaluation_set,
        format_table,
        generator_filler,
        opencv_filler,
    )
    from pixelssl.inpaint.fill import load_generator

    with tempfile.TemporaryDirectory(prefix="inpaint_quality_") as tmp:
        trained = {name: train_one(args.camvid, Path(tmp), ca, args) for name, ca in (("full", True), ("no_ca", False))}
        fillers = {"DeepFill v1 (contextual attention)": generator_filler(load_generator(trained["full"].weights_path)),
                   "same generator without CA": generator_filler(load_generator(trained["no_ca"].weights_path)),
                   "OpenCV Telea": opencv_filler("telea"), "OpenCV Navier-Stokes": opencv_filler("ns")}
        images, holes = evaluation_set(ImageFolder(args.camvid / "val" / "images"), args.eval_images, args.size,
                                       args.masks, args.seed)
        results = evaluate_fillers(fillers, images, holes)

    info = machine()
    training = {name: {"steps": r.steps, "seconds": round(r.seconds, 1), "images_per_s": round(r.images_per_second, 2),
                       "generator_parameters": r.generator_parameters, "held_out_hole_l1": r.held_out_l1}
                for name, r in trained.items()}
    header = (f"CamVid val, {images.shape[0]} images, {args.size}px centre crops, seeded {args.masks} holes "
              f"(box {args.size // 2}px), measured {info['date']} on {info['cores']} cores. Training: "
              f"{args.minutes:g} min per model on CamVid train ({training['full']['steps']} / "
              f"{training['no_ca']['steps']} steps of batch {args.batch_size}, cnum {args.cnum}, lr {args.lr:g}, "
              f"{args.critic_steps} critic step(s)).")
    table = "\n".join([header, "", format_table(results), "",
                       "L1 / L2 / TV as in the DeepFill v1 paper (percent of the [0, 1] range, whole image with known "
                       "pixels kept); TV is the completed image's total variation (lower = smoother)."])
    write_results("inpaint_quality", {"machine": info, "settings": vars(args) | {"camvid": str(args.camvid)},
                                      "training": training, "results": results}, table)


if __name__ == "__main__":
    main()
