"""The exception family of the codec layer."""
from bitstream.errors import FormatError


class CodecError(Exception):
    """Bad input to a codec (unsupported image mode, absurd size, wrong model, missing file).

    Raised with a one-line message that says what is wrong; the CLI prints it and exits 1.
    """


__all__ = ["CodecError", "FormatError"]
