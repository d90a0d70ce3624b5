"""CamVid dense probe: pre-train each method on CamVid train images (labels unused) with the same budget, then
linear-probe frozen features on CamVid train labels and report val mIoU, beside a random-init control.

    python benchmarks/camvid_probe.py                       # demo budget, MoCo-v2 / PixContrast / PixPro: ~10 min
    python benchmarks/camvid_probe.py --methods all         # + DenseCL and the PixCon family: ~25 min on 2 cores
    python benchmarks/camvid_probe.py --steps 5 --quick     # smoke test (numbers meaningless)

Writes benchmarks/results/camvid_probe.{json,md}. Needs ../shared/data/camvid (or PIXELSSL_CAMVID).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

from pixelssl.cli.demo import ALL_METHODS, METHODS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAMVID = Path(os.environ.get("PIXELSSL_CAMVID", REPO.parent / "shared" / "data" / "camvid"))


def probe(backbone: torch.nn.Module, args: argparse.Namespace) -> dict:
    from pixelssl.data.datasets import SegmentationFolder
    from pixelssl.evaluate.probe import ProbeConfig, linear_probe

    cfg = ProbeConfig(levels=list(args.levels), image_size=args.probe_size, epochs=args.probe_epochs)
    return linear_probe(backbone, SegmentationFolder(CAMVID / "train"), SegmentationFolder(CAMVID / "val"), cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="pre-training steps per method (batch 32)")
    parser.add_argument("--image-size", type=int, default=96, help="side of the pre-training views")
    parser.add_argument("--methods", choices=("default", "all"), default="default",
                        help="'default': MoCo-v2, PixContrast, PixPro; 'all': + DenseCL and PixCon")
    parser.add_argument("--probe-size", type=int, default=180, help="shorter side of the images fed to the probe")
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--levels", nargs="+", default=["c4", "c5"], help="backbone levels the probe reads")
    parser.add_argument("--quick", action="store_true", help="few probe epochs; for checking the script runs")
    args = parser.parse_args()
    if not (CAMVID / "train" / "images").is_dir():
        raise SystemExit(f"CamVid not found at {CAMVID} (set PIXELSSL_CAMVID)")
    if args.quick:
        args.probe_epochs = 2

    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.models.backbones import build_backbone
    from pixelssl.train.loop import pretrain

    rows = []
    torch.manual_seed(0)
    metrics = probe(build_backbone("resnet18"), args)
    rows.append({"method": "random init", "steps": 0, "pretrain_s": 0.0, "miou": metrics["miou"],
                 "pixel_acc": metrics["pixel_acc"], "per_class_iou": metrics["per_class_iou"]})
    workdir = Path(tempfile.mkdtemp(prefix="camvid_probe_"))
    try:
        for label, preset in (ALL_METHODS if args.methods == "all" else METHODS):
            cfg = load_config(PretrainConfig, preset, [
                f"data.root={CAMVID / 'train' / 'images'}", f"data.image_size={args.image_size}",
                f"train.max_steps={args.steps}", f"run.output_dir={workdir}", f"run.name={preset}",
                "train.checkpoint_every=1000000", "train.tensorboard=false"])
            start = time.perf_counter()
            result = pretrain(cfg)
            seconds = time.perf_counter() - start
            metrics = probe(build_backbone("resnet18", str(result.backbone_path)), args)
            rows.append({"method": label, "steps": args.steps, "pretrain_s": seconds, "miou": metrics["miou"],
                         "pixel_acc": metrics["pixel_acc"], "per_class_iou": metrics["per_class_iou"],
                         "first_loss": result.first_loss, "final_loss": result.final_loss})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info = machine()
    lines = [f"CamVid linear probe (ResNet-18, levels {'+'.join(args.levels)}, probe images {args.probe_size} px short "
             f"side), each method pre-trained {args.steps} steps x batch 32 on {args.image_size} px views of the 367 "
             f"CamVid train images; val mIoU over 11 classes; measured {info['date']} on {info['cores']} CPU cores.",
             "", "| backbone | pre-train steps | pre-train time | val mIoU | pixel acc |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['steps']} | {r['pretrain_s']:.0f} s | {100 * r['miou']:.1f} "
                     f"| {100 * r['pixel_acc']:.1f} |")
    write_results("camvid_probe", {"machine": info, "args": vars(args), "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
