"""report.figures: a run's figures on fixed images leave the model untouched; TensorBoard figures every N steps."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from pixelssl.config import PretrainConfig, load_config
from pixelssl.report.figures import Encoders, figure_images, run_figures


def test_figures_leave_the_model_untouched(runs):
    from pixelssl.report.sources import load_run

    run = load_run(runs["pixpro"])
    method = run.model
    method.train()
    method.backbone_k.eval()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    flags = [m.training for m in method.modules()]
    rng = torch.get_rng_state()
    figures = run_figures(Encoders.of(method, run.cfg), figure_images(run.cfg, 1))
    assert [f.kind for f in figures] == ["attention", "pca", "ppm", "matches_feature", "matches_coordinate",
                                         "sr_weights"]
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())  # BN statistics included
    assert [m.training for m in method.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)


def test_figure_images_are_fixed_held_out_scenes_or_the_first_folder_images(runs, tmp_path):
    cfg = load_config(PretrainConfig, str(runs["pixpro"] / "config.yaml"))
    first, again = figure_images(cfg, 2), figure_images(cfg, 2)
    assert [i.name for i in first] == ["synthetic:val:0", "synthetic:val:1"]
    assert all(torch.equal(a.image, b.image) and torch.equal(a.views[0].box, b.views[0].box)
               for a, b in zip(first, again))
    assert first[0].image.shape == (3, 256, 256) and first[0].views[0].image.shape == (3, 64, 64)
    folder = tmp_path / "images"
    folder.mkdir()
    for name, size in (("b.png", (40, 30)), ("a.png", (50, 60)), ("c.png", (20, 20))):
        Image.new("RGB", size, (10, 20, 30)).save(folder / name)
    cfg.data.root = str(folder)
    assert [Path(i.name).name for i in figure_images(cfg, 2)] == ["a.png", "b.png"]


def test_tensorboard_figures_every_n_steps(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["pixpro"] / "tensorboard"), size_guidance={"images": 0})  # figure_every=1
    events.Reload()
    tags = events.Tags()["images"]
    assert {"figures/attention/0", "figures/pca/0", "figures/ppm/0", "figures/matches_feature/0",
            "figures/sr_weights/0"} <= set(tags)
    image = events.Images("figures/attention/0")
    assert [e.step for e in image] == [1, 2]
    assert Image.open(io.BytesIO(image[0].encoded_image_string)).width > 0


def test_figures_during_training_leave_the_weights_unchanged(runs, tmp_path, make_run):
    from pixelssl.engine.checkpoint import load_checkpoint

    plain = make_run(tmp_path, "plain")  # the fixture's PixPro run without figures (drawn after steps 1 and 2)
    with_figures = load_checkpoint(runs["pixpro"] / "checkpoints" / "last.pt")["model"]
    without = load_checkpoint(plain / "checkpoints" / "last.pt")["model"]
    assert with_figures.keys() == without.keys()
    assert all(torch.equal(with_figures[k], without[k]) for k in without)
