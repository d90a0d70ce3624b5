"""The figure set of a run: a method's dense features on a fixed set of images and view pairs, drawn with
``report.attention``. Shared by the HTML report and the periodic TensorBoard figures (``TensorBoardFigures``, the
drawer the pre-training command hands to ``engine.logger.MetricsWriter``).

Images: held-out synthetic scenes (split ``val``, the run's generator settings) for runs on the built-in scenes,
else the first images of the run's ``data.root`` (sorted by path); each squared (shorter side resized, centre crop).
View pairs: ``data.views.TwoViewSampler`` with the run's crop settings, overlap required, one fixed seed per image,
no photometric augmentation (the geometry is what matters here).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from pixelssl.data.augment import normalize
from pixelssl.data.views import TwoViewSampler, View
from pixelssl.errors import DataError
from pixelssl.report import attention

log = logging.getLogger(__name__)

IMAGE_SIDE = 256  # the probe's resolution: a 128 px scene read at 256 px gives an 8x8 C5 map
QUERY_POINTS = ((0.3, 0.3), (0.7, 0.5), (0.4, 0.78))  # (x, y) fractions of the image
VIEW_SEED = 1234


@dataclass
class FigureImage:
    """One fixed image of the figure set and its fixed pair of views."""

    name: str
    image: Tensor  # (3, IMAGE_SIDE, IMAGE_SIDE) uint8
    views: tuple[View, View]


@dataclass
class Encoders:
    """What the figures run: the online backbone, the key (momentum) backbone, and PixPro's projector for PPM."""

    backbone: nn.Module
    key_backbone: nn.Module
    projector: nn.Module | None = None  # PixPro only
    gamma: float = 2.0
    sr_power: float = 2.0
    sr_spatial: bool = False

    @classmethod
    def of(cls, method: nn.Module, cfg: Any | None = None) -> Encoders:
        """The parts of a pre-training method (or a bare backbone) the figures need."""
        backbone = getattr(method, "backbone", method)
        key = getattr(method, "backbone_k", backbone)
        is_pixpro = cfg is not None and cfg.method.name == "pixpro"
        projector = getattr(method, "projector", None) if is_pixpro else None
        if cfg is None:
            return cls(backbone, key, projector)
        method_cfg = cfg.method  # each method has its own keys: PixPro's gamma, PixCon-SR's weights
        return cls(backbone, key, projector, float(getattr(method_cfg, "ppm_gamma", 2.0)),
                   float(getattr(method_cfg, "sr_power", 2.0)), getattr(method_cfg, "sr_weights", "") == "spatial")


@dataclass
class RunFigure:
    kind: str  # a key of KINDS
    image: str  # FigureImage.name
    rgb: np.ndarray  # (H, W, 3) uint8


# kind -> (title, caption); the report shows them in this order.
KINDS = {
    "attention": ("self-attention (C5 cosine)",
                  "Cosine similarity of each numbered query cell's backbone C5 feature to every cell of the same image "
                  "(PixCon's figure), upsampled; fixed 0..1 scale, so features that find everything alike look "
                  "uniformly bright."),
    "pca": ("PCA of C5 features", "The first three principal components of the image's C5 cells as RGB (one block "
            "per cell): regions the features group together share a colour."),
    "ppm": ("PixPro PPM weights", "The propagation weights max(cos, 0)^gamma of each query cell over the image, on "
            "the projector output PPM sees (PixPro runs only)."),
    "matches_feature": ("matches: feature argmax",
                        "Each cell of view 1 joined to the view-2 cell of highest C5 cosine (online backbone on view "
                        "1, momentum backbone on view 2, as DenseCL / PixCon-Sim match), coloured by that cosine. "
                        "Solid: the cell lies in the views' intersection (dashed boxes); dotted: it does not."),
    "matches_coordinate": ("matches: geometric nearest",
                           "Each cell of view 1 joined to the geometrically nearest view-2 cell (PixCon-Coord's "
                           "positives; PixPro / PixContrast use the cells within 0.7 bin diagonals), coloured by the "
                           "pair's C5 cosine; solid inside the intersection, dotted outside."),
    "sr_weights": ("PixCon-SR weights", "The weight PixCon-SR gives each view-1 query cell: 1 inside the views' "
                   "intersection, else ((s - min s) / (max_out s - min s))^p of its best-match cosine s; for other "
                   "methods, what PixCon-SR would weight with these features."),
}


def _square(image: Tensor, side: int = IMAGE_SIDE) -> Tensor:
    """Shorter side resized to ``side`` (antialiased bilinear), then the centre ``side`` x ``side`` crop."""
    return TF.center_crop(TF.resize(image, [side], antialias=True), [side, side])


def figure_images(cfg: Any, count: int = 2, seed: int = VIEW_SEED) -> list[FigureImage]:
    """The fixed images of a run's figure set and their view pairs (same for every call with the same config)."""
    data = cfg.data
    if data.root:
        from pixelssl.data.datasets import ImageFolder

        source: Any = ImageFolder(data.root)
    else:
        from pixelssl.data.synthetic import SyntheticScenes

        syn = data.synthetic
        source = SyntheticScenes(max(count, 1), size=syn.size, num_classes=syn.num_classes, seed=syn.seed, split="val")
    sampler = TwoViewSampler(data.image_size, tuple(data.crop_scale), tuple(data.crop_ratio), data.flip_prob,
                             require_overlap=True, max_resample=data.max_resample)
    out = []
    for index in range(min(count, len(source))):
        try:
            image = source.load(index)
        except DataError as exc:
            log.warning("report: skipping %s: %s", source.describe(index), exc)
            continue
        views = sampler(image, torch.Generator().manual_seed(seed + index))
        out.append(FigureImage(source.describe(index), _square(image), views))
    return out


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` inside the block (BatchNorm uses running statistics, nothing is updated); every
    submodule's train/eval flag is restored afterwards, so a training loop can call this between steps."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _features(backbone: nn.Module, image: Tensor) -> Tensor:
    """The C5 map (C, H, W) of one uint8 image, on the backbone's device, returned on the CPU."""
    device = next(backbone.parameters()).device
    return backbone(normalize(image)[None].to(device))[0].float().cpu()


@torch.no_grad()
def run_figures(encoders: Encoders, images: list[FigureImage], with_views: bool = True) -> list[RunFigure]:
    """Every figure kind that applies, for every image, in ``KINDS`` order per image."""
    out: list[RunFigure] = []
    modules = nn.ModuleList([encoders.backbone, encoders.key_backbone]
                            + ([encoders.projector] if encoders.projector is not None else []))
    with evaluation_mode(modules):
        for item in images:
            feats = _features(encoders.backbone, item.image)
            out.append(RunFigure("attention", item.name, attention.attention_figure(item.image, feats, QUERY_POINTS)))
            out.append(RunFigure("pca", item.name, attention.pca_figure(item.image, feats)))
            if encoders.projector is not None:
                device = next(encoders.projector.parameters()).device
                projected = encoders.projector(feats[None].to(device))[0].float().cpu()
                out.append(RunFigure("ppm", item.name, attention.ppm_figure(item.image, projected, QUERY_POINTS,
                                                                            encoders.gamma)))
            if with_views:
                out.extend(_view_figures(encoders, item))
    return out


def _view_figures(encoders: Encoders, item: FigureImage) -> list[RunFigure]:
    v1, v2 = item.views
    f1, f2 = _features(encoders.backbone, v1.image), _features(encoders.key_backbone, v2.image)
    geometry = (v1.box, v1.flipped, v2.box, v2.flipped)
    out = []
    feature_matches = attention.view_matches(f1, f2, *geometry, by="feature")
    for by, matches in (("feature", feature_matches),
                        ("coordinate", attention.view_matches(f1, f2, *geometry, by="coordinate"))):
        out.append(RunFigure(f"matches_{by}", item.name,
                             attention.matches_figure(v1.image, v2.image, matches, *geometry)))
    weights = attention.sr_weight_map(feature_matches, encoders.sr_power, encoders.sr_spatial)
    out.append(RunFigure("sr_weights", item.name,
                         attention.sr_weights_figure(v1.image, weights, v1.box, v1.flipped, v2.box)))
    return out


class TensorBoardFigures:
    """The periodic TensorBoard figures of a pre-training run (``train.figure_every``): every figure kind of the
    run's first fixed image, tagged ``figures/<kind>/<image index>``. An ``engine.logger.FigureDrawer``; the image is
    prepared on first use, from the run's config."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self._images: list[FigureImage] | None = None

    def __call__(self, method: nn.Module, cfg: Any) -> Iterable[tuple[str, np.ndarray]]:
        if self._images is None:
            self._images = figure_images(cfg, count=self.count)
        for index, image in enumerate(self._images):
            for fig in run_figures(Encoders.of(method, cfg), [image]):
                yield f"figures/{fig.kind}/{index}", fig.rgb
