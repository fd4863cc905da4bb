"""``ncodec``: encode, decode and inspect ncodec files; further subcommands plug in.

Exit codes: 0 success, 1 bad input (one-line message on stderr, no traceback), 2 usage error.
``-`` stands for stdin/stdout. Outputs are written atomically and never replace an existing
file unless ``--force`` is given, and never the input.

Images and videos go through the same two commands: ``encode`` tells a video by its extension
(``.mp4``, ``.mkv``, ``.y4m``, ``.yuv``, ...), by ``--size`` (raw YUV) or by a y4m signature
on stdin; ``decode`` follows the stream kind in the file's header. Several inputs or a folder
are coded as a batch into ``-o DIR`` (``-j N`` worker processes).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import sys
from pathlib import Path

from bitstream import ContainerReader, FormatError, StreamKind
from codec.errors import CodecError

#: modules that add subcommands; each exposes ``register(subparsers)`` and sets ``func``.
SUBCOMMANDS: tuple[str, ...] = (
    "tools.evaluate",
    "tools.bench",
    "tools.mpq",
)

#: options of encode/decode that the per-file work needs (sent to worker processes)
_JOB_OPTIONS = ("quality", "bpp", "psnr", "lossless", "effort", "force", "intra_period",
                "no_adaptive_intra", "no_skip", "no_copy", "no_residual", "refresh", "rgb", "size", "pix_fmt",
                "fps", "frames", "device", "quiet")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ncodec")
    except PackageNotFoundError:
        return "unknown (not installed)"


_CODECS: dict = {}  #: codec objects of this process, by (kind, device)


def _check_device(device: str | None) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CodecError(f"--device cuda: no CUDA device is available here (torch "
                             f"{torch.__version__}); use --device cpu")


def _with_device(cls, device: str | None, what: str, *args, **kw):
    """``cls(*args, **kw)``, given ``device=`` when asked for and the class takes it."""
    if device:
        if "device" in inspect.signature(cls).parameters:
            kw["device"] = device
        elif device != "cpu":
            raise CodecError(f"the {what} codec runs on the CPU only (no --device {device})")
    return cls(*args, **kw)


def _codec_for(kind: StreamKind, device: str | None = None):
    """The codec object for a stream kind (imported lazily: torch loads only when needed),
    made once per process."""
    modules = {StreamKind.IMAGE: ("codec.image", "ImageCodec"),
               StreamKind.LOSSLESS: ("codec.lossless", "LosslessCodec")}
    if kind not in modules:
        raise CodecError(f"this build of ncodec cannot code {kind.name.lower()} streams")
    if (kind, device) not in _CODECS:
        _check_device(device)
        mod, cls = modules[kind]
        _CODECS[kind, device] = _with_device(getattr(importlib.import_module(mod), cls),
                                             device, kind.name.lower())
    return _CODECS[kind, device]


def _video_module():
    try:
        return importlib.import_module("codec.video")
    except ImportError as e:
        raise CodecError(f"this build of ncodec has no video codec ({e})") from None


def _default_output(inp: str, suffix: str) -> str:
    if inp == "-":
        return "-"
    return str(Path(inp).with_suffix(suffix))


def _refuse_tty(out: str) -> None:
    if out == "-" and sys.stdout.isatty():
        raise CodecError("refusing to write binary data to a terminal (use -o FILE)")


def _refuse_input(out: str, inp: str) -> None:
    if out != "-" and inp != "-" and Path(out).resolve() == Path(inp).resolve():
        raise CodecError(f"{out}: output would overwrite the input")


def _bar(o: dict, total, desc: str, unit: str):
    """A tqdm bar on stderr; off with ``--quiet`` and when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=True if o.get("quiet") else None, dynamic_ncols=True)


def _is_video_input(inp: str, o: dict) -> bool:
    from codec.video_io import Y4M_SIGNATURE, is_video_path

    if o.get("size"):
        return True
    if inp == "-":
        peek = getattr(sys.stdin.buffer, "peek", None)
        return bool(peek) and peek(len(Y4M_SIGNATURE))[:len(Y4M_SIGNATURE)] == Y4M_SIGNATURE
    return is_video_path(inp)


# ------------------------------------------------------------------------- per-file work
def encode_file(inp: str, out: str, o: dict, progress: bool = True) -> None:
    """Encode one image or video file ``inp`` (or ``-``) to ``out`` (or ``-``)."""
    _refuse_input(out, inp)
    if _is_video_input(inp, o):
        return _encode_video(inp, out, o, progress)
    for k in ("intra_period", "refresh", "frames", "fps"):
        if o.get(k) is not None:
            raise CodecError(f"--{k.replace('_', '-')} applies to videos; {inp} is an image")
    for k in ("rgb", "no_adaptive_intra", "no_skip", "no_copy", "no_residual"):
        if o.get(k):
            raise CodecError(f"--{k.replace('_', '-')} applies to videos; {inp} is an image")
    from codec.io import read_bytes, read_image, write_atomic

    raw = read_bytes(inp)  # its errors name the file already
    try:
        image = read_image(raw)
    except CodecError as e:
        raise CodecError(_named(inp, e)) from None
    if o.get("lossless"):
        data = _codec_for(StreamKind.LOSSLESS, o.get("device")).encode(image)
    else:
        if image.dtype != "uint8" or image.shape[2] != 3:
            raise CodecError(f"the learned codec takes 8-bit RGB images; this one has "
                             f"{image.shape[2]} channel(s) of {image.dtype} (try --lossless)")
        opts = {k: o[k] for k in ("quality", "bpp", "psnr") if o.get(k) is not None}
        data = _codec_for(StreamKind.IMAGE, o.get("device")).encode(
            image, effort=o.get("effort") or 0, **opts)
    write_atomic(out, data, force=o.get("force", False))


def _encode_video(inp: str, out: str, o: dict, progress: bool) -> None:
    from codec.video_io import AtomicFile, open_video

    for k, what in (("bpp", "--bpp"), ("psnr", "--psnr"), ("lossless", "--lossless")):
        if o.get(k):
            raise CodecError(f"{what} is not supported for video (use -q QUALITY)")
    if o.get("frames") is not None and o["frames"] < 1:
        raise CodecError(f"--frames must be at least 1, not {o['frames']}")
    video = _video_module()
    _check_device(o.get("device"))
    fmt = "rgb" if o.get("rgb") else "yuv420"
    with open_video(inp, size=o.get("size"), pix_fmt=o.get("pix_fmt") or "yuv420p",
                    fps=o.get("fps")) as src:
        total = src.frame_count
        if o.get("frames"):
            total = min(total, o["frames"]) if total else o["frames"]
        kw = {"width": src.width, "height": src.height, "fmt": fmt,
              "intra_period": o.get("intra_period") if o.get("intra_period") is not None else -1,
              "fps": src.fps, "full_range": bool(src.full_range),
              "adaptive_intra": not o.get("no_adaptive_intra"),
              "skip_frames": not o.get("no_skip"), "copy_blocks": not o.get("no_copy"),
              "residual_frames": not o.get("no_residual"),
              "effort": o.get("effort") or 0}
        if o.get("quality") is not None:
            kw["quality"] = o["quality"]
        if o.get("refresh") is not None:
            kw["refresh_period"] = o["refresh"]
        if o.get("threads"):
            kw["threads"] = o["threads"]
        with AtomicFile(out, force=o.get("force", False)) as f, \
                _bar(o if progress else {"quiet": True}, total, Path(inp).name, "frame") as bar:
            with _with_device(video.VideoEncoder, o.get("device"), "video", f, **kw) as enc:
                for frame in src.frames(fmt, o.get("frames")):
                    enc.encode(frame)
                    bar.update()


def decode_file(inp: str, out: str | None, o: dict, progress: bool = True) -> str:
    """Decode one ``.ncz`` file (or ``-``) to ``out`` (default: beside the input, ``.png`` for
    images, ``.y4m`` (``.mkv`` for RGB) for video); returns the output path."""
    from codec.io import read_bytes, write_image

    if inp != "-" and not Path(inp).is_dir():
        try:
            with open(inp, "rb") as f:
                header = ContainerReader(f).header
        except FileNotFoundError:
            raise CodecError(f"{inp}: no such file") from None
        except PermissionError:
            raise CodecError(f"{inp}: permission denied") from None
        data = None
    else:
        data = read_bytes(inp)
        header = ContainerReader(data).header
    if header.kind == StreamKind.VIDEO:
        return _decode_video(inp, data, header, out, o, progress)
    out = out or _default_output(inp, ".png")
    _refuse_tty(out)
    _refuse_input(out, inp)
    if data is None:
        data = read_bytes(inp)
    image = _codec_for(header.kind, o.get("device")).decode(data)
    write_image(out, image, force=o.get("force", False))
    return out


def _video_default_ext(header) -> str:
    from bitstream import ColorFormat

    return ".mkv" if header.color_format == ColorFormat.RGB else ".y4m"


def _decode_video(inp: str, data, header, out, o: dict, progress: bool) -> str:
    from fractions import Fraction

    from bitstream import ColorFormat
    from codec.video_io import open_writer

    video = _video_module()
    _check_device(o.get("device"))
    out = out or _default_output(inp, _video_default_ext(header))
    _refuse_tty(out)
    _refuse_input(out, inp)
    fmt = "rgb" if header.color_format == ColorFormat.RGB else "yuv420"
    fps = Fraction(header.fps_num, header.fps_den) if header.fps_num else Fraction(25)
    full_range = bool(header.params.get("full_range", False))
    with open(inp, "rb") if data is None else contextlib.nullcontext(data) as src:
        dec = _with_device(video.VideoDecoder, o.get("device"), "video", src)
        # odd-sized 4:2:0 video: the header holds the even size, the decoder the real one
        w, h = getattr(dec, "width", header.width), getattr(dec, "height", header.height)
        with open_writer(out, w, h, fps, fmt, full_range, force=o.get("force", False)) as sink, \
                _bar(o if progress else {"quiet": True}, header.frame_count or None,
                     Path(inp).name, "frame") as bar:
            for frame in dec:
                sink.write(frame)
                bar.update()
    return out


# ---------------------------------------------------------------------------------- batches
def _quiet_warnings() -> None:
    """Third-party import noise (compressai -> torch_geometric -> torch.jit.script) is not
    the user's business: keep stderr to our own one-line messages."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated",
                            category=FutureWarning)


def _worker_init() -> None:
    """A batch worker: one torch thread (the pool provides the parallelism)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    _quiet_warnings()
    import torch

    torch.set_num_threads(1)


def _run_job(job: tuple[str, str, str, dict]) -> str | None:
    """Run one (op, input, output, options) job; the one-line error, or None on success."""
    op, inp, out, o = job
    try:
        (encode_file if op == "encode" else decode_file)(inp, out, o, progress=False)
    except (CodecError, FormatError) as e:
        return _named(inp, e)
    except OSError as e:
        return f"{inp}: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    return None


def _batch_sources(inputs: list[str], op: str) -> list[tuple[str, str]]:
    """(file, name relative to its folder input) of every file a batch codes."""
    from codec.video_io import RAW_EXTS, VIDEO_EXTS

    from .eval_media import IMAGE_EXTS

    exts = (".ncz",) if op == "decode" else IMAGE_EXTS + VIDEO_EXTS + RAW_EXTS
    found = []
    for spec in inputs:
        if spec == "-":
            raise CodecError("- (stdin) cannot be part of a batch")
        p = Path(spec)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                raise CodecError(f"{spec}: no {'.ncz' if op == 'decode' else 'image or video'} "
                                 f"files in this folder")
            found += [(str(f), str(f.relative_to(p))) for f in files]
        else:
            found.append((spec, p.name))
    return found


def _run_batch(args: argparse.Namespace, op: str, o: dict) -> int:
    if args.jobs != 1:
        o = {**o, "threads": 1}
    out_dir = Path(args.output) if args.output else None
    if args.output == "-":
        raise CodecError("a batch cannot be written to stdout (-o DIR)")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise CodecError(f"{out_dir}: several inputs need -o to be a directory")
    jobs, seen = [], {}
    for src, rel in _batch_sources(args.inputs, op):
        if op == "encode":
            dst = str((out_dir / rel).with_suffix(".ncz")) if out_dir else \
                _default_output(src, ".ncz")
        else:  # the suffix follows the stream kind: decided per file
            dst = _decode_output_name(src, str(out_dir / rel) if out_dir else src)
        key = str(Path(dst).resolve())
        if key in seen:
            raise CodecError(f"{src} and {seen[key]} would both be written to {dst}")
        seen[key] = src
        jobs.append([op, src, dst, o])
    made = set()  # folders this batch creates: removed again if nothing lands in them
    if out_dir is not None:
        for j in jobs:
            d = Path(j[2]).parent
            made.update(a for a in (d, *d.parents) if not a.exists())
            d.mkdir(parents=True, exist_ok=True)
    failed = 0
    with _bar(o, len(jobs), f"ncodec {op}", "file") as bar:
        for msg in _map(jobs, args.jobs):
            if msg:
                failed += 1
                bar.write(f"ncodec: error: {msg}", file=sys.stderr)
            bar.update()
    for d in sorted(made, key=lambda a: len(a.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()
    return 1 if failed else 0


def _decode_output_name(src: str, like: str) -> str:
    """A batch decode's output: ``like`` with its suffix replaced by the default extension of
    the file's stream kind (an unreadable file gets ``.png``: it fails later, with a message)."""
    ext = ".png"
    try:
        with open(src, "rb") as f:
            h = ContainerReader(f).header
        if h.kind == StreamKind.VIDEO:
            ext = _video_default_ext(h)
    except (FormatError, OSError):
        pass
    p = Path(like)
    return str(p.with_name(p.stem + ext))


def _forkserver(mp):
    """Workers forked from a server that imported torch and the image codec once (no torch
    thread pool has run in it: fork-safe), instead of each importing them again."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "codec.image"])
    return ctx


def _map(jobs: list, workers: int):
    """Results of :func:`_run_job` over ``jobs``, in order, in ``workers`` processes."""
    workers = os.cpu_count() or 1 if workers == 0 else workers
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            yield _run_job(j)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=_forkserver(mp),
                             initializer=_worker_init) as pool:
        yield from pool.map(_run_job, jobs)


def _options(args: argparse.Namespace) -> dict:
    from codec.video_io import parse_size

    o = {k: getattr(args, k, None) for k in _JOB_OPTIONS}
    if o.get("size") is not None:
        o["size"] = parse_size(o["size"])
    return o


def _is_batch(args: argparse.Namespace) -> bool:
    return len(args.inputs) > 1 or any(i != "-" and Path(i).is_dir() for i in args.inputs)


# --------------------------------------------------------------------------------- commands
def cmd_encode(args: argparse.Namespace) -> int:
    o = _options(args)
    if _is_batch(args):
        return _run_batch(args, "encode", o)
    inp = args.inputs[0]
    out = args.output or _default_output(inp, ".ncz")
    if out != "-" and inp != "-" and Path(out).is_dir():  # -o DIR: DIR/<input>.ncz
        out = str(Path(out) / Path(inp).with_suffix(".ncz").name)
    _refuse_tty(out)
    encode_file(inp, out, o)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    o = _options(args)
    if _is_batch(args):
        return _run_batch(args, "decode", o)
    try:
        decode_file(args.inputs[0], args.output, o)
    except FormatError as e:  # a damaged stream: say which file
        raise CodecError(_named(args.inputs[0], e)) from None
    return 0


def _named(inp: str, e: Exception) -> str:
    """The error's message, led by the input's name unless it already holds it."""
    name = "stdin" if inp == "-" else inp
    return str(e) if name in str(e) else f"{name}: {e}"


def cmd_info(args: argparse.Namespace) -> int:
    from codec.io import read_bytes
    from codec.metrics import bpp

    data = read_bytes(args.input)
    try:
        reader = ContainerReader(data)
        h = reader.header
        units = list(reader)
    except FormatError as e:
        raise CodecError(_named(args.input, e)) from None
    frames = max(len(units), 1)
    info = {"file": args.input, "bytes": len(data), **h.to_dict(), "units": len(units),
            "key_units": sum(u.type == 0 for u in units),
            "bpp": bpp(len(data), h.width * h.height * frames)}
    if h.kind == StreamKind.VIDEO and h.fps_num:
        seconds = len(units) * h.fps_den / h.fps_num
        info["duration_s"] = round(seconds, 6)
        info["kbit_s"] = round(len(data) * 8 / seconds / 1000, 3) if seconds else None
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _count(text: str) -> int:
    """argparse type: an integer >= 0."""
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-j", "--jobs", type=_count, default=1, metavar="N",
                   help="batches: N worker processes (one torch thread each; 0 = one per "
                        "core; default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where the networks run (cuda: an error when no GPU is available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncodec", description="Neural image, video and lossless codec.")
    p.add_argument("--version", action="version", version=f"ncodec {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    e = sub.add_parser("encode", help="encode images or videos into .ncz files",
                       description="Encode an image (PNG, JPEG, ...) or a video (.mp4, .mkv, "
                                   ".y4m, raw .yuv with --size, ...) into an .ncz file. Several "
                                   "inputs or a folder make a batch: -o names a directory.")
    e.add_argument("inputs", nargs="+", metavar="input",
                   help="image or video file, folder (batch), or - for stdin (an image, or a "
                        "y4m / raw YUV video)")
    e.add_argument("-o", "--output", help="output file (default: input with .ncz; - for "
                                          "stdout); a directory for a batch")
    rate = e.add_mutually_exclusive_group()
    rate.add_argument("-q", "--quality", type=float, default=None,
                      help="quality, continuous (higher is better)")
    rate.add_argument("--bpp", type=float, default=None, help="target bits per pixel (images)")
    rate.add_argument("--psnr", type=float, default=None, help="target PSNR in dB (images)")
    rate.add_argument("--lossless", action="store_true", help="lossless coding (images)")
    e.add_argument("--effort", type=int, default=0, choices=(0, 1, 2),
                   help="encoder effort: 1 and 2 refine the latent (images; video: each P "
                        "frame's, and each intra or residual frame's) with SGA steps, about 1 / 4 "
                        "minutes per Kodak image; decoding is unchanged")
    v = e.add_argument_group("video")
    v.add_argument("--intra-period", type=int, default=None, metavar="N",
                   help="an intra frame every N frames (default -1: only the first)")
    v.add_argument("--no-adaptive-intra", action="store_true",
                   help="intra frames only where --intra-period puts them (default: any frame "
                        "that costs less in rate-distortion as an intra frame than as a P "
                        "frame is coded intra)")
    v.add_argument("--no-skip", action="store_true",
                   help="no skip frames (default: a P frame whose motion-compensated "
                        "prediction alone costs less in rate-distortion is coded as motion only)")
    v.add_argument("--no-copy", action="store_true",
                   help="no copy blocks (default: 16x16 blocks that cost less copied from the "
                        "motion-compensated prediction or, in a replenished frame, from the "
                        "previous frame are not coded)")
    v.add_argument("--no-residual", action="store_true",
                   help="no residual frames (default: a frame that would be coded intra is "
                        "coded as its motion plus the residual to the motion-compensated "
                        "prediction, the residual by the image model, where that costs less)")
    v.add_argument("--refresh", type=int, default=None, metavar="N",
                   help="refresh the temporal context every N frames (default: the codec's, "
                        "32; 0 = never)")
    v.add_argument("--rgb", action="store_true", help="code RGB frames instead of YUV 4:2:0")
    v.add_argument("--size", metavar="WxH", help="raw YUV input of this frame size")
    v.add_argument("--pix-fmt", default="yuv420p", help="raw YUV pixel format (yuv420p)")
    v.add_argument("--fps", default=None, help="frame rate (raw YUV: default 25; overrides a "
                                               "container's), e.g. 30 or 30000/1001")
    v.add_argument("--frames", type=int, default=None, metavar="N", help="code the first N frames")
    _common(e)
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decode .ncz files to images or videos",
                       description="Decode an .ncz file. Images: the format follows the "
                                   "extension (PNG default). Videos: .y4m (default), .yuv, "
                                   ".mkv (FFV1, lossless), .mp4 (H.264, lossless), a directory "
                                   "(PNG frames) or - (y4m on stdout).")
    d.add_argument("inputs", nargs="+", metavar="input",
                   help="input .ncz file, folder (batch), or - for stdin")
    d.add_argument("-o", "--output", help="output file (default: input with .png / .y4m; - for "
                                          "stdout); a directory for a batch")
    _common(d)
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="print the header of an .ncz file")
    i.add_argument("input", help="input .ncz file (- for stdin)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    t = sub.add_parser("train", help="train the image or video model",
                       description="Run python -m tools.train_image / tools.train_video with the "
                                   "remaining options (see ncodec train image --help); under "
                                   "torchrun: torchrun --nproc_per_node N --no-python ncodec "
                                   "train image ...")
    t.add_argument("model", choices=("image", "video"))
    t.add_argument("options", nargs=argparse.REMAINDER, help="the trainer's options")
    t.set_defaults(func=cmd_train)

    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return p


def cmd_train(args) -> int:
    """``ncodec train image|video ...``: the trainer's ``main`` with the remaining options."""
    importlib.import_module(f"tools.train_{args.model}").main(args.options)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_warnings()
    try:
        return args.func(args)
    except (CodecError, FormatError) as e:
        print(f"ncodec: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ncodec: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ncodec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
