"""Images in, batches out.

``decode`` (every image decoded in one place: ``read_rgb``, ``read_encoded``, ``UnreadableImage``), ``datasets``
(image and segmentation folders), ``synthetic`` / ``synthetic_coco`` (procedural scenes, their COCO export),
``coco`` (validated COCO json, detection datasets, subsets), ``views`` (two crops with their geometry),
``augment`` / ``device_augment`` / ``device_decode`` / ``device_batch`` (photometric augmentation and JPEG
decoding on the CPU or the training device), ``loader`` / ``worker_report`` (batches that depend only on
(seed, step), loader workers that report the file they died on). ``pixelssl data`` is ``cli.data``.

May import: ``losses``, ``config``, ``dist``, ``io``, ``errors``; not its siblings ``dense`` / ``models``, nor
anything above.
"""
