"""codec.video_io: y4m / raw YUV / PyAV reading, lossless and PNG-folder writing, atomicity."""
import io
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from codec.errors import CodecError
from codec.video_io import (AtomicFile, open_video, open_writer, output_kind, parse_size,
                            read_clip, rgb_to_yuv420, yuv420_to_rgb)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "video"


def _yuv_frames(n=3, h=18, w=22, seed=0):
    rng = np.random.default_rng(seed)
    ch, cw = (h + 1) // 2, (w + 1) // 2
    return [(rng.integers(0, 256, (h, w), dtype=np.uint8),
             rng.integers(0, 256, (ch, cw), dtype=np.uint8),
             rng.integers(0, 256, (ch, cw), dtype=np.uint8)) for _ in range(n)]


def _rgb_frames(n=3, h=18, w=22, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(np.array_equal(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


class _Pipe(io.RawIOBase):
    """A non-seekable byte stream (like stdin on a pipe)."""

    def __init__(self, data: bytes):
        self._b = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buf):
        return self._b.readinto(buf)


def _pipe(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(_Pipe(data))


def _read(path, fmt="yuv420", **kw):
    with open_video(path, **kw) as src:
        return src, list(src.frames(fmt))


@pytest.mark.parametrize("h,w,full", [(18, 22, False), (17, 21, True)])
def test_y4m_round_trip_exact(tmp_path, h, w, full):
    frames = _yuv_frames(4, h, w)
    p = tmp_path / "a.y4m"
    with open_writer(p, w, h, Fraction(30000, 1001), full_range=full) as sink:
        for f in frames:
            sink.write(f)
    head = p.read_bytes()[:80]
    assert head.startswith(f"YUV4MPEG2 W{w} H{h} F30000:1001 ".encode())
    assert (b"XCOLORRANGE=FULL" in head) == full
    src, got = _read(p)
    assert (src.width, src.height, src.fps, src.full_range, src.frame_count) == \
        (w, h, Fraction(30000, 1001), full, 4)
    assert len(got) == 4 and all(_same(a, b) for a, b in zip(got, frames))
    # the same bytes through a (non-seekable) stream, with at most 2 frames
    with open_video(_pipe(p.read_bytes())) as s:
        assert [_same(a, b) for a, b in zip(s.frames(max_frames=2), frames)] == [True, True]


def test_y4m_header_variants_and_errors(tmp_path):
    y, u, v = _yuv_frames(1, 4, 4)[0]
    body = b"FRAME Ixyz\n" + y.tobytes() + u.tobytes() + v.tobytes()
    p = tmp_path / "b.y4m"
    p.write_bytes(b"YUV4MPEG2 W4 H4 F25:1 Ip A0:0 C420mpeg2 XYSCSS=420MPEG2 XCOLORRANGE=LIMITED\n"
                  + body)
    src, got = _read(p)
    assert src.fps == 25 and not src.full_range and _same(got[0], (y, u, v))
    p.write_bytes(b"YUV4MPEG2 W4 H4 F25:1\n" + body[:-3])
    with pytest.raises(CodecError, match="truncated y4m"):
        _read(p)
    p.write_bytes(b"YUV4MPEG2 W4 H4 F25:1 C420p10\n" + body)
    with pytest.raises(CodecError, match="no frames|cannot"):  # 10-bit goes to PyAV
        _read(p)
    p.write_bytes(b"YUV4MPEG2 W4 H4 F25:1\n")  # a header, no frame
    with pytest.raises(CodecError, match="no frames"):
        _read(p)
    p.write_bytes(b"NOTY4M W4\n")
    with pytest.raises(CodecError, match="not a y4m"):
        _read(p)
    with pytest.raises(CodecError, match="must be y4m"):
        open_video(_pipe(b"\x89PNG\r\n\x1a\n..."))


def test_raw_yuv_reading(tmp_path):
    frames = _yuv_frames(3, 6, 8)
    raw = b"".join(p.tobytes() for f in frames for p in f)
    p = tmp_path / "c.yuv"
    p.write_bytes(raw)
    src, got = _read(p, size="8x6", fps="30000/1001")
    assert src.frame_count == 3 and src.fps == Fraction(30000, 1001)
    assert all(_same(a, b) for a, b in zip(got, frames))
    with pytest.raises(CodecError, match="needs the frame size"):
        open_video(p)
    with pytest.raises(CodecError, match="not a whole number"):
        open_video(p, size=(10, 6))
    for bad in ("8by6", "\u00b2x2", "8x-6"):  # '²' passes str.isdigit, not int()
        with pytest.raises(CodecError, match="bad size"):
            parse_size(bad)
    with pytest.raises(CodecError, match="out of range"):
        parse_size("0x6")
    with pytest.raises(CodecError, match="pix-fmt"):
        open_video(p, size=(8, 6), pix_fmt="nv12")
    s = open_video(_pipe(raw[:-5]), size=(8, 6))  # a stream: found at the end
    with pytest.raises(CodecError, match="truncated raw YUV"):
        list(s)


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
@pytest.mark.parametrize("fmt", ["yuv420", "rgb"])
def test_lossless_containers_round_trip_exact(tmp_path, ext, fmt):
    frames = _yuv_frames(3, 16, 24) if fmt == "yuv420" else _rgb_frames(3, 16, 24)
    p = tmp_path / f"d.{ext}"
    with open_writer(p, 24, 16, 12, fmt) as sink:
        for f in frames:
            sink.write(f)
    src, got = _read(p, fmt)
    assert src.native == fmt and src.fps == 12 and (src.width, src.height) == (24, 16)
    assert len(got) == 3 and all(_same(a, b) for a, b in zip(got, frames))
    assert sorted(os.listdir(tmp_path)) == [f"d.{ext}"]


def test_png_folder_and_conversions(tmp_path):
    from PIL import Image

    frames = _rgb_frames(3, 10, 12)
    d = tmp_path / "frames"
    with open_writer(d, 12, 10, 25, "rgb") as sink:
        for f in frames:
            sink.write(f)
    assert sorted(os.listdir(d)) == ["000000.png", "000001.png", "000002.png"]
    assert all(np.array_equal(np.asarray(Image.open(d / f"{i:06d}.png")), f)
               for i, f in enumerate(frames))
    with pytest.raises(CodecError, match="not empty"):
        open_writer(d, 12, 10, 25, "rgb")
    assert output_kind(tmp_path / "x.y4m") == "y4m" and output_kind("-") == "y4m"
    with pytest.raises(CodecError, match="cannot write video as .gif"):
        output_kind(tmp_path / "x.gif")
    # BT.601 round trip of a smooth image stays close (chroma subsampling aside)
    yy, xx = np.mgrid[0:32, 0:48]
    img = np.stack([xx * 2, yy * 3, 255 - xx * 2], -1).clip(0, 255).astype(np.uint8)
    for full in (False, True):
        back = yuv420_to_rgb(*rgb_to_yuv420(img, full), full)
        assert np.abs(back.astype(int) - img).mean() < 2.0


def test_writes_are_atomic_and_safe(tmp_path):
    p = tmp_path / "e.y4m"
    with pytest.raises(RuntimeError):
        with open_writer(p, 8, 6, 25) as sink:
            sink.write(_yuv_frames(1, 6, 8)[0])
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with open_writer(p, 8, 6, 25) as sink:
        sink.write(_yuv_frames(1, 6, 8)[0])
    with pytest.raises(CodecError, match="already exists"):
        open_writer(p, 8, 6, 25)
    with pytest.raises(CodecError, match="do not match"):
        with open_writer(tmp_path / "f.mkv", 8, 6, 25) as sink:
            sink.write(_yuv_frames(1, 6, 10)[0])
    with pytest.raises(CodecError, match="no such directory"):
        AtomicFile(tmp_path / "missing" / "x.ncz")
    assert sorted(os.listdir(tmp_path)) == ["e.y4m"]


def test_pyav_reading_and_limits(tmp_path):
    frames = _yuv_frames(5, 16, 16)
    p = tmp_path / "g.mkv"
    with open_writer(p, 16, 16, 10) as sink:
        for f in frames:
            sink.write(f)
    v = read_clip(p, 3)
    assert v.frames == 3 and v.fps == 10 and np.array_equal(v.y[2], frames[2][0])
    src, rgb = _read(p, "rgb")
    assert rgb[0].shape == (16, 16, 3) and np.array_equal(
        rgb[0], yuv420_to_rgb(*frames[0], False))
    bad = tmp_path / "h.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CodecError, match="cannot open"):
        open_video(bad)
    with pytest.raises(CodecError, match="no such file"):
        open_video(tmp_path / "missing.mp4")


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/datasets/video")
def test_shared_clips_match_pyav():
    """The y4m reader gives what FFmpeg gives; PyAV clips read as before (asl: 640x480,
    full range)."""
    import av

    y4m = SHARED / "raw" / "CiscoVT2people_160x96_6fps.y4m"
    ours = read_clip(y4m, None)
    with av.open(str(y4m)) as c:
        ref = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    assert ours.frames == len(ref) == 5 and ours.fps == 6
    h = ours.height
    assert all(np.array_equal(ours.y[t], r[:h]) for t, r in enumerate(ref))
    assert all(np.array_equal(ours.u[t].ravel(), r[h:].ravel()[:ours.u[t].size])
               for t, r in enumerate(ref))
    asl = read_clip(SHARED / "compressed" / "asl_book.mkv", 4)
    assert (asl.width, asl.height, asl.frames, asl.full_range) == (640, 480, 4, True)
