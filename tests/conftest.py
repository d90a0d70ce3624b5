"""Shared fixtures. Tests are CPU-only, deterministic and fast unless marked ``slow``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CAMVID = Path(os.environ.get("PIXELSSL_CAMVID", REPO.parent / "shared" / "data" / "camvid"))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Each test starts from the same torch RNG state and a small thread count (CI has 2 cores)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny ops: on a small shared CPU, OpenMP threads contend and run them slower
    (the thread count is restored by ``_deterministic_torch``)."""
    torch.set_num_threads(1)


@pytest.fixture
def camvid_root() -> Path:
    """Path of the CamVid copy used for integration tests; the test is skipped when it is absent."""
    if not (CAMVID / "train" / "images").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (set PIXELSSL_CAMVID)")
    return CAMVID


@pytest.fixture(scope="session")
def fpn_run(tmp_path_factory) -> Path:
    """A finished 2-step pixpro_fpn run (ResNet-18): checkpoints, backbone.safetensors and fpn.safetensors; trained
    once for the export tests and the ``pixelssl export`` command's tests."""
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.train.loop import pretrain

    root = tmp_path_factory.mktemp("export")
    cfg = load_config(PretrainConfig, "pixpro_fpn_r18_demo", [
        "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=64", "data.synthetic.num_images=4",
        "data.synthetic.size=64", "data.num_workers=0", "train.batch_size=2", "train.max_steps=2",
        "train.warmup_steps=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32",
        "train.threads=1", f"run.output_dir={root}", "run.name=fpn",
    ])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return pretrain(cfg).run_dir


@pytest.fixture
def fill_folders(tmp_path):
    """``(images, masks, out)`` for folder filling: a.png and b.jpg with masks, c.png without one, d.png with a mask
    of the transposed size, e.png with a mask without hole pixels, and a text file."""
    import numpy as np
    from PIL import Image

    def mask(height, width, box=(8, 10, 12, 15)):
        array = np.zeros((height, width), np.uint8)
        array[box[0]:box[0] + box[2], box[1]:box[1] + box[3]] = 255
        return array

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    picture = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    Image.fromarray(picture(29, 37)).save(images / "a.png")
    Image.fromarray(mask(29, 37)).save(masks / "a.png")
    Image.fromarray(picture(32, 40)).save(images / "b.jpg", quality=95)
    Image.fromarray(mask(32, 40)).save(masks / "b.png")
    Image.fromarray(picture(24, 24)).save(images / "c.png")  # no mask
    Image.fromarray(picture(24, 30)).save(images / "d.png")
    Image.fromarray(mask(30, 24)).save(masks / "d.png")  # width and height swapped
    Image.fromarray(picture(24, 24)).save(images / "e.png")
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(masks / "e.jpg")  # no hole pixels
    (images / "notes.txt").write_text("not an image")
    return images, masks, tmp_path / "out"


@pytest.fixture
def fake_coco():
    """``fake_coco(num_images, per_image=2)``: a minimal COCO dict (8 px images, ids from 100, one category) for
    the subset tests of the data package and of ``pixelssl data``."""

    def make(num_images: int, per_image: int = 2) -> dict:
        images = [{"id": 100 + k, "file_name": f"{k}.png", "width": 8, "height": 8} for k in range(num_images)]
        anns = [{"id": 1 + k * per_image + j, "image_id": 100 + k, "category_id": 1, "bbox": [0, 0, 2, 2]}
                for k in range(num_images) for j in range(per_image)]
        return {"info": {"description": "x"}, "licenses": [], "categories": [{"id": 1, "name": "a"}],
                "images": images, "annotations": anns}

    return make


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> Path:
    """The synthetic scenes as COCO for the detection tests: 4 train and 2 val images of 64 px, 3 classes."""
    from pixelssl.data.synthetic_coco import export_synthetic_coco

    root = tmp_path_factory.mktemp("det")
    export_synthetic_coco(root, train_images=4, val_images=2, size=64, num_classes=3, seed=1)
    return root


@pytest.fixture
def fcos_fpn_state():
    """``fcos_fpn_state(width=32, seed=7)``: random tensors under torchvision FCOS's ``backbone.fpn`` names for a
    ResNet-18 (what FPN pre-training writes)."""
    from pixelssl.evaluate.detection import DetectionConfig
    from pixelssl.evaluate.detection_models import build_detector
    from pixelssl.models.backbones import build_backbone

    def make(width: int = 32, seed: int = 7) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        donor = build_detector(build_backbone("resnet18"), 4, DetectionConfig(model="fcos", min_size=64, max_size=64),
                               fpn_channels=width)
        return {k: torch.randn_like(v) for k, v in donor.backbone.fpn.state_dict().items()}

    return make


REPORT_RUN = [
    "model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16",
    "data.image_size=64", "data.synthetic.num_images=8", "data.synthetic.size=64", "data.num_workers=0",
    "train.batch_size=4", "train.optimizer=sgd", "train.base_lr=0.1", "train.warmup_steps=1", "train.max_steps=2",
    "train.log_every=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32",
]


def _tiny_run(root: Path, name: str, *extra: str) -> Path:
    """A finished two-step run directory (metrics, checkpoint, backbone export), drawn by the report's figures."""
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.report.figures import TensorBoardFigures
    from pixelssl.train.loop import pretrain

    cfg = load_config(PretrainConfig, overrides=[*REPORT_RUN, f"run.output_dir={root}", f"run.name={name}", *extra])
    return pretrain(cfg, figures=TensorBoardFigures()).run_dir


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny real runs for the report tests and ``pixelssl report`` (trained once per session: two steps each on
    64 px scenes): PixPro, which also writes the periodic TensorBoard figures, and PixCon-SR."""
    root = tmp_path_factory.mktemp("runs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return {"pixpro": _tiny_run(root, "pixpro", "train.tensorboard=true", "train.figure_every=1"),
                "pixcon_sr": _tiny_run(root, "pixcon_sr", "method.name=pixcon_sr", "method.queue_size=8")}


@pytest.fixture
def make_run():
    """``make_run(root, name, *overrides)``: train another tiny run as ``runs`` does."""
    return _tiny_run


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A small untrained inpainting generator (cnum 8) saved as a weights file, once per module."""
    from pixelssl.config import load_config
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import build_generator, save_generator

    cfg = load_config(InpaintConfig, overrides=["model.cnum=8"])
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "generator.safetensors"
    save_generator(build_generator(cfg.model), cfg.model, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The synthetic scenes exported as a COCO dataset: 5 train / 2 val images of 64 px, 4 classes, once per module."""
    from pixelssl.data.synthetic_coco import export_synthetic_coco

    root = tmp_path_factory.mktemp("coco")
    export_synthetic_coco(root, train_images=5, val_images=2, size=64, num_classes=4, seed=3)
    return root


@pytest.fixture
def load_script(monkeypatch):
    """Import a script that is not part of the package (a benchmark, an example) as a module, by path. Each load
    imports its sibling ``common`` afresh: the benchmarks' ``common`` reads PIXELSSL_BENCH_RESULTS when imported."""
    import importlib.util

    def load(path: Path):
        monkeypatch.delitem(sys.modules, "common", raising=False)
        spec = importlib.util.spec_from_file_location(f"script_{path.parent.name}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
