"""`make bench`: run every benchmark script in turn (each writes benchmarks/results/<name>.{json,md})."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("synthetic_speed.py", "augment_speed.py", "decode_speed.py", "queue_loss.py", "pretrain_step.py",
           "pretrain_throughput.py", "inpaint_speed.py", "camvid_probe.py", "inpaint_quality.py",
           "detection_transfer.py")


def main() -> int:
    quick = ["--quick"] if "--quick" in sys.argv else []
    failed = []
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        args = quick if script not in ("synthetic_speed.py", "augment_speed.py") else []
        if subprocess.run([sys.executable, str(HERE / script), *args]).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
