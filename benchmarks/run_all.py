"""`make bench`: run the benchmark scripts in turn (each writes benchmarks/results/<name>.{json,md}); not
short_schedules.py (hours per setting) nor gpu_check.py (needs a GPU), which run by hand."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("synthetic_speed.py", "augment_speed.py", "decode_speed.py", "queue_loss.py", "pretrain_step.py",
           "pretrain_throughput.py", "demo_step.py", "pixpro_fpn.py", "inpaint_speed.py", "inpaint_photo.py",
           "dense_transfer.py", "inpaint_quality.py", "detection_transfer.py")
NO_QUICK = ("synthetic_speed.py", "augment_speed.py", "pixpro_fpn.py")  # short already: no --quick option


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="each script's smoke test (its --quick)")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS), metavar="SCRIPT",
                        help=f"run only these scripts (of: {', '.join(SCRIPTS)})")
    args = parser.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    env = dict(os.environ)
    if args.quick:  # smoke tests: their tables go to a temporary folder, never over the measured ones
        env["PIXELSSL_BENCH_RESULTS"] = tempfile.mkdtemp(prefix="pixelssl_bench_quick_")
        print(f"--quick: tables go to {env['PIXELSSL_BENCH_RESULTS']}", flush=True)
    failed = []
    for script in args.only:
        print(f"== {script}", flush=True)
        script_args = [] if script in NO_QUICK else quick
        if subprocess.run([sys.executable, str(HERE / script), *script_args], env=env).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
