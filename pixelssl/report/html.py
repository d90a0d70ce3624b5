"""``report.html``: one self-contained page (inline CSS, images as base64 PNG, no external assets) that explains
one run, or compares several side by side: summary, training curves, evaluation tables, figures, config.

``write_report(runs, out)`` is the API; ``pixelssl report RUN [RUN ...]`` and the end of ``pixelssl demo`` call it.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from pixelssl import __version__
from pixelssl.io import atomic_write
from pixelssl.report import plots
from pixelssl.report.figures import KINDS, Encoders, RunFigure, figure_images, run_figures
from pixelssl.report.sources import RunData, load_run

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1400px;color:#222;
     padding:0 16px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:2em}h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#8a4b00;background:#fff6e5;border-left:3px solid #e0a030;padding:4px 8px;margin:.4em 0}
.caption{color:#555;font-size:.85em;max-width:70em}
.grid{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.cell{max-width:100%}
.cell img{max-width:100%;height:auto;border:1px solid #ddd}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:.8em;max-height:40em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def png_data_uri(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 array as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)  # ~5x faster than the default, ~15% larger
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers are right-aligned."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{_e(v)}</td>' if isinstance(v, (int, float)) or _numeric(v)
                        else f"<td>{_e(v)}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _numeric(text: Any) -> bool:
    try:
        float(str(text).rstrip("%"))
        return True
    except ValueError:
        return False


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _number(value: Any, form: str, scale: float = 1.0) -> str:
    """``form`` of a number times ``scale``, "-" for anything else (a hand-edited file must not break the page)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return form.format(value * scale) if ok else "-"


# ------------------------------------------------------------------------------------------------- sections
def _summary(runs: Sequence[RunData]) -> str:
    rows = []
    fields = ["run directory", "method", "backbone", "data", "steps logged", "last loss", "model for figures",
              "notes"]
    for run in runs:
        cfg = run.cfg
        trained = [r for r in run.records if "loss" in r]  # monitor records (monitor/*) carry no loss
        last = (trained or run.records or [{}])[-1]
        data = "-" if cfg is None else (f"{cfg.data.root or 'synthetic scenes'}, {cfg.data.image_size} px views, "
                                         f"batch {cfg.train.batch_size}")
        planned = "" if cfg is None or not cfg.train.max_steps else f" / {cfg.train.max_steps}"
        rows.append([str(run.path), "-" if cfg is None else cfg.method.name, "-" if cfg is None else cfg.model.backbone,
                     data, f"{last.get('step', 0)}{planned}" if last else "none",
                     _fmt(last.get("loss")) if last else "-", run.model_source or "none",
                     "; ".join(f"{k}: {v}" for k, v in run.notes.items()) or "-"])
    return "<h2>Runs</h2>" + _table(["", *[r.label for r in runs]], list(map(list, zip(fields, *rows))))


def _curves(runs: Sequence[RunData]) -> str:
    parts = ["<h2>Training curves</h2>"]
    parts += [_note(f"{r.label}: {r.notes['curves']}") for r in runs if "curves" in r.notes]
    logged = {r.label: r.records for r in runs if r.records}
    if not logged:
        return "".join(parts)
    parts.append('<p class="caption">From metrics.jsonl: the loss is the mean over each logging window '
                 "(train.log_every steps), the others their value at the logged step.</p>")
    figures = [plots.curves_figure(logged), plots.loss_terms_figure(logged), plots.monitor_figure(logged)]
    if figures[-1] is not None:
        parts.append('<p class="caption">Live monitors (train.monitor_every, pixelssl.train.monitor): a small linear '
                     "probe's mIoU on C5 and collapse indicators of the dense projection (C5 where a method has "
                     "none) on a fixed batch of views; collapse shows as cosines near 1, the std of normalised "
                     "features near 0 and a C5 effective rank near 1.</p>")
    for fig, alt in zip(figures, ("training curves", "loss terms", "live monitors")):
        if fig is not None:
            parts.append(_img(png_data_uri(plots.figure_rgb(fig)), alt))
    return "".join(parts)


def _demo_table(summary: Mapping) -> str:
    budget = summary.get("budget") if isinstance(summary.get("budget"), Mapping) else {}
    rows = []
    for r in summary.get("rows", []):
        r = r if isinstance(r, Mapping) else {}
        loss = "" if r.get("first_loss") is None else \
            f"{_number(r.get('first_loss'), '{:.3f}')} -> {_number(r.get('final_loss'), '{:.3f}')}"
        rows.append([r.get("method", "?"), r.get("steps", ""), _number(r.get("pretrain_s"), "{:.0f} s"), loss,
                     _number(r.get("miou"), "{:.1f}", 100), _number(r.get("pixel_acc"), "{:.1f}", 100)])
    caption = (f"Linear-probe mIoU on {budget.get('probe_val', '?')} held-out synthetic scenes (probe trained on "
               f"{budget.get('probe_train', '?')}), each method pre-trained {budget.get('steps', '?')} steps; "
               f"measured {summary.get('date', '?')}, {_number(summary.get('seconds'), '{:.1f}', 1 / 60)} min in total.")
    return (f'<h3>Demo: method comparison</h3><p class="caption">{_e(caption)}</p>'
            + _table(["backbone", "pre-train steps", "pre-train time", "loss (first -> last)", "probe mIoU",
                      "pixel acc"], rows))


EVAL_METRICS = (("miou", "mIoU"), ("pixel_acc", "pixel acc"), ("top1", "top-1"), ("top5", "top-5"))


def _evaluations(runs: Sequence[RunData], demo: Mapping | None) -> str:
    parts = ["<h2>Evaluation</h2>"]
    if demo is not None:
        parts.append(_demo_table(demo))
    parts += [_note(f"{r.label}: {r.notes['evaluation']}") for r in runs if "evaluation" in r.notes]
    entries = sorted({name for r in runs for name, _ in r.evals})
    if not entries:
        parts.append(_note("no eval.json in any run directory (pixelssl probe / finetune-seg / probe-cls write one "
                           "into RUN/eval/<kind>/)"))
        return "".join(parts)
    rows = []
    for name in entries:  # one row per (eval.json, metric); one column per run: side by side
        found = [dict(r.evals).get(name) for r in runs]
        for key, title in EVAL_METRICS:
            values = [(rec or {}).get("metrics", {}).get(key) for rec in found]
            if any(isinstance(v, (int, float)) for v in values):
                rows.append([name, title, *[_fmt(v) if v is not None else "-" for v in values]])
    parts.append(_table(["eval.json", "metric", *[r.label for r in runs]], rows))
    return "".join(parts)


def _figures(runs: Sequence[RunData], figures: Mapping[str, list[RunFigure]], images: Sequence[str],
             requested: int) -> str:
    parts = ["<h2>Figures</h2>"]
    if requested == 0:
        return "".join(parts + [_note("no figures requested (images=0)")])
    parts += [_note(f"{r.label}: {r.notes['figures']}") for r in runs if "figures" in r.notes]
    if not images:
        parts.append(_note("no figures: no run has a usable model (checkpoint or backbone.safetensors) and images"))
        return "".join(parts)
    for image in images:
        parts.append(f"<h3>{_e(image)}</h3>")
        for kind, (title, caption) in KINDS.items():
            cells = []
            for run in runs:
                found = [f for f in figures.get(run.label, []) if f.kind == kind and f.image == image]
                if found:
                    cells.append(f'<div class="cell"><b>{_e(run.label)}</b><br>'
                                 f'{_img(png_data_uri(found[0].rgb), f"{title}, {run.label}, {image}")}</div>')
            if cells:
                parts.append(f'<h4>{_e(title)}</h4><p class="caption">{_e(caption)}</p>'
                             f'<div class="grid">{"".join(cells)}</div>')
    return "".join(parts)


def _config(runs: Sequence[RunData]) -> str:
    parts = ["<h2>Configuration</h2>"]
    parts += [_note(f"{r.label}: {r.notes['config']}") for r in runs if "config" in r.notes]
    resolved = [r for r in runs if r.cfg is not None]
    if len(resolved) > 1:
        flat = [_flatten(OmegaConf.to_container(r.cfg)) for r in resolved]
        keys = sorted({k for f in flat for k in f if len({str(g.get(k)) for g in flat}) > 1})
        if keys:
            parts.append("<h3>Keys that differ</h3>")
            parts.append(_table(["key", *[r.label for r in resolved]], [[k, *[_fmt(f.get(k)) for f in flat]]
                                                                       for k in keys]))
    for run in runs:
        if run.config_yaml:
            parts.append(f"<details{' open' if len(runs) == 1 else ''}><summary>{_e(run.label)}: resolved config"
                         f"</summary><pre>{_e(run.config_yaml)}</pre></details>")
    return "".join(parts)


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {dotted key: value}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ------------------------------------------------------------------------------------------------- the page
def _unique_labels(paths: Sequence[Path]) -> list[str]:
    """Run directory names, with the parent prepended where two runs share a name."""
    names = [p.name or str(p) for p in paths]
    return [f"{p.parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def _collect_figures(runs: Sequence[RunData], count: int) -> tuple[dict[str, list[RunFigure]], list[str]]:
    figures: dict[str, list[RunFigure]] = {}
    names: list[str] = []
    for run in runs:
        if run.model is None:
            continue
        if run.cfg is None:
            run.notes.setdefault("figures", "no readable config.yaml: the run's images and views are unknown")
            continue
        try:
            images = figure_images(run.cfg, count)
        except Exception as exc:  # a moved data.root must not stop the report
            run.notes["figures"] = f"no images for the figures: {str(exc).strip().splitlines()[0]}"
            continue
        figures[run.label] = run_figures(Encoders.of(run.model, run.cfg), images)
        names += [i.name for i in images if i.name not in names]
    return figures, names


def write_report(runs: Sequence[str | Path], out: str | Path, *, images: int = 2,
                 methods: Mapping[str, nn.Module] | None = None, demo: Mapping | None = None,
                 title: str | None = None) -> Path:
    """Write ``out`` (HTML) for one or several runs and return its path.

    ``images``: how many fixed images the figures use per run; ``methods``: models already in memory by run path
    (skips loading checkpoints); ``demo``: the demo's results summary, shown as the method table.
    """
    started = time.perf_counter()
    paths = [Path(r) for r in runs]
    methods = {str(Path(k)): v for k, v in (methods or {}).items()}
    loaded = [load_run(p, methods.get(str(p)), label, with_model=images > 0)
              for p, label in zip(paths, _unique_labels(paths))]
    figures, names = _collect_figures(loaded, images)
    heading = title or ("Run report: " + ", ".join(r.label for r in loaded))
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(heading)}</title>'
            f"<style>{CSS}</style></head><body><h1>{_e(heading)}</h1>"
            f'<p class="caption">pixelssl {_e(__version__)}, generated {datetime.now().isoformat(timespec="seconds")}'
            f"</p>{_summary(loaded)}{_curves(loaded)}{_evaluations(loaded, demo)}"
            f"{_figures(loaded, figures, names, images)}{_config(loaded)}</body></html>\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, page)
    log.info("report written to %s in %.1f s", out, time.perf_counter() - started)
    return out
