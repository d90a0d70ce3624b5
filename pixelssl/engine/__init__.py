"""The training infrastructure every loop shares (pre-training, inpainting, evaluation's fine-tuning): starting
or resuming a run directory (``run``), checkpoints that survive crashes (``checkpoint``), metrics, TensorBoard and
progress (``logger``; figures come from a drawer the caller hands in), one writer per run directory (``lock``),
stop signals turned into a checkpoint and exit 75 (``preemption``), the NaN/inf policy (``numerics``), devices /
precision / seeds / threads (``runtime``), every loop's learning-rate schedule (``schedules``), and the process
group, DDP wrap and batch split (``distributed``; the collectives are in ``pixelssl.dist``).

May import: ``methods`` and everything below it (in practice ``data``, ``config``, ``dist``, ``io``, ``errors``);
not ``export``, ``evaluate``, ``train``, ``inpaint``, ``report``, ``cli``, which are built on it.
"""
