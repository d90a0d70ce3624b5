"""Take pre-trained weights to the tools people already use: torchvision, timm, detectron2, safetensors."""

from pixelssl.export.exporters import FORMATS, export
from pixelssl.export.keymaps import detectron2_name, to_detectron2
from pixelssl.export.source import ExportSource, load_source

__all__ = ["FORMATS", "ExportSource", "detectron2_name", "export", "load_source", "to_detectron2"]
