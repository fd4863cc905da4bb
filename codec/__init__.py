"""The public API of ncodec: codecs (imported lazily, they load torch), media I/O, errors.

``codec.image.ImageCodec``, ``codec.lossless.LosslessCodec``; ``codec.io`` reads and writes
images; every bad input raises :class:`codec.errors.CodecError` or
:class:`bitstream.FormatError`.
"""
from .errors import CodecError, FormatError

__all__ = ["CodecError", "FormatError"]
