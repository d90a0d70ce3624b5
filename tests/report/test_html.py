"""report.html from tiny real runs: every image embedded and decodable, expected sections, several runs side by
side, missing or corrupt pieces reported in place, the CLI, and the periodic TensorBoard figures."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from pixelssl.cli import main
from pixelssl.config import ConfigError, PretrainConfig, load_config
from pixelssl.report.figures import Encoders, figure_images, run_figures
from pixelssl.report.html import write_report


class Page(HTMLParser):
    """The parts of a report a test checks: images (src, alt), section headings, notes, all text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.headings: dict[str, list[str]] = {"h2": [], "h4": []}
        self.notes: list[str] = []
        self.links: list[str] = []
        self._open: str | None = None
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag in self.headings or (tag == "p" and attrs.get("class") == "note"):
            self._open = tag
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None

    def handle_data(self, data):
        self.text.append(data)
        if self._open in self.headings:
            self.headings[self._open].append(data)
        elif self._open == "p":
            self.notes.append(data)


def decode_images(page: Page) -> list[Image.Image]:
    out = []
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix), img.get("alt")
        data = base64.b64decode(img["src"][len(prefix):], validate=True)
        assert data, img.get("alt")
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.format == "PNG" and image.width > 0 and image.height > 0
        out.append(image)
    return out


def test_single_run_report_embeds_every_figure(runs, tmp_path):
    run = runs["pixpro"]
    (run / "eval" / "probe").mkdir(parents=True, exist_ok=True)
    (run / "eval" / "probe" / "eval.json").write_text(json.dumps({"kind": "probe", "metrics": {"miou": 0.4321,
                                                                                               "pixel_acc": 0.8}}))
    page = Page(write_report([run], tmp_path / "report.html", images=1).read_text())
    assert page.headings["h2"] == ["Runs", "Training curves", "Evaluation", "Figures", "Configuration"]
    decode_images(page)
    alts = [img["alt"] for img in page.images]
    assert alts[:2] == ["training curves", "loss terms"]
    for title in ("self-attention (C5 cosine)", "PCA of C5 features", "PixPro PPM weights", "matches: feature argmax",
                  "matches: geometric nearest", "PixCon-SR weights"):
        assert title in page.headings["h4"]
        assert any(alt.startswith(title) for alt in alts), title
    text = "".join(page.text)
    assert "eval/probe/eval.json" in text and "0.4321" in text
    assert "checkpoints/last.pt (step 2)" in text and "name: pixpro" in text  # model source, resolved config
    assert not page.links and "http" not in "".join(img["src"][:40] for img in page.images)  # self-contained
    assert not page.notes or all("eval.json" not in n for n in page.notes)


def test_several_runs_are_compared_side_by_side(comparison):
    page = Page(comparison.read_text())
    decode_images(page)
    alts = [img["alt"] for img in page.images]
    assert any(a.endswith("pixpro, synthetic:val:0") for a in alts)
    assert any(a.endswith("pixcon_sr, synthetic:val:0") for a in alts)
    assert not any(a.startswith("PixPro PPM") and "pixcon_sr" in a for a in alts)  # PPM belongs to PixPro only
    text = "".join(page.text)
    assert "Keys that differ" in text and "method.name" in text and "method.queue_size" in text


def test_missing_and_corrupt_pieces_are_reported_and_the_page_still_renders(runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(runs["pixpro"] / "config.yaml", bare / "config.yaml")  # started, nothing logged or saved yet
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["pixpro"], damaged)
    for checkpoint in (damaged / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(b"not a checkpoint")
    page = Page(write_report([bare, damaged, tmp_path / "gone"], tmp_path / "r.html", images=1).read_text())
    decode_images(page)
    notes = " ".join(page.notes)
    assert "bare: no metrics yet" in notes and "bare: no usable checkpoint" in notes
    assert "damaged: no usable checkpoint" in notes and "corrupt" in notes
    assert "gone: run directory" in notes and "does not exist" in notes
    alts = [img["alt"] for img in page.images]
    assert any(a.startswith("self-attention") and "damaged" in a for a in alts)  # from backbone.safetensors
    assert not any(a.startswith("PixPro PPM") for a in alts)  # no heads without a checkpoint
    assert "backbone.safetensors (no checkpoint" in "".join(page.text)


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


def test_cli_writes_the_report_into_the_run_and_expands_a_demo_folder(runs, tmp_path, capsys):
    assert main(["report", str(runs["pixpro"]), "--images", "0"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]  # the last line is the path (logging comes before)
    assert Path(printed) == (runs["pixpro"] / "report.html").resolve()
    demo = tmp_path / "demo"
    demo.mkdir()
    rows = [{"method": "random init", "steps": 0, "pretrain_s": 0.0, "first_loss": None, "final_loss": None,
             "miou": 0.25, "pixel_acc": 0.6, "run": None},
            {"method": "PixPro", "steps": 2, "pretrain_s": 3.0, "first_loss": 0.1, "final_loss": -0.5, "miou": 0.3,
             "pixel_acc": 0.7, "run": str(runs["pixpro"])},
            {"method": "hand-edited", "miou": "n/a"}]  # a damaged row shows dashes, not a traceback
    (demo / "results.json").write_text(json.dumps({"date": "2026-11-25", "seconds": 60, "rows": rows,
                                                   "budget": {"steps": 2, "probe_train": 4, "probe_val": 2}}))
    out = tmp_path / "demo.html"
    assert main(["report", str(demo), "--out", str(out), "--images", "0"]) == 0
    page = Page(out.read_text())
    text = "".join(page.text)
    assert "no figures requested (images=0)" in page.notes
    assert "Demo: method comparison" in text and "30.0" in text and "-0.500" in text and "hand-edited" in text
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert main(["report", str(demo / ".."), "--images", "-1"]) == 1


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


def test_the_pretrain_command_hands_the_figures_to_training_and_the_api_warns_without_them(tmp_path, caplog):
    """``pixelssl pretrain`` hands ``TensorBoardFigures`` to the loop (train/ does not import report/); a direct
    ``pretrain(cfg)`` with ``train.figure_every`` and no drawer says so and trains without figures."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pixelssl.train.loop import pretrain

    common = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=64",
              "data.synthetic.num_images=4", "data.synthetic.size=64", "data.num_workers=0", "train.batch_size=4",
              "train.max_steps=1", "train.progress=false", "train.amp=fp32", "train.tensorboard=true",
              "train.figure_every=1", f"run.output_dir={tmp_path}"]
    with caplog.at_level(logging.WARNING, logger="pixelssl.train.loop"):
        result = pretrain(load_config(PretrainConfig, overrides=[*common, "run.name=api"]))
    assert "given no figure drawer" in caplog.text
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == []
    assert main(["pretrain", "--config", "pixpro_r18_demo", *common, "run.name=cli"]) == 0  # (resets logging)
    events = EventAccumulator(str(tmp_path / "cli" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "figures/attention/0" in events.Tags()["images"]


def test_figures_during_training_leave_the_weights_unchanged(runs, tmp_path, make_run):
    from pixelssl.engine.checkpoint import load_checkpoint

    plain = make_run(tmp_path, "plain")  # the fixture's PixPro run without figures (drawn after steps 1 and 2)
    with_figures = load_checkpoint(runs["pixpro"] / "checkpoints" / "last.pt")["model"]
    without = load_checkpoint(plain / "checkpoints" / "last.pt")["model"]
    assert with_figures.keys() == without.keys()
    assert all(torch.equal(with_figures[k], without[k]) for k in without)


def test_figure_every_is_validated():
    with pytest.raises(ConfigError, match="train.figure_every"):
        load_config(PretrainConfig, overrides=["train.figure_every=-1"])
    with pytest.raises(ConfigError, match="train.figure_every"):
        load_config(PretrainConfig, overrides=["train.figure_every=5", "train.tensorboard=false"])
    assert load_config(PretrainConfig).train.figure_every == 0


def test_monitor_curves_appear_in_the_report(runs, tmp_path):
    run = tmp_path / "watched"
    shutil.copytree(runs["pixpro"], run)
    with open(run / "metrics.jsonl", "a") as f:  # what train.monitor_every=1 adds beside the training records
        for step in (1, 2):
            f.write(json.dumps({"step": step, "monitor/probe_miou": 0.1 * step, "monitor/cos_across_images": 0.6,
                                "monitor/cos_within_image": 0.7, "monitor/feature_std": 0.05,
                                "monitor/effective_rank": 12.0}) + "\n")
    page = Page(write_report([run], tmp_path / "report.html", images=0).read_text())
    decode_images(page)
    assert [img["alt"] for img in page.images] == ["training curves", "loss terms", "live monitors"]
    text = "".join(page.text)
    assert "Live monitors" in text
    last_loss = json.loads((runs["pixpro"] / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    assert f"{last_loss:.4g}" in text  # the summary's last loss skips the monitor records after it
