"""Media I/O for video: read clips lazily, write decoded frames; used by the CLI, the
evaluation tools and pipelines.

Inputs (:func:`open_video`):

* **y4m** (``.y4m`` or a stream starting with ``YUV4MPEG2``, stdin included): read here,
  exactly, for 8-bit 4:2:0 (``C420``, ``C420jpeg``, ``C420mpeg2``, ``C420paldv``), with the
  frame rate (``F``) and ``XCOLORRANGE=FULL|LIMITED``; other chroma formats of a y4m *file* go
  through PyAV (converted to 4:2:0);
* **raw YUV** (``.yuv`` or whenever ``size`` is given): planar 8-bit ``yuv420p``
  (alias ``i420``), size and frame rate given by the caller;
* **anything PyAV (FFmpeg) decodes**: mp4, mkv, webm, avi, mov, ...; frames of a 4:2:0 stream
  come out as decoded, other pixel formats are converted (RGB streams stay RGB when RGB is
  asked for).

A :class:`VideoSource` yields frames one at a time (memory bounded by one frame), either as
``(Y, U, V)`` uint8 planes (``U``/``V`` of ``ceil(H/2) x ceil(W/2)``) or as ``H x W x 3``
RGB arrays; conversions between the two use BT.601 (:func:`yuv420_to_rgb`,
:func:`rgb_to_yuv420`) in the source's range.

Outputs (:func:`open_writer`): ``.y4m`` (or ``-``: y4m on stdout), ``.yuv`` (raw planes),
``.mkv`` (FFV1, lossless), ``.mp4`` (H.264 ``qp 0``, lossless; ``libx264rgb`` for RGB frames)
or a directory of PNG frames (``000000.png``, ...). Files are written to a temporary name and
renamed when :meth:`VideoSink.close` succeeds; a failed write leaves nothing behind and an
existing output is only replaced with ``force``.
"""
from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

from bitstream.container import LIMITS

from .errors import CodecError

__all__ = ["VIDEO_EXTS", "RAW_EXTS", "Video", "VideoSource", "VideoSink", "open_video", "open_writer",
           "read_clip", "frames_to_video", "yuv420_to_rgb", "rgb_to_yuv420", "is_video_path",
           "parse_size", "Y4M_SIGNATURE", "output_kind", "AtomicFile"]

VIDEO_EXTS = (".mp4", ".mkv", ".y4m", ".avi", ".mov", ".webm", ".mpg", ".ts")  #: self-describing
RAW_EXTS = (".yuv",)  #: raw planes: the size must be given
Y4M_SIGNATURE = b"YUV4MPEG2"
_Y4M_420 = ("420", "420jpeg", "420mpeg2", "420paldv")
_RGB_FORMATS = ("rgb24", "bgr24", "rgba", "bgra", "argb", "abgr", "rgb0", "bgr0", "0rgb",
                "0bgr", "gbrp", "gbrap")
_MAX_HEADER = 4096


# ------------------------------------------------------------------------------ conversions
def yuv420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, full_range: bool) -> np.ndarray:
    """BT.601 YUV 4:2:0 -> RGB uint8 (``... x H x W x 3``): chroma upsampled by 2x2
    replication, limited (16-235/240) or full range, rounded and clipped."""
    h, w = y.shape[-2:]
    up = lambda c: np.repeat(np.repeat(c, 2, axis=-2), 2, axis=-1)[..., :h, :w]  # noqa: E731
    yf = y.astype(np.float64)
    cb, cr = up(u).astype(np.float64) - 128.0, up(v).astype(np.float64) - 128.0
    if not full_range:
        yf, cb, cr = (yf - 16.0) * 255.0 / 219.0, cb * 255.0 / 224.0, cr * 255.0 / 224.0
    kr, kb = 0.299, 0.114
    kg = 1.0 - kr - kb
    r = yf + 2.0 * (1.0 - kr) * cr
    b = yf + 2.0 * (1.0 - kb) * cb
    g = (yf - kr * r - kb * b) / kg
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def rgb_to_yuv420(rgb: np.ndarray, full_range: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 RGB uint8 (``H x W x 3``) -> ``(Y, U, V)`` 4:2:0 planes, the inverse of
    :func:`yuv420_to_rgb` up to rounding: chroma is the mean of each 2x2 block (edge pixels
    replicated for odd sizes)."""
    a = np.asarray(rgb, dtype=np.float64)
    h, w = a.shape[:2]
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    kr, kb = 0.299, 0.114
    yf = kr * r + (1.0 - kr - kb) * g + kb * b
    cb, cr = (b - yf) / (2.0 * (1.0 - kb)), (r - yf) / (2.0 * (1.0 - kr))
    if not full_range:
        yf, cb, cr = yf * 219.0 / 255.0 + 16.0, cb * 224.0 / 255.0, cr * 224.0 / 255.0
    pad = ((0, h % 2), (0, w % 2))

    def down(c):
        c = np.pad(c, pad, mode="edge")
        return c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2).mean(axis=(1, 3)) + 128.0

    q = lambda p: np.clip(np.rint(p), 0, 255).astype(np.uint8)  # noqa: E731
    return q(yf), q(down(cb)), q(down(cr))


def _chroma_shape(h: int, w: int) -> tuple[int, int]:
    return (h + 1) // 2, (w + 1) // 2


def _check_planes(frame, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        y, u, v = (np.asarray(p) for p in frame)
    except (TypeError, ValueError):
        raise CodecError("a YUV 4:2:0 frame is a (Y, U, V) tuple of planes") from None
    ch = _chroma_shape(h, w)
    if y.shape != (h, w) or u.shape != ch or v.shape != ch or \
            not y.dtype == u.dtype == v.dtype == np.uint8:
        raise CodecError(f"frame planes {y.shape} {u.shape} {v.shape} ({y.dtype}) do not match "
                         f"{w}x{h} 8-bit 4:2:0")
    return y, u, v


def _check_rgb(frame, h: int, w: int) -> np.ndarray:
    a = np.asarray(frame)
    if a.shape != (h, w, 3) or a.dtype != np.uint8:
        raise CodecError(f"RGB frame of shape {a.shape} ({a.dtype}), expected {h}x{w}x3 uint8")
    return a


def _check_size(w: int, h: int, what: str) -> None:
    if not (1 <= w <= LIMITS["max_dimension"] and 1 <= h <= LIMITS["max_dimension"]) or \
            w * h > LIMITS["max_pixels"]:
        raise CodecError(f"{what}: frame size {w}x{h} is out of range (1..{LIMITS['max_dimension']}"
                         f" per side, {LIMITS['max_pixels']} pixels)")


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(width, height)``; anything else is a :class:`CodecError`."""
    w, sep, h = str(text).lower().partition("x")
    if not sep or not (w + h).isascii() or not w.isdigit() or not h.isdigit():
        raise CodecError(f"bad size {text!r}: expected WIDTHxHEIGHT, e.g. 1920x1080")
    _check_size(int(w), int(h), f"size {text!r}")
    return int(w), int(h)


def _fraction(text, what: str) -> Fraction:
    try:
        f = Fraction(str(text).replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        raise CodecError(f"bad {what} {text!r}: expected a number or N/D") from None
    if f <= 0 or f > 10000:
        raise CodecError(f"bad {what} {text!r}: out of range")
    return f


# ------------------------------------------------------------------------------- whole clips
@dataclass
class Video:
    """An 8-bit YUV 4:2:0 sequence in memory: ``y`` is ``T x H x W``, ``u`` and ``v`` are
    ``T x H/2 x W/2``; ``full_range`` is True for JPEG-range (yuvj) video."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    fps: Fraction
    full_range: bool = False

    @property
    def frames(self) -> int:
        return self.y.shape[0]

    @property
    def width(self) -> int:
        return self.y.shape[2]

    @property
    def height(self) -> int:
        return self.y.shape[1]


def _plane(frame, i: int, h: int, w: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:h, :w]


def _av_planes(f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A PyAV frame as copied ``(Y, U, V)`` 4:2:0 planes (converted if in another format)."""
    if f.format.name not in ("yuv420p", "yuvj420p"):
        f = f.reformat(format="yuv420p")
    h, w = f.height, f.width
    ch, cw = _chroma_shape(h, w)
    return (_plane(f, 0, h, w).copy(), _plane(f, 1, ch, cw).copy(), _plane(f, 2, ch, cw).copy())


def _av_full_range(f) -> bool:
    return f.format.name.startswith("yuvj") or int(f.color_range) == 2


def frames_to_video(frames, fps: Fraction, full_range: bool | None = None) -> Video:
    """Stack decoded PyAV frames into a :class:`Video` (planes copied as they are, no range
    conversion; frames in another pixel format are converted to yuv420p)."""
    ys, us, vs = [], [], []
    fr = full_range
    for f in frames:
        if fr is None:
            fr = _av_full_range(f)
        y, u, v = _av_planes(f)
        ys.append(y)
        us.append(u)
        vs.append(v)
    if not ys:
        raise CodecError("no frames decoded")
    return Video(np.stack(ys), np.stack(us), np.stack(vs), Fraction(fps), bool(fr))


def read_clip(path, max_frames: int | None = 96) -> Video:
    """The first ``max_frames`` frames of a clip (all with ``None``) as one :class:`Video`."""
    with open_video(path) as src:
        ys, us, vs = [], [], []
        for y, u, v in src.frames("yuv420", max_frames):
            ys.append(y)
            us.append(u)
            vs.append(v)
        if not ys:
            raise CodecError(f"{path}: no frames decoded")
        return Video(np.stack(ys), np.stack(us), np.stack(vs), src.fps, src.full_range)


# ---------------------------------------------------------------------------------- sources
class VideoSource:
    """A lazily read clip. Attributes: ``width``, ``height``, ``fps`` (Fraction),
    ``full_range``, ``native`` (``"yuv420"`` or ``"rgb"``: the form frames are stored in),
    ``frame_count`` (``None`` when the container does not say) and ``name``."""

    width: int
    height: int
    fps: Fraction
    full_range: bool = False
    native: str = "yuv420"
    frame_count: int | None = None
    name: str = ""

    def _native_frames(self) -> Iterator:
        raise NotImplementedError

    def frames(self, fmt: str = "yuv420", max_frames: int | None = None) -> Iterator:
        """Yield frames as ``(Y, U, V)`` planes (``fmt="yuv420"``) or ``H x W x 3`` RGB
        (``fmt="rgb"``), at most ``max_frames`` of them (all with ``None`` or 0)."""
        if fmt not in ("yuv420", "rgb"):
            raise ValueError(f"fmt must be 'yuv420' or 'rgb', not {fmt!r}")
        if max_frames is not None and max_frames < 0:
            raise ValueError("max_frames must be >= 0")
        n = 0
        for f in self._native_frames():
            if fmt != self.native:
                f = yuv420_to_rgb(f[0], f[1], f[2], self.full_range) if fmt == "rgb" else \
                    rgb_to_yuv420(f, self.full_range)
            n += 1
            yield f
            if max_frames and n >= max_frames:
                return

    def __iter__(self) -> Iterator:
        return self.frames()

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _read_full(f: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        b = f.read(left)
        if not b:
            break
        parts.append(b)
        left -= len(b)
    return b"".join(parts)


class _StreamSource(VideoSource):
    """Frames of fixed byte size from a binary stream (y4m and raw YUV)."""

    def __init__(self, f: BinaryIO, name: str, owns: bool):
        self._f, self.name, self._owns = f, name, owns

    def _split(self, raw: bytes):
        h, w = self.height, self.width
        ch, cw = _chroma_shape(h, w)
        a = np.frombuffer(raw, np.uint8)
        n = h * w
        return (a[:n].reshape(h, w).copy(), a[n:n + ch * cw].reshape(ch, cw).copy(),
                a[n + ch * cw:].reshape(ch, cw).copy())

    def _frame_bytes(self) -> int:
        ch, cw = _chroma_shape(self.height, self.width)
        return self.height * self.width + 2 * ch * cw

    def close(self) -> None:
        if self._owns:
            self._f.close()


class _Y4MSource(_StreamSource):
    def __init__(self, f: BinaryIO, name: str, owns: bool = False, params: dict | None = None):
        super().__init__(f, name, owns)
        p = params if params is not None else _y4m_header(f, name)
        if "W" not in p or "H" not in p:
            raise CodecError(f"{name}: y4m header lacks W or H")
        try:
            self.width, self.height = int(p["W"]), int(p["H"])
        except ValueError:
            raise CodecError(f"{name}: bad y4m size W{p['W']} H{p['H']}") from None
        _check_size(self.width, self.height, name)
        chroma = p.get("C", "420jpeg")
        if chroma not in _Y4M_420:
            raise CodecError(f"{name}: y4m chroma format C{chroma} is not supported here "
                             f"(8-bit 4:2:0 is: {', '.join('C' + c for c in _Y4M_420)})")
        self.fps = _fraction(p.get("F", "25:1"), f"{name}: y4m frame rate")
        rng = p.get("XCOLORRANGE", "LIMITED").upper()
        if rng not in ("FULL", "LIMITED"):
            raise CodecError(f"{name}: unknown y4m XCOLORRANGE={rng}")
        self.full_range = rng == "FULL"
        if f.seekable():
            try:
                here = f.tell()
                size = f.seek(0, io.SEEK_END) - here
                f.seek(here)
                self.frame_count = size // (self._frame_bytes() + 6)  # "FRAME\n"
            except OSError:
                pass

    def _native_frames(self):
        n, size = 0, self._frame_bytes()
        while True:
            line = self._f.readline(_MAX_HEADER)
            if not line:
                if n == 0:
                    raise CodecError(f"{self.name}: y4m has no frames")
                return
            if not line.startswith(b"FRAME") or not line.endswith(b"\n"):
                raise CodecError(f"{self.name}: bad y4m frame header before frame {n}")
            raw = _read_full(self._f, size)
            if len(raw) != size:
                raise CodecError(f"{self.name}: truncated y4m: frame {n} has {len(raw)} of "
                                 f"{size} bytes")
            n += 1
            yield self._split(raw)


def _y4m_header(f: BinaryIO, name: str) -> dict:
    line = f.readline(_MAX_HEADER)
    if not line.startswith(Y4M_SIGNATURE + b" ") or not line.endswith(b"\n"):
        raise CodecError(f"{name}: not a y4m file (bad or overlong YUV4MPEG2 header)")
    params = {}
    for tok in line[len(Y4M_SIGNATURE):].decode("ascii", "replace").split():
        if tok.startswith("X"):
            k, _, v = tok[1:].partition("=")
            params["X" + k] = v
        else:
            params[tok[0]] = tok[1:]
    return params


class _RawSource(_StreamSource):
    def __init__(self, f: BinaryIO, name: str, size: tuple[int, int], fps, owns: bool = False,
                 full_range: bool = False):
        super().__init__(f, name, owns)
        self.width, self.height = size
        self.fps, self.full_range = Fraction(fps), full_range
        fb = self._frame_bytes()
        if f.seekable():
            here = f.tell()
            total = f.seek(0, io.SEEK_END) - here
            f.seek(here)
            if total % fb or not total:
                raise CodecError(f"{name}: {total} bytes is not a whole number of "
                                 f"{self.width}x{self.height} yuv420p frames ({fb} bytes each): "
                                 f"check --size")
            self.frame_count = total // fb

    def _native_frames(self):
        size, n = self._frame_bytes(), 0
        while True:
            raw = _read_full(self._f, size)
            if not raw:
                if not n:
                    raise CodecError(f"{self.name}: no frames (empty input)")
                return
            if len(raw) != size:
                raise CodecError(f"{self.name}: truncated raw YUV: {len(raw)} bytes left after "
                                 f"frame {n}, not a whole {self.width}x{self.height} frame "
                                 f"(check --size)")
            n += 1
            yield self._split(raw)


class _AVSource(VideoSource):
    """Anything PyAV decodes; one decoded frame held at a time."""

    def __init__(self, src, name: str):
        import av

        self.name = name
        try:
            self._c = av.open(src, "r")
        except (av.error.FFmpegError, ValueError) as e:
            raise CodecError(f"{name}: cannot open the video: {e}") from None
        try:
            if not self._c.streams.video:
                raise CodecError(f"{name}: no video stream")
            self._s = s = self._c.streams.video[0]
            s.thread_type = "AUTO"
            self.width, self.height = s.codec_context.width, s.codec_context.height
            if not self.width or not self.height:
                raise CodecError(f"{name}: the video stream has no frame size")
            _check_size(self.width, self.height, name)
            self.fps = Fraction(s.average_rate or s.guessed_rate or 25)
            fmt = s.codec_context.pix_fmt or ""
            self.native = "rgb" if fmt in _RGB_FORMATS else "yuv420"
            self.full_range = fmt.startswith("yuvj") or int(s.codec_context.color_range) == 2
            self.frame_count = int(s.frames) or None
        except BaseException:
            self._c.close()
            raise

    def _native_frames(self):
        import av

        n = 0
        try:
            for f in self._c.decode(self._s):
                if (f.width, f.height) != (self.width, self.height):
                    raise CodecError(f"{self.name}: frame {n} is {f.width}x{f.height}, the "
                                     f"stream started at {self.width}x{self.height} (size "
                                     f"changes are not supported)")
                n += 1
                yield f.to_ndarray(format="rgb24") if self.native == "rgb" else _av_planes(f)
        except av.error.FFmpegError as e:
            raise CodecError(f"{self.name}: cannot decode frame {n}: {e}") from None
        if not n:
            raise CodecError(f"{self.name}: no frames decoded")

    def close(self) -> None:
        self._c.close()


def is_video_path(path) -> bool:
    """Whether a path names a video by its extension (``.yuv`` included)."""
    return Path(str(path)).suffix.lower() in VIDEO_EXTS + RAW_EXTS


def open_video(src, *, size=None, pix_fmt: str = "yuv420p", fps=None,
               full_range: bool = False) -> VideoSource:
    """Open a clip for lazy reading: a path, ``-`` (stdin) or a readable binary file object.

    ``size`` (``(w, h)`` or ``"WxH"``) makes the input raw planar YUV of ``pix_fmt``
    (``yuv420p``), at ``fps`` (default 25) and in limited range unless ``full_range``;
    without it, ``.yuv`` files need a size, y4m is read here and the rest by PyAV. ``fps``
    also overrides the rate a container states."""
    name = "<stdin>" if str(src) == "-" else getattr(src, "name", None) or str(src)
    name = str(name)
    is_path = isinstance(src, (str, os.PathLike)) and str(src) != "-"
    if pix_fmt not in ("yuv420p", "i420"):
        raise CodecError(f"unsupported --pix-fmt {pix_fmt!r} (yuv420p is supported)")
    if size is not None:
        size = parse_size(size) if isinstance(size, str) else tuple(size)
        _check_size(size[0], size[1], name)
    elif is_path and Path(src).suffix.lower() == ".yuv":
        raise CodecError(f"{name}: raw YUV needs the frame size (--size WxH)")
    rate = _fraction(fps, "frame rate") if fps is not None else None
    if is_path:
        p = Path(src)
        if not p.exists():
            raise CodecError(f"{name}: no such file")
        if p.is_dir():
            raise CodecError(f"{name}: is a directory")
    out: VideoSource
    if size is not None or (is_path and Path(src).suffix.lower() == ".y4m") or not is_path:
        f = open(src, "rb") if is_path else (sys.stdin.buffer if str(src) == "-" else src)
        try:
            if size is not None:
                out = _RawSource(f, name, size, rate or 25, owns=is_path, full_range=full_range)
            else:
                head = f.peek(len(Y4M_SIGNATURE))[:len(Y4M_SIGNATURE)] if hasattr(f, "peek") \
                    else None
                if head is not None and head != Y4M_SIGNATURE and not is_path:
                    raise CodecError(f"{name}: a video on a stream must be y4m (or raw YUV with "
                                     f"--size)")
                params = _y4m_header(f, name)
                if params.get("C", "420jpeg") not in _Y4M_420 and is_path:
                    f.close()
                    out = _AVSource(str(src), name)
                else:
                    out = _Y4MSource(f, name, owns=is_path, params=params)
        except BaseException:
            if is_path and not f.closed:
                f.close()
            raise
    else:
        out = _AVSource(str(src), name)
    if rate is not None:
        out.fps = rate
    return out


# ------------------------------------------------------------------------------------ sinks
def output_kind(path) -> str:
    """What :func:`open_writer` writes to ``path``: ``y4m``, ``yuv``, ``mkv``, ``mp4`` or
    ``png`` (a directory of PNG frames: an existing directory, a path ending in ``/`` or a
    path without an extension)."""
    s = str(path)
    if s == "-":
        return "y4m"
    p = Path(s)
    ext = p.suffix.lower()
    if s.endswith(("/", os.sep)) or p.is_dir() or not ext:
        return "png"
    kinds = {".y4m": "y4m", ".yuv": "yuv", ".mkv": "mkv", ".mp4": "mp4"}
    if ext not in kinds:
        raise CodecError(f"{s}: cannot write video as {ext} (use .y4m, .yuv, .mkv (FFV1), "
                         f".mp4 (H.264 lossless) or a directory for PNG frames)")
    return kinds[ext]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _parent_dir(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CodecError(f"{parent}: no such directory")
    return parent


class AtomicFile:
    """A binary output written under a temporary name beside ``path`` and renamed over it by
    :meth:`commit` (a reader never sees half a file); :meth:`discard` drops it. ``-`` is
    stdout. An existing ``path`` is refused unless ``force``. As a context manager it commits
    on success and discards on an exception."""

    def __init__(self, path, force: bool = False):
        self.path: Path | None = None if str(path) == "-" else Path(path)
        self.tmp: Path | None = None
        if self.path is None:
            self.file = sys.stdout.buffer
            return
        if self.path.is_dir():
            raise CodecError(f"{self.path}: is a directory")
        if self.path.exists() and not force:
            raise CodecError(f"{self.path}: already exists (use --force to overwrite)")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                       dir=_parent_dir(self.path))
        except PermissionError:
            raise CodecError(f"{self.path.parent}: permission denied") from None
        self.tmp, self.file = Path(tmp), os.fdopen(fd, "w+b")

    def commit(self) -> None:
        self.file.flush()
        if self.tmp is not None:
            try:
                os.fsync(self.file.fileno())
                self.file.close()
                os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600
                os.replace(self.tmp, self.path)  # type: ignore[arg-type]  # set with path
            except BaseException:
                self.discard()
                raise

    def discard(self) -> None:
        if self.tmp is not None:
            self.file.close()
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


class VideoSink:
    """Writes frames to a file or directory, atomically (see :func:`open_writer`)."""

    def __init__(self, dst, width: int, height: int, fps, fmt: str, full_range: bool,
                 force: bool):
        if fmt not in ("yuv420", "rgb"):
            raise ValueError(f"fmt must be 'yuv420' or 'rgb', not {fmt!r}")
        _check_size(width, height, str(dst))
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.fmt, self.full_range, self.count = fmt, full_range, 0
        self._done = False
        self._open(dst, force)

    def _open(self, dst, force: bool) -> None:
        self._out = AtomicFile(dst, force)
        self._f = self._out.file

    def _frame(self, frame, want: str):
        """The frame in the form ``want``, converted (BT.601) when it was given in the other."""
        h, w = self.height, self.width
        if self.fmt == "rgb":
            a = _check_rgb(frame, h, w)
            return a if want == "rgb" else rgb_to_yuv420(a, self.full_range)
        y, u, v = _check_planes(frame, h, w)
        return (y, u, v) if want == "yuv420" else yuv420_to_rgb(y, u, v, self.full_range)

    def write(self, frame) -> None:
        """Append one frame, in the form given to :func:`open_writer`."""
        self._write(frame)
        self.count += 1

    def _write(self, frame) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        pass

    def close(self) -> None:
        """Finish the output and move it into place."""
        if self._done:
            return
        self._done = True
        try:
            self._finish()
        except BaseException:
            self._out.discard()
            raise
        self._out.commit()

    def abort(self) -> None:
        """Drop what was written (the output is left as it was)."""
        if not self._done:
            self._done = True
            try:
                self._finish()
            except Exception:  # noqa: BLE001  (we are dropping the output anyway)
                pass
            self._out.discard()

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _PlanesSink(VideoSink):
    """y4m and raw YUV: planes written straight to the file (or stdout)."""

    def __init__(self, dst, *a, y4m: bool = True, **kw):
        super().__init__(dst, *a, **kw)
        self._y4m = y4m
        if y4m:
            n, d = self.fps.numerator, self.fps.denominator
            rng = " XCOLORRANGE=FULL" if self.full_range else ""
            self._f.write(f"YUV4MPEG2 W{self.width} H{self.height} F{n}:{d} Ip A1:1 C420jpeg "
                          f"XYSCSS=420JPEG{rng}\n".encode())

    def _write(self, frame) -> None:
        y, u, v = self._frame(frame, "yuv420")
        if self._y4m:
            self._f.write(b"FRAME\n")
        for p in (y, u, v):
            self._f.write(np.ascontiguousarray(p).tobytes())


class _AVSink(VideoSink):
    """Lossless mkv (FFV1) or mp4 (H.264 qp 0) through PyAV."""

    def __init__(self, dst, *a, kind: str, **kw):
        import av

        if str(dst) == "-":
            raise CodecError(f"cannot write {kind} to stdout (use y4m)")
        super().__init__(dst, *a, **kw)
        rgb = self.fmt == "rgb"
        codec, pix, opts = {
            ("mkv", False): ("ffv1", "yuv420p", {}), ("mkv", True): ("ffv1", "bgr0", {}),
            ("mp4", False): ("libx264", "yuv420p", {"qp": "0", "preset": "medium"}),
            ("mp4", True): ("libx264rgb", "rgb24", {"qp": "0", "preset": "medium"})}[kind, rgb]
        try:
            self._c = av.open(self._f, "w", format="matroska" if kind == "mkv" else "mp4")
            s: Any = self._c.add_stream(codec, rate=self.fps)
            self._s = s
        except (av.error.FFmpegError, ValueError) as e:
            self._out.discard()
            raise CodecError(f"this PyAV/FFmpeg cannot write {kind} with {codec}: {e}") from None
        s.width, s.height, s.pix_fmt, s.options = self.width, self.height, pix, opts
        s.time_base = 1 / self.fps
        if self.full_range and not rgb:
            s.codec_context.color_range = 2
        self._rgb = rgb

    def _write(self, frame) -> None:
        import av

        if self._rgb:
            f = av.VideoFrame.from_ndarray(self._frame(frame, "rgb"), format="rgb24")
        else:
            y, u, v = self._frame(frame, "yuv420")
            f = av.VideoFrame(self.width, self.height, "yuv420p")
            for i, p in enumerate((y, u, v)):
                buf = np.zeros((p.shape[0], f.planes[i].line_size), np.uint8)
                buf[:, :p.shape[1]] = p
                f.planes[i].update(buf)  # type: ignore[arg-type]  # any buffer works
            if self.full_range:
                f.color_range = 2
        f.pts = self.count
        for pkt in self._s.encode(f):
            self._c.mux(pkt)

    def _finish(self) -> None:
        try:
            for pkt in self._s.encode(None):
                self._c.mux(pkt)
        finally:
            self._c.close()


class _PNGSink(VideoSink):
    """A directory of ``000000.png``, ``000001.png``, ... (RGB; YUV frames converted),
    filled under a temporary name and renamed into place (or, with ``force`` and an existing
    non-empty directory, its files moved in one by one)."""

    def _open(self, dst, force: bool) -> None:
        d = self._dst = Path(dst)
        if d.exists() and not d.is_dir():
            raise CodecError(f"{d}: exists and is not a directory")
        self._into_existing = d.is_dir() and any(d.iterdir())
        if self._into_existing and not force:
            raise CodecError(f"{d}: directory is not empty (use --force to write into it)")
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".tmp",
                                          dir=_parent_dir(d)))
        self._out = self  # type: ignore[assignment]  # commit / discard below

    def _write(self, frame) -> None:
        from PIL import Image

        Image.fromarray(self._frame(frame, "rgb")).save(self._tmp / f"{self.count:06d}.png")

    def commit(self) -> None:
        umask = _umask()
        for f in self._tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if self._into_existing:
            for f in sorted(self._tmp.iterdir()):
                os.replace(f, self._dst / f.name)
            self._tmp.rmdir()
            return
        if self._dst.is_dir():
            self._dst.rmdir()  # empty
        os.chmod(self._tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        os.replace(self._tmp, self._dst)

    def discard(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def open_writer(dst, width: int, height: int, fps=Fraction(25), fmt: str = "yuv420",
                full_range: bool = False, force: bool = False) -> VideoSink:
    """A sink for ``fmt`` frames (``"yuv420"``: ``(Y, U, V)`` planes; ``"rgb"``: ``H x W x 3``)
    at ``dst`` (a path or ``-``); the container follows :func:`output_kind`. Frames in the
    other form than the output stores are converted (BT.601, ``full_range`` as given): y4m and
    yuv store 4:2:0, PNG stores RGB, mkv/mp4 store either exactly."""
    kind = output_kind(dst)
    args = (dst, width, height, fps, fmt, full_range, force)
    if kind in ("y4m", "yuv"):
        return _PlanesSink(*args, y4m=kind == "y4m")
    if kind == "png":
        return _PNGSink(*args)
    return _AVSink(*args, kind=kind)
