"""The one exception family of the bitstream layer."""


class FormatError(ValueError):
    """A stream or file is malformed, truncated, or was not produced by a matching encoder.

    Every reader in :mod:`bitstream` raises this (and only this) for bad input; the message
    says what is wrong in one line.
    """
