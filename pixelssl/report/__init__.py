"""Run reports: figures of what dense features learned, training curves, and the self-contained report.html;
``figures.TensorBoardFigures`` is the drawer ``pixelssl pretrain`` hands to the training loop.

May import: ``evaluate`` and everything below; not its sibling ``inpaint``, nor ``cli`` / ``demo``.
"""
