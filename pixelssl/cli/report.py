"""``pixelssl report RUN [RUN ...]``: write a self-contained HTML report of one run or a side-by-side comparison."""

from __future__ import annotations

import argparse
from pathlib import Path

from pixelssl.errors import PixelSSLError


def expand_runs(specs: list[str]) -> tuple[list[Path], dict | None]:
    """Run directories from the arguments; a demo folder (``results.json``, no ``config.yaml``) stands for its runs
    and brings its method table."""
    from pixelssl.report.sources import demo_runs, demo_summary

    runs: list[Path] = []
    demo = None
    for spec in specs:
        path = Path(spec).expanduser()
        if not path.is_dir():
            raise PixelSSLError(f"report: '{path}' is not a directory (give run directories or a demo folder)")
        summary = None if (path / "config.yaml").is_file() else demo_summary(path)
        if summary is not None:
            runs += demo_runs(path, summary)
            demo = demo or summary
        elif (path / "config.yaml").is_file() or (path / "checkpoints").is_dir() or (path / "metrics.jsonl").is_file():
            runs.append(path)
        else:
            raise PixelSSLError(f"report: '{path}' is neither a run directory (config.yaml, checkpoints/, "
                                "metrics.jsonl) nor a demo folder (results.json)")
    return runs, demo


def _report(args: argparse.Namespace) -> int:
    from pixelssl.report.html import write_report

    if args.images < 0:
        raise PixelSSLError(f"report: --images must be >= 0 (got {args.images})")
    runs, demo = expand_runs(args.runs)
    if args.out:
        out = Path(args.out).expanduser()
    elif len(args.runs) == 1:
        out = Path(args.runs[0]).expanduser() / "report.html"
    else:
        out = Path("report.html")
    print(write_report(runs, out, images=args.images, demo=demo).resolve())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="write report.html: config, curves, evaluations, attention figures",
                              description="Write a self-contained HTML report (images embedded) of a run, or compare "
                                          "several side by side. A demo folder (e.g. runs/demo) stands for its runs.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or a demo output folder)")
    p.add_argument("--out", metavar="FILE", help="output file (default: RUN/report.html for one run, else "
                                                 "./report.html)")
    p.add_argument("--images", type=int, default=2, help="fixed images per run for the figures (default 2)")
    p.set_defaults(func=_report)
