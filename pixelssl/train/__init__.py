"""The pre-training loop (``loop``), its optimisers (``optim``) and live monitors (``monitor``); ``pixelssl
pretrain`` is ``cli.train``. The run machinery it stands on is ``pixelssl.engine``.

May import: ``evaluate`` (the live monitor trains evaluation's linear probe) and everything below it; not its
siblings ``report`` / ``inpaint``, nor ``cli``.
"""
