"""The pre-training loop (``loop``) and, until ``engine/`` exists, the run machinery that the inpainting loop
and evaluation borrow: run directories and resume (``run``), checkpoints (``checkpoint``), the run lock
(``lock``), stop signals (``preemption``), the non-finite policy (``numerics``), devices / seeds / threads
(``runtime``), the process group and the DDP wrap (``distributed``; the collectives are in ``pixelssl.dist``),
metrics, TensorBoard and progress (``logger``; figures come from a drawer the caller hands in), optimisers and
the learning-rate schedule (``optim``), live monitors (``monitor``) and ``pixelssl pretrain / demo / info /
config`` (``commands``).

May import: ``methods`` and everything below it. Known debt (``ignore_imports`` in pyproject.toml):
``monitor`` trains evaluation's linear probe, and ``commands`` imports ``demo`` and ``report.figures`` (the
command modules move to ``cli/``).
"""
