"""CLI subcommands ``pixelssl inpaint train | fill | eval | serve | import`` (thin wrappers over the inpainting API)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pixelssl.errors import PixelSSLError


def _train(args: argparse.Namespace) -> int:
    from pixelssl.config import load_config
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import train_inpainting

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.resume:
        if args.config or args.data:
            raise PixelSSLError("--resume continues a run with its saved config; do not pass --config or --data")
        result = train_inpainting(resume=args.resume, overrides=overrides)
    else:
        result = train_inpainting(load_config(InpaintConfig, args.config, overrides))
    print(f"run: {result.run_dir}")
    print(f"{result.steps} steps, {result.images_per_second:.2f} img/s, generator "
          f"{result.generator_parameters / 1e6:.2f}M parameters")
    if result.held_out_l1:
        (s0, l0), (s1, l1) = result.held_out_l1[0], result.held_out_l1[-1]
        print(f"held-out hole L1: {l0:.4f} (step {s0}) -> {l1:.4f} (step {s1})")
    print(f"weights: {result.weights_path}")
    return 0


def _fill(args: argparse.Namespace) -> int:
    from pixelssl.inpaint.fill import fill_folder, fill_image, load_generator, resolve_strategy, save_png

    given = [a for a in (args.image, args.mask, args.images, args.masks) if a]
    folders = bool(args.images and args.masks)
    if len(given) != 2 or not (folders or (args.image and args.mask)):
        raise PixelSSLError("give --image and --mask (one image) or --images and --masks (folders), not both")
    resolve_strategy(args.strategy, 1, 1, args.working_size)  # a bad --working-size before loading the weights
    if folders:
        if args.flow is not None:
            raise PixelSSLError("--flow works with one --image only")
        generator = load_generator(args.weights, args.device)
        result = fill_folder(generator, args.images, args.masks, args.out, args.strategy, args.working_size)
        print(result.summary())
        return 0

    from pixelssl.data.decode import read_rgb
    from pixelssl.inpaint.masks import load_mask

    image = read_rgb(args.image)
    hole = load_mask(args.mask, tuple(image.shape[-2:]), args.image)
    generator = load_generator(args.weights, args.device)
    filled, flow = fill_image(generator, image, hole, return_flow=args.flow is not None, strategy=args.strategy,
                              working_size=args.working_size)
    print(f"filled: {save_png(filled, args.out)}")
    if args.flow is not None:
        if flow is None:
            print("flow: none (this generator has no contextual attention)")
        else:
            print(f"flow: {save_png(flow, args.flow)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pixelssl.data.datasets import ImageFolder
    from pixelssl.inpaint.evaluate import (
        evaluate_fillers,
        evaluation_set,
        format_table,
        generator_filler,
        opencv_filler,
    )
    from pixelssl.inpaint.fill import load_generator

    if args.size % 16:
        raise PixelSSLError(f"--size must be a multiple of 16 (got {args.size})")
    images, holes = evaluation_set(ImageFolder(args.data), args.num_images, args.size, args.masks, args.seed)
    fillers = {"deepfill": generator_filler(load_generator(args.weights, args.device))}
    if args.no_ca_weights:
        fillers["deepfill (no CA)"] = generator_filler(load_generator(args.no_ca_weights, args.device))
    fillers.update({"opencv telea": opencv_filler("telea"), "opencv ns": opencv_filler("ns")})
    results = evaluate_fillers(fillers, images, holes)
    print(f"{images.shape[0]} images at {args.size}px, {args.masks} holes, seed {args.seed}")
    print(format_table(results))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"images": images.shape[0], "size": args.size, "masks": args.masks,
                                   "seed": args.seed, "results": results}, indent=2))
        print(f"written: {out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from pixelssl.inpaint.serve import ServeLimits, serve
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("starlette", "uvicorn", "multipart", "python_multipart"):
            raise PixelSSLError(f"`pixelssl inpaint serve` needs the web extras ({exc.name} is missing): "
                                "pip install 'pixelssl[serve]' (in a clone: pip install -e '.[serve]')") from exc
        raise
    serve(args.weights, args.host, args.port, ServeLimits(args.max_upload_mib, args.max_side), args.device)
    return 0


def _import(args: argparse.Namespace) -> int:
    from pixelssl.inpaint.release_weights import import_release, write_release_generator

    imported = import_release(args.checkpoint)
    print(imported.report(write_release_generator(imported, args.out)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inpaint", help="contextual-attention image inpainting (DeepFill v1)",
                                   description="Train an inpainting model, fill holes, evaluate against baselines.")
    commands = parser.add_subparsers(dest="inpaint_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = commands.add_parser("train", help="train on an image folder (or the built-in synthetic scenes)",
                            description="Train DeepFill v1. Overrides are dotted keys, e.g. train.max_steps=1000; "
                                        "`--config inpaint_demo` trains a small model in minutes.")
    p.add_argument("--config", help="preset name (e.g. inpaint_demo) or YAML file")
    p.add_argument("--data", help="folder of training images (same as data.root=FOLDER)")
    p.add_argument("--resume", metavar="RUN", help="continue a run directory (or checkpoint file) exactly")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_train)

    p = commands.add_parser("fill", help="fill the holes of one image or of a folder of images", description=(
        "Fill the white pixels of --mask in --image, or of each image in --images with the mask of the same file "
        "stem in --masks. Any size works; large images are filled hole by hole on crops (--strategy)."))
    p.add_argument("--weights", required=True, help="generator.safetensors of a run (or a checkpoint .pt)")
    p.add_argument("--image", help="input image")
    p.add_argument("--mask", help="mask image of the same size: white = hole, black = keep")
    p.add_argument("--images", metavar="DIR", help="folder of input images (instead of --image)")
    p.add_argument("--masks", metavar="DIR", help="folder of masks, matched to the images by file stem")
    p.add_argument("--out", required=True, help="where to write the completed image (a folder with --images)")
    p.add_argument("--flow", help="also write the attention flow picture here (one image only)")
    p.add_argument("--strategy", default="auto", choices=("auto", "crop", "whole"),
                   help="crop: fill each hole on a crop around it, pasted back; whole: the whole image at once; "
                        "auto (default): crop when the longer side exceeds --working-size")
    p.add_argument("--working-size", type=int, default=512,
                   help="largest crop side the generator sees with --strategy crop (default %(default)s px)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.set_defaults(func=_fill)

    p = commands.add_parser("eval", help="score a model against OpenCV Telea / Navier-Stokes on seeded holes")
    p.add_argument("--weights", required=True, help="generator weights (with contextual attention)")
    p.add_argument("--no-ca-weights", help="the same generator trained without contextual attention (ablation)")
    p.add_argument("--data", required=True, help="folder of evaluation images")
    p.add_argument("--num-images", type=int, default=100, help="how many images (first N, sorted by path)")
    p.add_argument("--size", type=int, default=256, help="side of the centre crops (multiple of 16)")
    p.add_argument("--masks", default="rect", choices=("rect", "stroke", "mixed"), help="hole shapes")
    p.add_argument("--seed", type=int, default=0, help="seed of the holes")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--out", help="also write the results as JSON here")
    p.set_defaults(func=_eval)

    p = commands.add_parser("serve", help="a local web page: upload an image, paint the hole, fill, download",
                            description="Serve the inpainting page. The model is loaded once; fills run one at a time. "
                                        "Needs the web extras: pip install 'pixelssl[serve]'.")
    p.add_argument("--weights", required=True, help="generator.safetensors of a run (or a checkpoint .pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default %(default)s; 0 = any free port)")
    p.add_argument("--max-upload-mib", type=float, default=32.0, help="largest upload per file, MiB (default %(default)s)")
    p.add_argument("--max-side", type=int, default=4096,
                   help="largest accepted image side in px (default %(default)s); the page downscales bigger images")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.set_defaults(func=_serve)

    p = commands.add_parser("import", help="convert the authors' released TensorFlow weights (no TensorFlow needed)",
                            description="Read a DeepFill v1 release checkpoint (a folder with `checkpoint` and "
                                        "snap-*.index / .data-00000-of-00001, as published for Places2, CelebA-HQ, "
                                        "ImageNet) and write generator.safetensors for fill / eval / serve.")
    p.add_argument("checkpoint", metavar="DIR", help="the model folder (or a checkpoint prefix, or its .index file)")
    p.add_argument("--out", help="folder or .safetensors file (default: DIR_pixelssl/generator.safetensors)")
    p.set_defaults(func=_import)
