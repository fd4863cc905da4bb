"""Entropy coding and the container format; numpy (and numba) only, nothing else of ncodec."""
from .container import (CODER_VERSION, LIMITS, ColorFormat, ContainerReader, ContainerWriter,
                        Header, StreamKind, Unit, UnitType, pack, unpack)
from .errors import FormatError
from .rans import MAX_PRECISION, CdfTables, RansDecoder, RansEncoder, quantize_pmf
from .tables import GaussianTables, gaussian_pmf, scale_levels

__all__ = [
    "FormatError", "CdfTables", "RansEncoder", "RansDecoder", "quantize_pmf", "MAX_PRECISION",
    "Header", "Unit", "UnitType", "StreamKind", "ColorFormat", "ContainerWriter",
    "ContainerReader", "pack", "unpack", "LIMITS", "CODER_VERSION", "GaussianTables",
    "gaussian_pmf", "scale_levels",
]
