"""report.html from tiny real runs: every image embedded and decodable, expected sections, several runs side by
side, missing or corrupt pieces reported in place, the live monitors' curves."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser

from PIL import Image

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
