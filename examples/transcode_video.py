"""PyAV transcoding: any clip -> ``.ncz`` (the learned video codec) -> frames -> a video file.

    python examples/transcode_video.py [CLIP] [--frames N] [--quality Q] [--out DIR]

Reads the clip with ``codec.video_io`` (PyAV underneath) or, where that module is absent,
with PyAV directly; codes the first frames with :class:`codec.VideoEncoder`, decodes them
back with :class:`codec.VideoDecoder` and writes them as a lossless FFV1 ``.mkv``. Without a
clip it uses the Xiph "carphone" clip of ``../shared/datasets`` when that folder exists.
Exits with status 2 when this build has no video codec or no clip is at hand.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import codec
from codec.metrics import bpp, psnr

CLIP = Path(__file__).resolve().parents[2] / "shared/datasets/video/compressed/carphone_pristine.mp4"


def read_rgb_frames(path, n):
    """The first ``n`` frames as ``H x W x 3`` uint8 arrays, and the frame rate."""
    try:
        from codec.video_io import open_video
    except ImportError:
        open_video = None
    if open_video is not None:
        with open_video(path) as src:
            return list(src.frames("rgb", max_frames=n)), src.fps
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == n:
                break
        return frames, stream.average_rate


def write_mkv(path, frames, fps):
    """Frames to a lossless FFV1 Matroska file with PyAV."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
        for a in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")))
        container.mux(stream.encode())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clip", nargs="?", default=str(CLIP))
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--quality", type=float, default=1.5)
    p.add_argument("--out", default=tempfile.mkdtemp(prefix="ncz-video-"))
    args = p.parse_args(argv)
    try:
        VideoEncoder, VideoDecoder = codec.VideoEncoder, codec.VideoDecoder
    except AttributeError as e:
        print(f"skipped: {e}")
        return 2
    if not Path(args.clip).exists():
        print(f"skipped: no clip at {args.clip}")
        return 2

    frames, fps = read_rgb_frames(args.clip, args.frames)
    h, w = frames[0].shape[:2]
    ncz = Path(args.out) / "clip.ncz"
    with open(ncz, "wb") as f, VideoEncoder(f, width=w, height=h, fmt="rgb",
                                            quality=args.quality, fps=fps) as enc:
        recon = [enc.encode(a) for a in frames]   # each: the decoder's exact frame

    with open(ncz, "rb") as f:
        dec = VideoDecoder(f)
        print(f"{ncz}: {dec.header.width}x{dec.header.height}, "
              f"{dec.header.frame_count} frames at {fps} fps")
        decoded = list(dec)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, recon)), "decoder != encoder"
    size = ncz.stat().st_size
    print(f"{bpp(size, w * h * len(frames)):.3f} bpp, mean PSNR "
          f"{np.mean([psnr(a, b) for a, b in zip(frames, decoded)]):.2f} dB")
    write_mkv(Path(args.out) / "decoded.mkv", decoded, fps)
    print(f"wrote {Path(args.out) / 'decoded.mkv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
