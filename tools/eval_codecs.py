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

import functools
import hashlib

import numpy as np

from codec.errors import CodecError

__all__ = ["ImageAdapter", "VideoAdapter", "NcodecImage", "NcodecLossless", "NcodecVideo",
           "get_codec", "codec_names", "default_codecs"]


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
    """ncodec's learned image codec (``codec.image.ImageCodec``) at the integer qualities of
    its range (extrapolated ones below index 0 included)."""

    def __init__(self, variant: str | None = None):
        from codec.image import ImageCodec

        self.codec = ImageCodec(weights=variant) if variant else ImageCodec()
        n = int(self.codec.model.cfg.n_quality)
        self.name = "ncodec" + (f"@{variant}" if variant else "")
        self.settings = tuple(range(int(self.codec.q_min), n))
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


class NcodecVideo(VideoAdapter):
    """ncodec's learned video codec (``codec.video``): five quality points spread over the
    model's continuous range; the variant after ``@`` names other weights (a file or a name in
    ``codec/weights``). ``intra_period`` as for the classic codecs; ``refresh_period`` is the
    codec's feature refresh (its default when None); ``adaptive_intra``, ``skip_frames`` and
    ``copy_blocks`` the encoder's own intra frames, skip frames and copy blocks, and
    ``residual_frames`` its residual frames (its defaults; ``ncodec-video-noskip`` turns skip
    frames off, ``ncodec-video-nocopy`` copy blocks and replenished frames,
    ``ncodec-video-nores`` residual frames, ``ncodec-video-p`` all of them: the anchors'
    structure, intra frames only where the intra period puts them, and the P-frame model on
    every other frame);
    ``effort`` the encoder's latent refinement of P frames and of the frames the image model
    codes (``ncodec-video-e1``). Every
    decode is checked against the encoder's own reconstruction: a mismatch is a
    :class:`CodecError`."""

    def __init__(self, variant: str | None = None, intra_period: int = -1,
                 refresh_period: int | None = None, adaptive_intra: bool = True,
                 skip_frames: bool = True, copy_blocks: bool = True,
                 residual_frames: bool = True, effort: int = 0):
        from pathlib import Path

        from codec import video

        self.weights = None
        if variant:
            p = Path(variant)
            self.weights = p if p.suffix else video.WEIGHTS_DIR / f"{variant}.safetensors"
        self.model, _, self.digest, self.model_id = video.load_model(self.weights)
        n = int(self.model.cfg.n_quality)
        self.adaptive_intra, self.skip_frames, self.effort = adaptive_intra, skip_frames, effort
        self.copy_blocks = copy_blocks
        self.residual_frames = residual_frames and adaptive_intra  # only adaptive-intra trials
        from codec.image import DEFAULT_MODEL, WEIGHTS_DIR  # the intra frames' model

        self.intra_digest = hashlib.sha256(
            (WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors").read_bytes()).hexdigest()
        self.name = ("ncodec-video" + ("-p" if not adaptive_intra else "-noskip" if not skip_frames
                                       else "-nocopy" if not copy_blocks
                                       else "" if residual_frames else "-nores")
                     + (f"-e{effort}" if effort else "")
                     + (f"@{Path(variant).stem}" if variant else ""))
        self.settings = tuple(round(i * (n - 1) / 4, 4) for i in range(5))
        self.intra_period = intra_period if intra_period and intra_period > 0 else -1
        self.refresh_period = refresh_period
        keyint = "only the first frame intra" if self.intra_period < 0 else \
            f"intra period {self.intra_period}"
        refresh = "codec default" if refresh_period is None else refresh_period
        adaptive = (", plus adaptive intra frames" if adaptive_intra else "") + (
            ", plus skip frames" if skip_frames else "") + (
            ", plus copy blocks and replenished frames" if copy_blocks else "") + (
            ", plus residual frames" if self.residual_frames else "") + (
            f", latent refinement (effort {effort})" if effort else "")
        self.description = (f"ncodec learned video codec, model {self.model_id}, YUV 4:2:0, "
                            f"low delay ({keyint}{adaptive}, feature refresh {refresh})")
        self._recon: tuple[bytes, list] | None = None

    def encode(self, video, setting) -> bytes:
        import io

        from codec.video import VideoEncoder

        buf = io.BytesIO()
        kw = {"refresh_period": self.refresh_period} if self.refresh_period is not None else {}
        with VideoEncoder(buf, video.width, video.height, fmt="yuv420", quality=float(setting),
                          intra_period=self.intra_period, fps=video.fps, weights=self.weights,
                          adaptive_intra=self.adaptive_intra, skip_frames=self.skip_frames,
                          copy_blocks=self.copy_blocks, residual_frames=self.residual_frames,
                          effort=self.effort, **kw) as enc:
            recon = [enc.encode((video.y[t], video.u[t], video.v[t]))
                     for t in range(video.frames)]
        data = buf.getvalue()
        self._recon = (data, recon)
        return data

    def decode(self, data: bytes):
        from fractions import Fraction

        from codec.video import VideoDecoder

        from .eval_media import Video

        dec = VideoDecoder(data, weights=self.weights)
        frames = list(dec)
        if not frames:
            raise CodecError(f"{self.name}: the stream holds no frames")
        if self._recon is not None and self._recon[0] == data:
            bad = [t for t, (a, b) in enumerate(zip(frames, self._recon[1]))
                   if not all(np.array_equal(p, q) for p, q in zip(a, b))]
            if bad or len(frames) != len(self._recon[1]):
                raise CodecError(f"{self.name}: decoded frames differ from the encoder's "
                                 f"reconstruction (first at frame {bad[0] if bad else len(frames)})")
        y, u, v = (np.stack([f[i] for f in frames]) for i in range(3))
        return Video(y, u, v, dec.fps or Fraction(25))

    def signature(self) -> str:
        # ai2: the trial-based adaptive intra decision (ai1, every frame coded both ways, may give
        # other streams); sk1: skip frames; cb1: copy blocks and replenished frames; rf2:
        # residual frames; v4: the layout version (its header is longer); bump them when a
        # decision changes. The intra frames' (shipped) image model is part of the stream too.
        return (f"{super().signature()}|{bytes(self.digest).hex()}|ip{self.intra_period}|"
                f"r{self.refresh_period}|ai{2 if self.adaptive_intra else 0}|"
                f"sk{int(self.skip_frames)}|cb{int(self.copy_blocks)}|"
                f"rf{2 if self.residual_frames else 0}|v4|intra{self.intra_digest[:16]}")


def _factories() -> tuple[dict, dict]:
    """(image factories, video factories): name -> callable(variant, ...) -> adapter."""
    from tools import classic

    images = {**classic.IMAGE_CODECS, "ncodec": NcodecImage, "ncodec-lossless": NcodecLossless}
    return images, {**classic.VIDEO_CODECS, "ncodec-video": NcodecVideo,
                    "ncodec-video-noskip": functools.partial(NcodecVideo, skip_frames=False),
                    "ncodec-video-nocopy": functools.partial(NcodecVideo, copy_blocks=False),
                    "ncodec-video-nores": functools.partial(NcodecVideo, residual_frames=False),
                    "ncodec-video-e1": functools.partial(NcodecVideo, effort=1),
                    "ncodec-video-p": functools.partial(NcodecVideo, adaptive_intra=False,
                                                        skip_frames=False, copy_blocks=False)}


def codec_names(kind: str | None = None) -> list[str]:
    """Registered codec names (without variants), of one kind (image/video) or all."""
    images, videos = _factories()
    return sorted({"image": images, "video": videos}.get(kind) or {**images, **videos})


def get_codec(spec: str, intra_period: int = -1, kind: str | None = None):
    """The adapter for ``name`` or ``name@variant``; ``intra_period`` (frames between intra
    frames, -1 = only the first) applies to video codecs. With ``kind="video"``, ``ncodec``
    means ``ncodec-video``. An unknown or unavailable codec is a :class:`CodecError`."""
    name, _, variant = spec.partition("@")
    if kind == "video" and name == "ncodec":
        name = "ncodec-video"
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
    for n in ("ncodec", "ncodec-lossless") if kind == "image" else ("ncodec-video",):
        try:
            get_codec(n)
            names.append(n)
        except CodecError:
            pass
    return names
