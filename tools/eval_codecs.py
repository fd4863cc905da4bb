"""The codec adapter interface of ``ncodec eval`` / ``ncodec bench``, and the registry.

An **image adapter** is a name, a list of settings (its rate points), ``encode(img, setting)
-> bytes`` for an ``H x W x 3`` uint8 image and ``decode(bytes) -> ndarray``. A **video
adapter** is the same over a :class:`tools.eval_media.Video` (8-bit YUV 4:2:0). The bytes are
everything a decoder needs (the file or raw bitstream): bpp is computed from their length.

Plugging in a codec takes a subclass and one line in :func:`_factories`::

    class MyCodec(ImageAdapter):
        name, description, settings = "mine", "my codec, default effort", (1, 2, 3, 4)
        def encode(self, img, setting): return my_encode(img, q=setting)
        def decode(self, data): return my_decode(data)

Names may carry a variant after ``@`` (a preset, effort or speed: ``x264@medium``,
``jxl-lossless@9``, ``svtav1@4``), which the factory receives.
"""
from __future__ import annotations

import numpy as np

from codec.errors import CodecError

__all__ = ["ImageAdapter", "VideoAdapter", "get_codec", "codec_names", "default_codecs"]


class ImageAdapter:
    """An image codec as the evaluation tools see it."""

    kind = "image"
    name: str = ""
    description: str = ""
    settings: tuple = ()
    lossless: bool = False

    def encode(self, img: np.ndarray, setting) -> bytes:
        """Encode an ``H x W x 3`` uint8 RGB image at one of :attr:`settings`."""
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        """Decode what :meth:`encode` returned to an ``H x W x 3`` uint8 RGB image."""
        raise NotImplementedError

    def signature(self) -> str:
        """Identifies the exact encoder configuration (library versions included) for the
        result cache: results cached under another signature are not reused."""
        return f"{self.name}|{self.description}"


class VideoAdapter:
    """A video codec as the evaluation tools see it (low-delay configurations)."""

    kind = "video"
    name: str = ""
    description: str = ""
    settings: tuple = ()
    lossless = False

    def encode(self, video, setting) -> bytes:
        """Encode a :class:`tools.eval_media.Video` to a raw bitstream."""
        raise NotImplementedError

    def decode(self, data: bytes):
        """Decode a bitstream from :meth:`encode` to a :class:`tools.eval_media.Video`."""
        raise NotImplementedError

    def signature(self) -> str:
        return f"{self.name}|{self.description}"


class NcodecImage(ImageAdapter):
    """ncodec's learned image codec (``codec.image.ImageCodec``) at integer quality indexes."""

    def __init__(self, variant: str | None = None):
        from codec.image import ImageCodec

        self.codec = ImageCodec(weights=variant) if variant else ImageCodec()
        n = int(self.codec.model.cfg.n_quality)
        self.name = "ncodec" + (f"@{variant}" if variant else "")
        self.settings = tuple(range(n))
        self.description = f"ncodec learned image codec, model {self.codec.model_id}"

    def encode(self, img, setting):
        return self.codec.encode(img, quality=float(setting))

    def decode(self, data):
        return self.codec.decode(data)

    def signature(self):
        return f"{super().signature()}|{bytes(self.codec.digest).hex()}"


class NcodecLossless(ImageAdapter):
    """ncodec's learned lossless codec (``codec.lossless.LosslessCodec``); the variant after
    ``@`` names the circuit model (default: the codec's own default)."""

    settings, lossless = (None,), True

    def __init__(self, variant: str | None = None):
        from codec.lossless import LosslessCodec, load_circuit

        self.codec = LosslessCodec(model=variant) if variant else LosslessCodec()
        self.name = "ncodec-lossless" + (f"@{variant}" if variant else "")
        self.digest = load_circuit(self.codec.model)[1]
        self.description = f"ncodec learned lossless codec (circuit {self.codec.model})"

    def encode(self, img, setting):
        return self.codec.encode(img)

    def decode(self, data):
        return self.codec.decode(data)

    def signature(self):
        return f"{super().signature()}|{bytes(self.digest).hex()}"


def _factories() -> tuple[dict, dict]:
    """(image factories, video factories): name -> callable(variant, ...) -> adapter."""
    from tools import classic

    images = {**classic.IMAGE_CODECS, "ncodec": NcodecImage, "ncodec-lossless": NcodecLossless}
    return images, dict(classic.VIDEO_CODECS)


def codec_names(kind: str | None = None) -> list[str]:
    """Registered codec names (without variants), of one kind (image/video) or all."""
    images, videos = _factories()
    return sorted({"image": images, "video": videos}.get(kind) or {**images, **videos})


def get_codec(spec: str, intra_period: int = -1):
    """The adapter for ``name`` or ``name@variant``; ``intra_period`` (frames between intra
    frames, -1 = only the first) applies to video codecs. An unknown or unavailable codec is
    a :class:`CodecError`."""
    name, _, variant = spec.partition("@")
    images, videos = _factories()
    try:
        if name in videos:
            return videos[name](variant or None, intra_period=intra_period)
        if name in images:
            return images[name](variant or None)
    except (ImportError, CodecError) as e:
        raise CodecError(f"codec {spec!r} is not available here: {e}") from None
    raise CodecError(f"unknown codec {name!r}; known: {', '.join(codec_names())}")


def default_codecs(kind: str) -> list[str]:
    """The codecs ``ncodec eval`` runs when none are named: all classic ones of the kind, plus
    ncodec's own where they are importable (they are skipped silently otherwise)."""
    from tools import classic

    names = list(classic.DEFAULTS[kind])
    if kind == "image":
        for n in ("ncodec", "ncodec-lossless"):
            try:
                get_codec(n)
                names.append(n)
            except CodecError:
                pass
    return names
