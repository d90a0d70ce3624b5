"""What a pre-trained backbone is worth: the frozen linear probe (``probe``, ``features``), segmentation
fine-tuning (``segmentation``), image-level probes (``classification``), detection fine-tuning with COCO metrics
(``detection``, ``detection_models``, ``coco_eval``), shared pieces (``common``, ``metrics``, ``transforms``),
where a backbone comes from (``source``) and the train / val splits the protocols read (``splits``). The commands
are ``cli.evaluate`` and ``cli.detect``.

May import: ``export`` (released checkpoints through ``export.importers``), ``engine`` (runtime) and everything
below; not ``train`` (whose live monitor uses the probe), ``report`` / ``inpaint`` / ``cli``.
"""
