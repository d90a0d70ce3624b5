"""The train / val splits that the evaluation protocols read: the built-in synthetic scenes or a user's folders.

``SyntheticEvalConfig`` is the ``synthetic.*`` section of the probe and fine-tuning commands (``SyntheticEvalSection``
holds it, so that its keys are checked and named as ``synthetic.<key>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelssl.config import opt, sub, to_dict
from pixelssl.errors import DataError, PixelSSLError


@dataclass
class SyntheticEvalConfig:
    train_images: int = opt(500, "scenes in the synthetic training split", ge=1)
    val_images: int = opt(200, "scenes in the synthetic validation split (never shared with training)", ge=1)
    size: int = opt(128, "side of each synthetic scene in pixels", ge=32)
    num_classes: int = opt(6, "object classes (labels 0..num_classes, 0 = background)", ge=1, le=12)
    seed: int = opt(0, "seed of the scene generator")


@dataclass
class SyntheticEvalSection:
    """The evaluation commands' ``synthetic.*`` overrides, loaded on their own (messages name the full key)."""

    synthetic: SyntheticEvalConfig = sub(SyntheticEvalConfig, "built-in synthetic scenes (--data synthetic)")


def segmentation_data(data: str, val: str | None, synthetic: SyntheticEvalConfig) -> tuple[Any, Any, dict[str, Any]]:
    """(train set, val set, description) for ``synthetic``, a folder with train/ and val/, or a folder + ``val``."""
    if data == "synthetic":
        from pixelssl.data.synthetic import SyntheticScenes

        if val:
            raise PixelSSLError("--val cannot be combined with --data synthetic (it has its own val split)")
        common = dict(size=synthetic.size, num_classes=synthetic.num_classes, seed=synthetic.seed)
        return (SyntheticScenes(synthetic.train_images, split="train", **common),
                SyntheticScenes(synthetic.val_images, split="val", **common),
                {"train": "synthetic:train", "val": "synthetic:val", "synthetic": to_dict(synthetic)})
    from pixelssl.data.datasets import SegmentationFolder

    train_root, val_root = _split_roots(Path(data).expanduser(), val)
    train_ds, val_ds = SegmentationFolder(train_root), SegmentationFolder(val_root)
    return train_ds, val_ds, {"train": str(train_root.resolve()), "val": str(val_root.resolve())}


def _split_roots(root: Path, val: str | None) -> tuple[Path, Path]:
    """Train and val folders: ``root`` and ``--val``, or ``root/train`` and ``root/val``."""
    if not root.is_dir():
        raise DataError(f"data folder {root} {'is not a folder' if root.exists() else 'does not exist'}")
    if val:
        return root, Path(val).expanduser()
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root / "train", root / "val"
    raise DataError(f"{root} has no train/ and val/ sub-folders; pass --val PATH for the validation set")


def classification_data(data: str, val: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """(train set, val set, description) in the ImageFolder layout (val uses the training class list)."""
    from pixelssl.evaluate.classification import ImageFolderDataset

    if data == "synthetic":
        raise PixelSSLError("probe-cls needs an ImageFolder-layout folder (root/<class>/<image>), not synthetic")
    train_root, val_root = _split_roots(Path(data).expanduser(), val)
    train_ds = ImageFolderDataset(train_root)
    return (train_ds, ImageFolderDataset(val_root, classes=train_ds.classes),
            {"train": str(train_root.resolve()), "val": str(val_root.resolve())})
