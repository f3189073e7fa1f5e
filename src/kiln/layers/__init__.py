"""Layer tars: deterministic writing, compression with digests, safe extraction onto a root."""

from kiln.layers.compress import CompressingWriter, LayerDigests, open_decompressed
from kiln.layers.extract import ExtractError, ExtractStats, extract_layer
from kiln.layers.tarwriter import LayerTarStats, write_layer_tar

__all__ = [
    "CompressingWriter",
    "ExtractError",
    "ExtractStats",
    "LayerDigests",
    "LayerTarStats",
    "extract_layer",
    "open_decompressed",
    "write_layer_tar",
]
