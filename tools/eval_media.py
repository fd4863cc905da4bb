"""Inputs of the evaluation tools: image folders, video clips, the named data sets.

Images are evaluated as 8-bit RGB (``H x W x 3`` uint8): grey inputs are replicated to three
channels and an alpha channel is dropped. Videos are evaluated in 8-bit YUV 4:2:0 as PyAV
decodes them (:class:`Video`); that decoded sequence IS the reference.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from codec.errors import CodecError

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "Video", "datasets_root", "resolve_inputs", "load_image",
           "read_clip", "yuv420_to_rgb", "file_digest"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")
VIDEO_EXTS = (".mp4", ".mkv", ".y4m", ".avi", ".mov", ".webm", ".mpg", ".ts")


def datasets_root() -> Path:
    """``$NCODEC_DATASETS`` if set, else ``../shared/datasets`` beside the repository."""
    env = os.environ.get("NCODEC_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def resolve_inputs(specs: str | list[str]) -> tuple[str, list[Path]]:
    """``(kind, files)`` for folders, files or named sets (a folder name under
    :func:`datasets_root`, e.g. ``kodak`` or ``video``); kind is ``"image"`` or ``"video"``.

    Folders are searched recursively, their files sorted by path; a folder holding both
    kinds is evaluated as images. All inputs together must be of one kind.
    """
    kinds, files = set(), []
    for spec in [specs] if isinstance(specs, str) else specs:
        kind, found = _resolve(spec)
        kinds.add(kind)
        files += [f for f in found if f not in files]
    if len(kinds) > 1:
        raise CodecError("the inputs mix images and videos; evaluate them separately")
    return kinds.pop(), files


def _resolve(spec: str) -> tuple[str, list[Path]]:
    p = Path(spec)
    if not p.exists():
        named = datasets_root() / spec
        if not named.exists():
            raise CodecError(f"{spec}: no such file, folder or named data set "
                             f"(named sets live in {datasets_root()})")
        p = named
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    images = [f for f in files if f.suffix.lower() in IMAGE_EXTS]
    videos = [f for f in files if f.suffix.lower() in VIDEO_EXTS]
    if images:
        return "image", images
    if videos:
        return "video", videos
    raise CodecError(f"{spec}: no image ({', '.join(IMAGE_EXTS)}) or video "
                     f"({', '.join(VIDEO_EXTS)}) files found")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex), the identity of an input in the result cache."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_image(path: Path) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB (grey replicated, alpha dropped)."""
    from codec.io import read_bytes, read_image

    a = read_image(read_bytes(path))
    if a.dtype != np.uint8:
        raise CodecError(f"{path}: only 8-bit images can be evaluated (this one is {a.dtype})")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


@dataclass
class Video:
    """An 8-bit YUV 4:2:0 sequence: ``y`` is ``T x H x W``, ``u`` and ``v`` are
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


def frames_to_video(frames, fps: Fraction, full_range: bool | None = None) -> Video:
    """Stack decoded PyAV frames into a :class:`Video` (planes copied as they are, no range
    conversion; frames in another pixel format are converted to yuv420p)."""
    ys, us, vs = [], [], []
    fr = full_range
    for f in frames:
        if f.format.name not in ("yuv420p", "yuvj420p"):
            f = f.reformat(format="yuv420p")
        if fr is None:
            fr = f.format.name == "yuvj420p" or int(f.color_range) == 2
        h, w = f.height, f.width
        ys.append(_plane(f, 0, h, w))
        us.append(_plane(f, 1, (h + 1) // 2, (w + 1) // 2))
        vs.append(_plane(f, 2, (h + 1) // 2, (w + 1) // 2))
    if not ys:
        raise CodecError("no frames decoded")
    return Video(np.stack(ys), np.stack(us), np.stack(vs), Fraction(fps), bool(fr))


def read_clip(path: Path, max_frames: int | None = 96) -> Video:
    """The first ``max_frames`` frames of a clip as PyAV (FFmpeg) decodes them."""
    import av

    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            fps = stream.average_rate or stream.guessed_rate or Fraction(25)
            frames = []
            for f in c.decode(stream):
                frames.append(f)
                if max_frames and len(frames) >= max_frames:
                    break
            return frames_to_video(frames, Fraction(fps))
    except av.error.FFmpegError as e:
        raise CodecError(f"{path}: cannot decode the video: {e}") from None


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
