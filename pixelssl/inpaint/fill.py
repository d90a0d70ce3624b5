"""Filling holes with a trained generator: any image size, user masks, one image or a folder of them.

Strategies (``fill_image(..., strategy=...)``, ``pixelssl inpaint fill --strategy``):

* ``whole``: the generator sees the whole image (padded to a multiple of 8, cropped back);
* ``crop``: each hole (an 8-connected component of the mask; holes whose crops would overlap are merged into the
  bounding box of their union) is filled on a crop around it, the hole's box plus a margin of half its longer side
  (at least ``hole_regions.MIN_MARGIN`` px), scaled down to at most ``working_size`` px per side when larger; the
  result is scaled back and pasted into the untouched original inside the hole only. Cost depends on the holes, not
  the photo: a 256 px hole in a 4096 x 3072 photo is one 512 x 512 fill;
* ``auto`` (default): ``crop`` when the image's longer side exceeds ``working_size``, else ``whole``.

Known pixels are always returned exactly as they came in. With ``crop``, the flow picture is white (no offset)
outside the crops.

Example::

    generator = load_generator("runs/inpaint_demo/generator.safetensors")
    filled, flow = fill_image(generator, image_uint8, hole_bool, return_flow=True)
    report = fill_folder(generator, "photos/", "masks/", "filled/")  # masks matched by file stem
    print(report.summary())  # filled 12, skipped 1 (1 without a mask)

Reading a generator's weights file is ``generator_file`` (``load_generator``, re-exported here); where the crops of
strategy ``crop`` go is ``hole_regions``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from pixelssl.data.datasets import is_image_file
from pixelssl.data.decode import UnreadableImage, read_rgb
from pixelssl.engine.logger import Progress
from pixelssl.errors import DataError, PixelSSLError
from pixelssl.inpaint.generator_file import load_generator as load_generator  # re-exported: the CLI and server use it
from pixelssl.inpaint.hole_regions import MAX_HOLES as MAX_HOLES  # re-exported: the tests import it from here
from pixelssl.inpaint.hole_regions import Region as Region  # re-exported: the tests import it from here
from pixelssl.inpaint.hole_regions import fill_regions
from pixelssl.inpaint.images import to_signed, to_unit
from pixelssl.inpaint.masks import load_mask
from pixelssl.inpaint.networks import InpaintGenerator
from pixelssl.io import atomic_write

log = logging.getLogger(__name__)

GRID = 8  # two stride-2 convs, then contextual attention's rate 2
STRATEGIES = ("auto", "crop", "whole")
WORKING_SIZE = 512  # longest side of the crops the generator sees with strategy crop (release: trained at 256 px)
PNG_COMPRESS_LEVEL = 1  # zlib level of written PNGs: a 4096 x 3072 result in 1.5 s instead of 4.2 s (PIL's 6)


def pad_to_multiple(x: Tensor, multiple: int = GRID) -> Tensor:
    """Pad (B, C, H, W) at the bottom/right to multiples of ``multiple``: mirrored where the image is big enough."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@torch.no_grad()
def fill_images(generator: InpaintGenerator, images: Tensor, holes: Tensor,
                return_flow: bool = False) -> tuple[Tensor, Tensor | None]:
    """Complete uint8 (B, 3, H, W) images whose bool (B, 1, H, W) holes are True: uint8 results (known pixels kept)
    and, when asked, the attention flow pictures as uint8 (B, 3, H, W)."""
    device = next(generator.parameters()).device
    height, width = images.shape[-2:]
    real = pad_to_multiple(to_signed(images).to(device))
    mask = pad_to_multiple(holes.float().to(device))  # the mirrored border mirrors the hole too
    out = generator(real.contiguous(memory_format=torch.channels_last), mask, return_flow=return_flow)
    completed = out.refined * mask + real * (1 - mask)
    result = (to_unit(completed[..., :height, :width]) * 255).round().to(torch.uint8).cpu()
    flow = None
    if out.flow is not None:
        flow = F.interpolate(out.flow.float(), size=real.shape[-2:], mode="nearest")[..., :height, :width]
        flow = (flow * 255).round().clamp(0, 255).to(torch.uint8).cpu()
    return result, flow


def resolve_strategy(strategy: str, height: int, width: int, working_size: int = WORKING_SIZE) -> str:
    """``crop`` or ``whole`` for an image of that size: ``auto`` is crop when the longer side exceeds working_size."""
    if strategy not in STRATEGIES:
        raise PixelSSLError(f"unknown fill strategy '{strategy}' ({' | '.join(STRATEGIES)})")
    if working_size < GRID:
        raise PixelSSLError(f"the working size must be at least {GRID} px (got {working_size})")
    if strategy == "auto":
        return "crop" if max(height, width) > working_size else "whole"
    return strategy


def _fill_crop(generator: InpaintGenerator, image: Tensor, hole: Tensor, working_size: int,
               return_flow: bool) -> tuple[Tensor, Tensor | None]:
    """Fill one crop (uint8 (3, h, w), bool (h, w)), scaled to at most working_size per side and back."""
    height, width = hole.shape
    scale = working_size / max(height, width)
    if scale >= 1:
        filled, flow = fill_images(generator, image.unsqueeze(0), hole.view(1, 1, height, width), return_flow)
        return filled[0], None if flow is None else flow[0]
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    small = TF.resize(image, size, antialias=True)
    # A small cell is hole when any of its pixels is: scaled back, the filled cells cover the whole hole.
    small_hole = F.interpolate(hole.view(1, 1, height, width).float(), size=size, mode="area") > 0
    filled, flow = fill_images(generator, small.unsqueeze(0), small_hole, return_flow)
    filled = TF.resize(filled[0], [height, width], antialias=False)  # bilinear
    if flow is not None:
        flow = F.interpolate(flow.float(), size=(height, width), mode="nearest")[0].to(torch.uint8)
    return filled, flow


def fill_by_crops(generator: InpaintGenerator, image: Tensor, hole: Tensor, working_size: int = WORKING_SIZE,
                  return_flow: bool = False) -> tuple[Tensor, Tensor | None]:
    """Strategy ``crop`` (module docstring): uint8 (3, H, W) result, and a flow picture white outside the crops."""
    result = image.clone()
    flow = torch.full_like(image, 255) if return_flow else None  # white = offset 0, as the flow colouring
    has_flow = False
    for region in fill_regions(hole):
        crop_hole = region.of(hole)
        filled, crop_flow = _fill_crop(generator, region.of(image), crop_hole, working_size, return_flow)
        target = region.of(result)
        target.copy_(torch.where(crop_hole, filled, target))  # only the hole's pixels change
        if crop_flow is not None:
            region.of(flow).copy_(crop_flow)
            has_flow = True
    return result, flow if has_flow else None


def fill_image(generator: InpaintGenerator, image: Tensor, hole: Tensor, return_flow: bool = False,
               strategy: str = "auto", working_size: int = WORKING_SIZE) -> tuple[Tensor, Tensor | None]:
    """One uint8 (3, H, W) image and its bool (H, W) hole -> uint8 (3, H, W) result (and flow picture or None).

    ``strategy`` is auto | crop | whole (module docstring); the known pixels come back bit for bit.
    """
    if hole.shape != image.shape[-2:]:
        raise PixelSSLError(f"hole {tuple(hole.shape)} and image {tuple(image.shape[-2:])} sizes differ")
    if not bool(hole.any()):
        raise PixelSSLError("the mask has no hole pixels; nothing to fill")
    if bool(hole.all()):
        raise PixelSSLError("the mask covers the whole image; nothing is left to fill from")
    if resolve_strategy(strategy, *hole.shape, working_size) == "crop":
        return fill_by_crops(generator, image, hole, working_size, return_flow)
    result, flow = fill_images(generator, image.unsqueeze(0), hole.view(1, 1, *hole.shape), return_flow)
    return result[0], None if flow is None else flow[0]


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write a uint8 (3, H, W) tensor as an image file (format from the suffix), creating the folder.

    Atomic: written to a hidden temporary file next to ``path``, then renamed, so an interrupted or failed write
    never leaves a partial file under the final name.
    """
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise PixelSSLError(f"cannot write '{path}': unknown image format '{path.suffix}' (use .png)")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"compress_level": PNG_COMPRESS_LEVEL} if image_format == "PNG" else {}
    picture = Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy()))
    try:
        return atomic_write(path, lambda handle: picture.save(handle, format=image_format, **options))
    except (ValueError, OSError) as exc:
        raise PixelSSLError(f"cannot write '{path}': {exc}") from exc


# ------------------------------------------------------------------------------------------------ batch mode
SKIP_KINDS = {"no_mask": "without a mask", "several_masks": "with several masks", "size": "with a mask of another size",
              "bad_mask": "with an unusable mask", "bad_image": "unreadable", "same_name": "with a duplicate name"}


@dataclass
class FolderFillResult:
    """What ``fill_folder`` did: the files written, and each skipped image with its kind and reason."""

    filled: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (image file name, kind, reason)

    def summary(self) -> str:
        """``filled N, skipped M (k without a mask, ...)``."""
        text = f"filled {len(self.filled)}, skipped {len(self.skipped)}"
        if self.skipped:
            counts = Counter(kind for _, kind, _ in self.skipped)
            text += " (" + ", ".join(f"{n} {SKIP_KINDS[k]}" for k, n in counts.items()) + ")"
        return text


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p.name))


def fill_folder(generator: InpaintGenerator, images: str | Path, masks: str | Path, out: str | Path,
                strategy: str = "auto", working_size: int = WORKING_SIZE, progress: bool = True) -> FolderFillResult:
    """Fill every image of the folder ``images`` with the mask of the same file stem in ``masks``; write PNGs.

    ``out/<stem>.png`` holds each result (written atomically). An image without a mask (or with several), with a
    mask of another size, an unusable mask (unreadable, no hole, all hole) or that cannot be read is named in a
    warning and skipped; the result counts them (``summary()``). Folders are not searched recursively.
    """
    images, masks, out = Path(images), Path(masks), Path(out)
    for what, folder in (("images", images), ("masks", masks)):
        if not folder.is_dir():
            raise PixelSSLError(f"{what} folder '{folder}' does not exist")
    if out.resolve() in (images.resolve(), masks.resolve()):
        raise PixelSSLError(f"the output folder '{out}' must differ from the images and masks folders")
    resolve_strategy(strategy, 1, 1, working_size)  # refuse a bad strategy before any work
    image_files = _image_files(images)
    if not image_files:
        raise PixelSSLError(f"no images found in '{images}'")
    mask_files: dict[str, list[Path]] = {}
    for path in _image_files(masks):
        mask_files.setdefault(path.stem, []).append(path)

    result = FolderFillResult()
    written: set[str] = set()

    def skip(path: Path, kind: str, reason: str) -> None:
        log.warning("skipped %s: %s", path.name, reason)
        result.skipped.append((path.name, kind, reason))

    bar = Progress(len(image_files), 0, progress, "inpaint fill")
    try:
        for done, path in enumerate(image_files, start=1):
            candidates = mask_files.get(path.stem, [])
            if path.stem in written:
                skip(path, "same_name", f"another image named '{path.stem}.*' was already written to {out}")
            elif not candidates:
                skip(path, "no_mask", f"no mask named '{path.stem}.*' in {masks}")
            elif len(candidates) > 1:
                skip(path, "several_masks", f"several masks named '{path.stem}.*' in {masks}: "
                                            + ", ".join(p.name for p in candidates))
            else:
                problem = _fill_one(generator, path, candidates[0], out / f"{path.stem}.png", strategy, working_size)
                if isinstance(problem, Path):
                    result.filled.append(problem)
                    written.add(path.stem)
                else:
                    skip(path, *problem)
            bar.update(done, path.name)
    finally:
        bar.close()
    return result


def _fill_one(generator: InpaintGenerator, path: Path, mask_path: Path, target: Path, strategy: str,
              working_size: int) -> Path | tuple[str, str]:
    """One pair of ``fill_folder``: read, check, fill, write. Returns the written file or (skip kind, reason)."""
    try:
        image = read_rgb(path)
    except UnreadableImage as exc:
        return "bad_image", f"cannot read the image: {exc.reason}"
    height, width = image.shape[-2:]
    try:
        with Image.open(mask_path) as mask_image:
            mask_size = mask_image.size
    except Exception as exc:  # PIL raises many types on data that is not an image
        return "bad_mask", f"cannot read mask '{mask_path.name}': {str(exc).splitlines()[0] if str(exc) else exc!r}"
    if mask_size != (width, height):
        return "size", (f"mask '{mask_path.name}' is {mask_size[0]}x{mask_size[1]} but the image is {width}x{height} "
                        "(width x height)")
    try:
        hole = load_mask(mask_path, (height, width), path, name=mask_path.name)
    except DataError as exc:
        return "bad_mask", str(exc)
    filled, _ = fill_image(generator, image, hole, strategy=strategy, working_size=working_size)
    return save_png(filled, target)
