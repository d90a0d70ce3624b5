"""Detection transfer on the synthetic COCO export: a PixPro-pre-trained ResNet-18 vs random init, equal steps.

    python benchmarks/detection_transfer.py                      # the README's table (~40 min on 2 quiet cores)
    python benchmarks/detection_transfer.py --models fcos --steps 300 --pretrain-steps 200
    python benchmarks/detection_transfer.py --quick              # smoke test (numbers meaningless)

1. exports the synthetic scenes as COCO (``pixelssl data export-coco``; train / val splits never overlap),
2. pre-trains PixPro (``pixpro_r18_demo`` preset) on the synthetic pre-training scenes (labels unused),
3. fine-tunes each detector from the PixPro backbone and from a random init with the same config and steps
   (``pixelssl finetune-det``'s API), and scores box AP with pycocotools on the val split.

Writes benchmarks/results/detection_transfer.{json,md}; run directories go to runs/detection_transfer/.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "runs" / "detection_transfer"))
    p.add_argument("--models", default="fcos,faster_rcnn", help="comma-separated: fcos, faster_rcnn, mask_rcnn")
    p.add_argument("--train-images", type=int, default=400)
    p.add_argument("--val-images", type=int, default=100)
    p.add_argument("--size", type=int, default=128, help="scene side in px (also the detector's min/max size)")
    p.add_argument("--pretrain-steps", type=int, default=100)
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps (same for every backbone)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--norm", default="bn", help="frozen | sync | bn (bn: BatchNorm trained, as SyncBN on one "
                                               "process; random init cannot use FrozenBN's identity statistics)")
    p.add_argument("--trainable-layers", type=int, default=5)
    p.add_argument("--fpn-channels", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrained", metavar="RUN", help="reuse this PixPro run directory instead of pre-training "
                                                      "(--pretrain-steps must say how long it trained)")
    p.add_argument("--merge", action="store_true", help="keep the rows of other models from the existing results "
                                                       "file when it was measured with the same settings")
    p.add_argument("--quick", action="store_true", help="tiny sizes and steps: checks the script runs")
    args = p.parse_args()
    if args.quick:
        args.train_images, args.val_images, args.pretrain_steps, args.steps = 16, 8, 2, 3
    return args


def pretrain_pixpro(out: Path, steps: int) -> tuple[Path, dict]:
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.train.loop import pretrain

    shutil.rmtree(out / "pixpro", ignore_errors=True)
    cfg = load_config(PretrainConfig, "pixpro_r18_demo", [
        f"run.output_dir={out}", "run.name=pixpro", f"train.max_steps={steps}", "train.checkpoint_every=1000000"])
    result = pretrain(cfg)
    return result.run_dir, {"steps": steps, "seconds": result.seconds, "first_loss": result.first_loss,
                            "final_loss": result.final_loss, "preset": "pixpro_r18_demo"}


def finetune(spec: str, model: str, data: Path, args: argparse.Namespace) -> dict:
    from pixelssl.config import load_config, to_dict
    from pixelssl.data.coco import CocoDetection
    from pixelssl.evaluate.detection import DetectionConfig, finetune_detection
    from pixelssl.evaluate.source import resolve_backbone

    cfg = load_config(DetectionConfig, None, [
        f"model={model}", f"norm={args.norm}", f"trainable_layers={args.trainable_layers}",
        f"fpn_channels={args.fpn_channels}", f"min_size={args.size}", f"max_size={args.size}",
        f"steps={args.steps}", f"batch_size={args.batch_size}", f"lr={args.lr}",
        f"warmup_steps={min(50, args.steps - 1)}", "roi_batch_size=128", "clip_grad_norm=10", f"seed={args.seed}",
        "log_every=25", "device=cpu"])
    backbone, source = resolve_backbone(spec, "resnet18", seed=args.seed)
    masks = model == "mask_rcnn"
    train = CocoDetection(data / "train.json", data / "images", masks=masks)
    val = CocoDetection(data / "val.json", data / "images", masks=masks)
    metrics = finetune_detection(backbone, train, val, cfg)
    return {"model": model, "backbone": source, "config": to_dict(cfg), "bbox": metrics["bbox"],
            "segm": metrics.get("segm"), "train_loss": metrics["train_loss"], "timing": metrics["timing"]}


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table(rows: list[dict], args: argparse.Namespace, pretrain: dict, info: dict) -> str:
    lines = [f"Detection transfer on the synthetic COCO export ({args.train_images} train / {args.val_images} val "
             f"scenes, {args.size} px, 6 classes); ResNet-18 R-FPN (FPN width {args.fpn_channels}), "
             f"{args.steps} steps x batch {args.batch_size}, SGD lr {args.lr}, norm {args.norm}, trainable layers "
             f"{args.trainable_layers}; PixPro pre-trained {pretrain['steps']} steps (pixpro_r18_demo, "
             f"{pretrain['seconds']:.0f} s); measured {info['date']} on {info['cores']} shared cores.", "",
             "| model | backbone | box AP | AP50 | AP75 | APs | APm | mask AP | final loss | fine-tune time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        box, segm = row["bbox"], row["segm"] or {}
        lines.append(f"| {row['model']} | {row['label']} | {percent(box['AP'])} | {percent(box['AP50'])} | "
                     f"{percent(box['AP75'])} | {percent(box['APs'])} | {percent(box['APm'])} | "
                     f"{percent(segm.get('AP'))} | {row['train_loss'][-1][1]:.3f} | {row['timing']['total_s']:.0f} s |")
    lines += ["", "AP values are COCO's (x100), from pycocotools on the val split; one seed."]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(1)
    out = Path(args.out)
    data = out / "coco"
    from pixelssl.data.synthetic_coco import export_synthetic_coco

    shutil.rmtree(data, ignore_errors=True)
    export_synthetic_coco(data, args.train_images, args.val_images, size=args.size, seed=args.seed)
    started = time.perf_counter()
    name = "detection_transfer" + ("_quick" if args.quick else "")
    previous = _previous(name, args) if args.merge else None
    if args.pretrained:
        run, pretrain = Path(args.pretrained), {"steps": args.pretrain_steps, "preset": "pixpro_r18_demo", "reused": True,
                                                "seconds": (previous or {}).get("pretrain", {}).get("seconds", 0.0)}
    else:
        run, pretrain = pretrain_pixpro(out, args.pretrain_steps)
    rows = [row for row in (previous or {}).get("rows", []) if row["model"] not in args.models.split(",")]
    for model in args.models.split(","):
        for label, spec in (("random init", "random"), (f"PixPro {args.pretrain_steps} steps", str(run))):
            row = finetune(spec, model, data, args)
            rows.append({"label": label, **row})
            print(f"{model} / {label}: box AP {percent(row['bbox']['AP'])}", flush=True)
    info = machine()
    payload = {"machine": info, "args": vars(args), "pretrain": pretrain, "rows": rows,
               "seconds": time.perf_counter() - started}
    write_results(name, payload, table(rows, args, pretrain, info))


def _previous(name: str, args: argparse.Namespace) -> dict | None:
    """The existing results file when its settings (other than the models) equal this invocation's."""
    import json

    from common import RESULTS

    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    same = {k: v for k, v in old["args"].items() if k not in ("models", "merge", "pretrained")} == {
        k: v for k, v in vars(args).items() if k not in ("models", "merge", "pretrained")}
    if not same:
        print(f"not merging {path}: measured with other settings", flush=True)
    return old if same else None


if __name__ == "__main__":
    main()
