"""Take pre-trained weights to the tools people already use (torchvision, timm, detectron2, safetensors), and bring
released checkpoints (PixPro, DenseCL, PixCon, MoCo, detectron2, torchvision) into ours.

May import: ``engine`` (checkpoints) and everything below it; not ``evaluate`` (which imports ``export.importers``)
nor anything above.
"""

from pixelssl.export.exporters import FORMATS, export
from pixelssl.export.importers import IMPORT_FORMATS, Imported, import_checkpoint, write_imported
from pixelssl.export.keymaps import detectron2_name, to_detectron2, torchvision_name
from pixelssl.export.source import ExportSource, load_source

__all__ = ["FORMATS", "IMPORT_FORMATS", "ExportSource", "Imported", "detectron2_name", "export", "import_checkpoint",
           "load_source", "to_detectron2", "torchvision_name", "write_imported"]
