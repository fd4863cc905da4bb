"""Inputs of the evaluation tools: image folders, video clips, the named data sets.

Images are evaluated as 8-bit RGB (``H x W x 3`` uint8): grey inputs are replicated to three
channels and an alpha channel is dropped. Videos are evaluated in 8-bit YUV 4:2:0 as
:func:`codec.video_io.read_clip` reads them (PyAV, or the exact y4m reader; :class:`Video`);
that decoded sequence IS the reference.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from codec.errors import CodecError
from codec.video_io import VIDEO_EXTS, Video, frames_to_video, read_clip, yuv420_to_rgb

# Video, read_clip, frames_to_video and yuv420_to_rgb live in codec.video_io (re-exported here)

__all__ = ["IMAGE_EXTS", "VIDEO_EXTS", "Video", "datasets_root", "resolve_inputs", "load_image",
           "read_clip", "frames_to_video", "yuv420_to_rgb", "file_digest"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".webp")


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
