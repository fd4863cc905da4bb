"""Adapters for the classic codecs a user would otherwise pick (see :mod:`tools.eval_codecs`).

Images (Pillow and its plugins), with the settings of ``../shared/anchors/kodak_anchors.json``:
JPEG 4:2:0 / 4:4:4 (libjpeg-turbo, optimize off), WebP method 6, AVIF speed 6 (libavif + aom,
4:2:0), HEIC (pillow-heif, x265, 4:2:0), JPEG XL effort 7; lossless PNG (optimize, level 9),
WebP lossless (method 6), JPEG XL lossless (effort 7), HEIC lossless (x265, 4:4:4 identity).

Video through PyAV in a low-delay configuration: one intra frame then P frames only (no B
frames, no scene-cut I frames, ``intra_period`` frames between I frames, -1 = only the first),
one slice, tune PSNR, constant-quality (CRF) rate points: x264 (veryslow), x265 (veryslow),
SVT-AV1 (preset 8, ``pred-struct=1`` low delay, tune PSNR). The bitstream is the raw encoder
packets (Annex B / OBUs) with any extradata in front: no container bytes are counted.
"""
from __future__ import annotations

import io
import os
from fractions import Fraction

import numpy as np

from codec.errors import CodecError

from .eval_codecs import ImageAdapter, VideoAdapter
from .eval_media import Video, frames_to_video

__all__ = ["PillowCodec", "PyAVCodec", "IMAGE_CODECS", "VIDEO_CODECS", "DEFAULTS"]

_plugins = False


def _plugins_loaded() -> None:
    """Register the HEIF and JPEG XL Pillow plugins once."""
    global _plugins
    if not _plugins:
        import pillow_heif
        import pillow_jxl  # noqa: F401  (registers JXL on import)

        pillow_heif.register_heif_opener()
        _plugins = True


def _library_versions() -> str:
    import PIL
    from PIL import features

    import pillow_heif

    return (f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('jpg')}, libwebp "
            f"{features.version('webp')}, libavif {features.version('avif')}, pillow-heif "
            f"{pillow_heif.__version__} (libheif {pillow_heif.libheif_version()})")


class PillowCodec(ImageAdapter):
    """An image codec written and read by Pillow: ``options(setting)`` gives the save()
    keyword arguments of one rate point."""

    def __init__(self, name: str, fmt: str, description: str, settings: tuple, options,
                 lossless: bool = False):
        self.name, self.fmt, self.description = name, fmt, description
        self.settings, self.options, self.lossless = tuple(settings), options, lossless

    def encode(self, img: np.ndarray, setting) -> bytes:
        from PIL import Image

        _plugins_loaded()
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(
            buf, format=self.fmt, **self.options(setting))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        _plugins_loaded()
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    def signature(self) -> str:
        return f"{super().signature()}|{_library_versions()}"


def _int(variant: str | None, default: int, what: str) -> int:
    try:
        return default if variant is None else int(variant)
    except ValueError:
        raise CodecError(f"the {what} after '@' must be an integer, got {variant!r}") from None


def jpeg(subsampling: int):
    label = {2: "420", 0: "444"}[subsampling]

    def make(variant=None):
        return PillowCodec(
            f"jpeg{label}", "JPEG",
            f"JPEG {label[0]}:{label[1]}:{label[2]} (Pillow/libjpeg-turbo), optimize off",
            (2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90),
            lambda q: {"quality": q, "subsampling": subsampling})
    return make


def webp(variant=None):
    m = _int(variant, 6, "WebP method")
    return PillowCodec("webp" + (f"@{m}" if variant else ""), "WEBP",
                       f"WebP lossy method {m} (Pillow/libwebp)",
                       (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                       lambda q: {"quality": q, "method": m})


def avif(variant=None):
    s = _int(variant, 6, "AVIF speed")
    return PillowCodec("avif" + (f"@{s}" if variant else ""), "AVIF",
                       f"AVIF speed {s} (Pillow/libavif + aom), 4:2:0",
                       (10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80),
                       lambda q: {"quality": q, "speed": s})


def heic(variant=None):
    return PillowCodec("heic", "HEIF", "HEIC (pillow-heif, libheif + x265), defaults, 4:2:0",
                       (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60),
                       lambda q: {"quality": q})


def jxl(variant=None):
    e = _int(variant, 7, "JPEG XL effort")
    return PillowCodec("jxl" + (f"@{e}" if variant else ""), "JXL",
                       f"JPEG XL effort {e} (pillow-jxl-plugin, libjxl), quality -> distance",
                       (5, 10, 20, 30, 45, 60, 70, 78, 85, 90, 95),
                       lambda q: {"quality": q, "effort": e})


def png(variant=None):
    return PillowCodec("png", "PNG", "PNG (Pillow/zlib), optimize, compress_level 9", (None,),
                       lambda _: {"optimize": True, "compress_level": 9}, lossless=True)


def webp_lossless(variant=None):
    m = _int(variant, 6, "WebP method")
    return PillowCodec("webp-lossless" + (f"@{m}" if variant else ""), "WEBP",
                       f"WebP lossless method {m} (Pillow/libwebp)", (None,),
                       lambda _: {"lossless": True, "method": m, "quality": 100}, lossless=True)


def jxl_lossless(variant=None):
    e = _int(variant, 7, "JPEG XL effort")
    return PillowCodec("jxl-lossless" + (f"@{e}" if variant else ""), "JXL",
                       f"JPEG XL lossless effort {e} (pillow-jxl-plugin, libjxl)", (None,),
                       lambda _: {"lossless": True, "effort": e}, lossless=True)


def heic_lossless(variant=None):
    return PillowCodec("heic-lossless", "HEIF",
                       "HEIC lossless (pillow-heif, x265, 4:4:4, identity matrix)", (None,),
                       lambda _: {"quality": -1, "chroma": 444, "matrix_coefficients": 0},
                       lossless=True)


IMAGE_CODECS = {"jpeg420": jpeg(2), "jpeg444": jpeg(0), "webp": webp, "avif": avif,
                "heic": heic, "jxl": jxl, "png": png, "webp-lossless": webp_lossless,
                "jxl-lossless": jxl_lossless, "heic-lossless": heic_lossless}


# ---------------------------------------------------------------------------------- video
_INFINITE_GOP = 10000  # "one intra frame": a key interval beyond any evaluated clip


class PyAVCodec(VideoAdapter):
    """A video encoder of FFmpeg driven through PyAV in a low-delay configuration.

    ``options(crf, keyint)`` gives the encoder's AVOptions of one rate point."""

    def __init__(self, name: str, encoder: str, decoder: str, description: str,
                 settings: tuple, options, thread_type: str | None = None,
                 intra_period: int = -1):
        import av

        for codec, mode in ((encoder, "w"), (decoder, "r")):
            try:
                av.codec.Codec(codec, mode)
            except Exception:  # noqa: BLE001  (PyAV raises several types for a missing codec)
                raise CodecError(f"this PyAV/FFmpeg build has no {codec} "
                                 f"{'encoder' if mode == 'w' else 'decoder'}") from None
        self.name, self.encoder, self.decoder = name, encoder, decoder
        self.settings, self.options, self.thread_type = tuple(settings), options, thread_type
        self.intra_period = intra_period if intra_period and intra_period > 0 else -1
        keyint = "only the first frame intra" if self.intra_period < 0 else \
            f"intra period {self.intra_period}"
        self.description = f"{description}, low delay (I then P frames only, {keyint})"

    def _keyint(self) -> int:
        return _INFINITE_GOP if self.intra_period < 0 else self.intra_period

    def encode(self, video: Video, setting) -> bytes:
        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only, not its banner
        ctx = av.CodecContext.create(self.encoder, "w")
        ctx.width, ctx.height, ctx.pix_fmt = video.width, video.height, "yuv420p"
        ctx.time_base, ctx.framerate = 1 / Fraction(video.fps), Fraction(video.fps)
        if video.full_range:
            ctx.color_range = 2
        ctx.options = self.options(setting, self._keyint())
        if self.thread_type:
            ctx.thread_type = self.thread_type
        out = bytearray()
        h, w = video.height, video.width
        for t in range(video.frames):
            a = np.concatenate([video.y[t].ravel(), video.u[t].ravel(), video.v[t].ravel()])
            frame = av.VideoFrame.from_ndarray(a.reshape(h * 3 // 2, w), format="yuv420p")
            frame.pts = t
            for p in ctx.encode(frame):
                out += bytes(p)
        for p in ctx.encode(None):
            out += bytes(p)
        return bytes(ctx.extradata or b"") + bytes(out)

    def decode(self, data: bytes) -> Video:
        import av

        ctx = av.CodecContext.create(self.decoder, "r")
        frames = []
        try:
            for packet in ctx.parse(data) + ctx.parse(None):
                frames += ctx.decode(packet)
            frames += ctx.decode(None)
        except av.error.FFmpegError as e:
            raise CodecError(f"{self.decoder}: cannot decode the bitstream: {e}") from None
        return frames_to_video(frames, Fraction(1))

    def signature(self) -> str:
        import av

        return (f"{super().signature()}|{self.options('<crf>', self._keyint())}|PyAV "
                f"{av.__version__} libavcodec {av.library_versions['libavcodec']}")


_LOW_DELAY = "bframes=0:keyint={k}:min-keyint={k}:scenecut=0:open-gop=0"


def x264(variant=None, intra_period: int = -1):
    preset = variant or "veryslow"
    return PyAVCodec(
        "x264" + (f"@{preset}" if variant else ""), "libx264", "h264",
        f"x264 {preset} (libx264 via PyAV), tune psnr, CRF, one slice, frame threads",
        (19, 23, 27, 31, 35),
        lambda crf, k: {"preset": preset, "tune": "psnr", "crf": str(crf), "x264-params":
                        _LOW_DELAY.format(k=k) + ":sliced-threads=0:slices=1"},
        thread_type="FRAME", intra_period=intra_period)


def x265(variant=None, intra_period: int = -1):
    preset = variant or "veryslow"
    return PyAVCodec(
        "x265" + (f"@{preset}" if variant else ""), "libx265", "hevc",
        f"x265 {preset} (libx265 via PyAV), tune psnr, CRF",
        (21, 25, 29, 33, 37),
        lambda crf, k: {"preset": preset, "tune": "psnr", "crf": str(crf), "x265-params":
                        _LOW_DELAY.format(k=k) + ":log-level=error"},
        intra_period=intra_period)


def svtav1(variant=None, intra_period: int = -1):
    preset = _int(variant, 8, "SVT-AV1 preset")
    return PyAVCodec(
        "svtav1" + (f"@{preset}" if variant else ""), "libsvtav1", "libdav1d",
        f"SVT-AV1 preset {preset} (libsvtav1 via PyAV, dav1d decoder), tune PSNR, CRF",
        (27, 35, 43, 51, 59),
        lambda crf, k: {"preset": str(preset), "crf": str(crf), "svtav1-params":
                        f"pred-struct=1:tune=1:keyint={k}:scd=0:enable-overlays=0"},
        intra_period=intra_period)


VIDEO_CODECS = {"x264": x264, "x265": x265, "svtav1": svtav1}

DEFAULTS = {"image": ("jpeg420", "jpeg444", "webp", "avif", "heic", "jxl", "png",
                      "webp-lossless", "jxl-lossless"),
            "video": ("x264", "x265", "svtav1")}
