"""Image sources for pre-training and segmentation datasets for evaluation, read from folders.

Two small protocols, which ``data.synthetic.SyntheticScenes`` also implements:

- image source (pre-training): ``len(src)``, ``src.load(i) -> uint8 (3, H, W) RGB``, ``src.describe(i) -> str``;
  ``load`` raises ``UnreadableImage`` for a file that cannot be decoded, and ``load_with_fallback`` skips those.
- segmentation dataset (evaluation): ``len(ds)``, ``ds[i] -> (uint8 (3, H, W), int64 (H, W))``, ``num_classes``,
  ``ignore_index``, ``class_names`` and ``ds.name(i) -> str``.

Every image is decoded by ``data.decode`` (``read_rgb``, or ``read_encoded`` for the device's JPEG decoder).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pixelssl.data.decode import MAX_PIXELS, EncodedImage, UnreadableImage, read_encoded, read_rgb
from pixelssl.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class ImageSource(Protocol):
    """What pre-training reads images from (``ImageFolder``, ``SyntheticScenes``)."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> Tensor: ...

    def describe(self, index: int) -> str: ...


class SegmentationDataset(Protocol):
    """What evaluation reads labelled images from (``SegmentationFolder``, ``SyntheticScenes``)."""

    num_classes: int
    ignore_index: int
    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]: ...

    def name(self, index: int) -> str: ...


def is_image_file(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive) and is not hidden (e.g. macOS ``._x.jpg``)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan_images(root: Path) -> tuple[list[Path], list[Path]]:
    """All image files under ``root`` (recursive, following links without cycles), sorted; and the zero-byte ones."""
    found: list[Path] = []
    empty: list[Path] = []
    seen_dirs: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a symlink loop or a folder linked twice
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not is_image_file(name):
                continue
            path = Path(dirpath, name)
            try:
                size = path.stat().st_size
            except OSError:  # dangling link
                empty.append(path)
                continue
            (found if size > 0 else empty).append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix()), sorted(empty)


class ImageFolder:
    """Every image under a folder (recursive, sorted by relative path), as an image source for pre-training.

    Construction only lists files (no decoding), so it stays fast on 100k+ images; zero-byte files and dangling
    links are excluded with a warning. Unreadable files surface in ``load`` as ``UnreadableImage``.
    """

    def __init__(self, root: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> None:
        self.root = Path(root).expanduser()
        self.max_pixels = max_pixels
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"image folder {self.root} {what}")
        self.paths, skipped = _scan_images(self.root)
        if skipped:
            log.warning(
                "skipped %d empty or dangling image file(s) in %s, e.g. %s", len(skipped), self.root, skipped[0]
            )
        if not self.paths:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise DataError(f"no images found in {self.root} (searched recursively for {extensions})")

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Tensor:
        """Image ``index`` as uint8 (3, H, W) RGB."""
        return read_rgb(self.paths[index], self.max_pixels)

    def load_encoded(self, index: int) -> EncodedImage | Tensor:
        """Image ``index`` still encoded when it is a plain JPEG (for ``data.device_decode``), else decoded."""
        return read_encoded(self.paths[index], self.max_pixels)

    def describe(self, index: int) -> str:
        """The file path of image ``index``, for messages."""
        return str(self.paths[index])


def load_with_fallback(source: ImageSource, index: int, max_tries: int = 16,
                       read: Callable[[int], Any] | None = None) -> tuple[Any, list[str]]:
    """Load ``index``, or the next readable image after it (wrapping around); returns it and the paths that failed.

    One bad file must not stop a long run: the caller warns once per returned path and counts them. ``read``
    replaces ``source.load`` (e.g. ``ImageFolder.load_encoded``).
    """
    read = source.load if read is None else read
    failed: list[str] = []
    reasons: list[str] = []
    tries = max(1, min(max_tries, len(source)))
    for step in range(tries):
        try:
            return read((index + step) % len(source)), failed
        except UnreadableImage as err:
            failed.append(err.path)
            reasons.append(err.reason)
    raise DataError(
        f"{tries} consecutive images failed to load, starting at {failed[0]} ({reasons[0]}); is the dataset corrupt?"
    )


def _read_classes_json(path: Path) -> tuple[list[str], int | None]:
    """Class names and optional ignore_index from a ``{"classes": [...], "ignore_index": k}`` file."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    except RecursionError as err:  # nested deeper than Python's stack
        raise DataError(f"cannot read {path}: nested too deeply") from err
    if not isinstance(content, dict) or "classes" not in content:
        raise DataError(f'{path}: expected an object with a "classes" list')
    names = content["classes"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f'{path}: "classes" must be a non-empty list of strings')
    ignore = content.get("ignore_index")
    if ignore is not None and (not isinstance(ignore, int) or isinstance(ignore, bool)):
        raise DataError(f'{path}: "ignore_index" must be an integer (got {ignore!r})')
    return names, ignore


class SegmentationFolder:
    """Images with per-pixel class-index labels: ``root/images/NAME.<ext>`` + ``root/labels/NAME.png``.

    Labels are single-channel uint8 PNGs (mode L, or P whose raw indices are the classes). Class names and
    ``ignore_index`` come from ``classes.json`` in ``root`` or its parent (so ``camvid/train`` finds
    ``camvid/classes.json``); without one, ``num_classes`` is the argument or is inferred by scanning the labels
    once on first use. Pairs are checked at construction; sizes and label values lazily per item, or all at once
    with ``validate()``.
    """

    def __init__(
        self, root: str | os.PathLike, ignore_index: int | None = None, num_classes: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.root = Path(root).expanduser()
        self.max_pixels = max_pixels
        images_dir, labels_dir = self.root / "images", self.root / "labels"
        for folder in (self.root, images_dir, labels_dir):
            if not folder.is_dir():
                raise DataError(
                    f"segmentation dataset folder {folder} does not exist (expected root/images and root/labels)"
                )
        images = self._index(images_dir, is_image_file)
        labels = self._index(labels_dir, lambda name: not name.startswith(".") and name.lower().endswith(".png"))
        missing_label = sorted(set(images) - set(labels))
        missing_image = sorted(set(labels) - set(images))
        if missing_label:
            raise DataError(
                f"{len(missing_label)} image(s) in {images_dir} have no label PNG in {labels_dir}, "
                f"e.g. {images[missing_label[0]]}"
            )
        if missing_image:
            raise DataError(
                f"{len(missing_image)} label(s) in {labels_dir} have no image in {images_dir}, "
                f"e.g. {labels[missing_image[0]]}"
            )
        if not images:
            raise DataError(f"no images found in {images_dir} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        self.names = sorted(images)
        self.image_paths = [images[n] for n in self.names]
        self.label_paths = [labels[n] for n in self.names]

        candidates = (self.root / "classes.json", self.root.parent / "classes.json")
        classes_file = next((p for p in candidates if p.is_file()), None)
        names: list[str] | None = None
        file_ignore: int | None = None
        if classes_file is not None:
            names, file_ignore = _read_classes_json(classes_file)
            if num_classes is not None and num_classes != len(names):
                raise DataError(f"num_classes={num_classes} but {classes_file} lists {len(names)} classes")
        if ignore_index is not None and file_ignore is not None and ignore_index != file_ignore:
            raise DataError(f"ignore_index={ignore_index} but {classes_file} says ignore_index={file_ignore}")
        self.classes_file = classes_file
        if ignore_index is None:
            ignore_index = file_ignore if file_ignore is not None else 255
        self.ignore_index = ignore_index
        self._class_names = names
        self._num_classes = len(names) if names is not None else num_classes
        if self._num_classes is not None and self._num_classes < 1:
            raise DataError(f"num_classes must be >= 1 (got {self._num_classes}) for {self.root}")

    @staticmethod
    def _index(folder: Path, accept: Callable[[str], bool]) -> dict[str, Path]:
        """Files under ``folder`` keyed by relative path without extension; two files with one key is an error."""
        found: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if accept(name):
                    path = Path(dirpath, name)
                    key = path.relative_to(folder).with_suffix("").as_posix()
                    if key in found:
                        raise DataError(f"two files for sample {key!r} in {folder}: {found[key].name} and {name}")
                    found[key] = path
        return found

    @property
    def num_classes(self) -> int:
        """Number of classes: from classes.json or the argument, else max label value (ignoring void) + 1."""
        if self._num_classes is None:
            highest = -1
            for path in self.label_paths:
                values = np.unique(self._read_label(path))
                values = values[values != self.ignore_index]
                if values.size:
                    highest = max(highest, int(values.max()))
            if highest < 0:
                raise DataError(f"every label in {self.root / 'labels'} is ignore_index={self.ignore_index}")
            self._num_classes = highest + 1
        return self._num_classes

    @property
    def class_names(self) -> list[str]:
        """Class names from classes.json, else ``class0``, ``class1``, ..."""
        if self._class_names is None:
            return [f"class{i}" for i in range(self.num_classes)]
        return list(self._class_names)

    def __len__(self) -> int:
        return len(self.names)

    def name(self, index: int) -> str:
        """Sample name (image path relative to ``root/images`` without extension)."""
        return self.names[index]

    @staticmethod
    def _read_label(path: Path) -> np.ndarray:
        """Raw class indices of a label PNG, (H, W) uint8; palette colours are not applied."""
        try:
            with Image.open(path) as label:
                if label.mode not in ("L", "P"):
                    raise DataError(
                        f"label {path} has mode {label.mode}; expected a single-channel uint8 class-index PNG"
                    )
                return np.array(label, dtype=np.uint8)
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"cannot read label {path}: {type(err).__name__}: {err}") from err

    def _check(self, index: int, image_hw: tuple[int, int], label: np.ndarray) -> None:
        path = self.label_paths[index]
        if label.shape != image_hw:
            raise DataError(
                f"label {path} is {label.shape[1]}x{label.shape[0]} but its image is {image_hw[1]}x{image_hw[0]} (WxH)"
            )
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            values = np.unique(label[bad])
            shown = ", ".join(str(v) for v in values[:5]) + (", ..." if values.size > 5 else "")
            raise DataError(
                f"label {path} has values {shown} outside 0..{self.num_classes - 1} "
                f"(ignore_index={self.ignore_index})"
            )

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """Image uint8 (3, H, W) and label int64 (H, W), checked against each other."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index %= len(self)
        image = read_rgb(self.image_paths[index], self.max_pixels)
        label = self._read_label(self.label_paths[index])
        self._check(index, tuple(image.shape[1:]), label)
        return image, torch.from_numpy(label.astype(np.int64))

    def validate(self) -> None:
        """Decode every pair and check it; raise one ``DataError`` naming the first problem and counting the rest."""
        problems: list[str] = []
        for index in range(len(self)):
            try:
                self[index]
            except DataError as err:
                problems.append(str(err))
        if problems:
            more = f" (and {len(problems) - 1} more problem(s) in {self.root})" if len(problems) > 1 else ""
            raise DataError(problems[0] + more)

