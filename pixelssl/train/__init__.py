"""The pre-training loop (``loop``), its optimisers (``optim``), live monitors (``monitor``) and ``pixelssl
pretrain / demo / info / config`` (``commands``). The run machinery it stands on is ``pixelssl.engine``.

May import: ``evaluate`` (the live monitor trains evaluation's linear probe) and everything below it; not its
siblings ``report`` / ``inpaint``, nor ``cli`` / ``demo``. Known debt (``ignore_imports`` in pyproject.toml):
``commands`` imports ``demo`` and ``report.figures`` (the command modules move to ``cli/``).
"""
