"""Take pre-trained weights to the tools people already use (torchvision, timm, detectron2, safetensors), and bring
released checkpoints (PixPro, DenseCL, PixCon, MoCo, detectron2, torchvision) into ours.

Modules: ``exporters`` (weights out), ``keymaps`` (torchvision names in other tools' conventions), ``source`` (what
``pixelssl export`` reads), ``importers`` (released checkpoints in: safe loading, assembling, the report, writing)
with ``release_layouts`` (each release's key layout and the heads that map exactly).

May import: ``engine`` (checkpoints) and everything below it; not ``evaluate`` (which imports ``export.importers``)
nor anything above.
"""

from pixelssl.export.exporters import FORMATS, export
from pixelssl.export.importers import IMPORT_FORMATS, Imported, import_checkpoint, write_imported
from pixelssl.export.keymaps import detectron2_name, to_detectron2, torchvision_name
from pixelssl.export.source import ExportSource, load_source

__all__ = ["FORMATS", "IMPORT_FORMATS", "ExportSource", "Imported", "detectron2_name", "export", "import_checkpoint",
           "load_source", "to_detectron2", "torchvision_name", "write_imported"]
