"""Entropy coding and the container format; numpy (and numba) only, nothing else of ncodec."""
from .errors import FormatError
from .rans import MAX_PRECISION, CdfTables, RansDecoder, RansEncoder, quantize_pmf

__all__ = ["FormatError", "CdfTables", "RansEncoder", "RansDecoder", "quantize_pmf",
           "MAX_PRECISION"]
