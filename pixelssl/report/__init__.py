"""Run reports: figures of what dense features learned, training curves, and the self-contained report.html;
``figures.TensorBoardFigures`` is the drawer ``pixelssl pretrain`` hands to the training loop.

May import: ``evaluate`` and everything below (``engine`` for metrics and checkpoints); not its siblings ``inpaint`` /
``train``, nor ``cli``.
"""
