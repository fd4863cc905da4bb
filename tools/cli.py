"""``ncodec``: encode, decode and inspect ncodec files; further subcommands plug in.

Exit codes: 0 success, 1 bad input (one-line message on stderr, no traceback), 2 usage error.
``-`` stands for stdin/stdout. Outputs are written atomically and never replace an existing
file unless ``--force`` is given.
"""
from __future__ import annotations

import argparse
import importlib
import json
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ncodec")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _codec_for(kind: StreamKind):
    """The codec object for a stream kind (imported lazily: torch loads only when needed)."""
    modules = {StreamKind.IMAGE: ("codec.image", "ImageCodec"),
               StreamKind.LOSSLESS: ("codec.lossless", "LosslessCodec")}
    if kind not in modules:
        raise CodecError(f"this build of ncodec cannot code {kind.name.lower()} streams")
    mod, cls = modules[kind]
    return getattr(importlib.import_module(mod), cls)()


def _default_output(inp: str, suffix: str) -> str:
    if inp == "-":
        return "-"
    return str(Path(inp).with_suffix(suffix))


def _refuse_tty(out: str) -> None:
    if out == "-" and sys.stdout.isatty():
        raise CodecError("refusing to write binary data to a terminal (use -o FILE)")


def cmd_encode(args: argparse.Namespace) -> int:
    from codec.io import read_bytes, read_image, write_atomic

    out = args.output or _default_output(args.input, ".ncz")
    _refuse_tty(out)
    if out != "-" and args.input != "-" and Path(out).resolve() == Path(args.input).resolve():
        raise CodecError(f"{out}: output would overwrite the input")
    image = read_image(read_bytes(args.input))
    if args.lossless:
        data = _codec_for(StreamKind.LOSSLESS).encode(image)
    else:
        if image.dtype != "uint8" or image.shape[2] != 3:
            raise CodecError(f"the learned codec takes 8-bit RGB images; this one has "
                             f"{image.shape[2]} channel(s) of {image.dtype} (try --lossless)")
        opts = {k: getattr(args, k) for k in ("quality", "bpp", "psnr")
                if getattr(args, k) is not None}
        data = _codec_for(StreamKind.IMAGE).encode(image, effort=args.effort, **opts)
    write_atomic(out, data, force=args.force)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from codec.io import read_bytes, write_image

    out = args.output or _default_output(args.input, ".png")
    _refuse_tty(out)
    data = read_bytes(args.input)
    header = ContainerReader(data).header
    image = _codec_for(header.kind).decode(data)
    write_image(out, image, force=args.force)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from codec.io import read_bytes
    from codec.metrics import bpp

    data = read_bytes(args.input)
    reader = ContainerReader(data)
    h = reader.header
    units = list(reader)
    frames = max(len(units), 1)
    info = {"file": args.input, "bytes": len(data), **h.to_dict(), "units": len(units),
            "key_units": sum(u.type == 0 for u in units),
            "bpp": bpp(len(data), h.width * h.height * frames)}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncodec", description="Neural image, video and lossless codec.")
    p.add_argument("--version", action="version", version=f"ncodec {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    e = sub.add_parser("encode", help="encode an image into an .ncz file")
    e.add_argument("input", help="input image (PNG, JPEG, ...; - for stdin)")
    e.add_argument("-o", "--output", help="output file (default: input with .ncz; - for stdout)")
    rate = e.add_mutually_exclusive_group()
    rate.add_argument("-q", "--quality", type=float, default=None,
                      help="quality, continuous (higher is better)")
    rate.add_argument("--bpp", type=float, default=None, help="target bits per pixel")
    rate.add_argument("--psnr", type=float, default=None, help="target PSNR in dB")
    rate.add_argument("--lossless", action="store_true", help="lossless coding")
    e.add_argument("--effort", type=int, default=0, help="encoder effort (refinement steps)")
    e.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decode an .ncz file to an image")
    d.add_argument("input", help="input .ncz file (- for stdin)")
    d.add_argument("-o", "--output", help="output image (format from extension, default PNG; "
                                          "- for stdout)")
    d.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="print the header of an .ncz file")
    i.add_argument("input", help="input .ncz file (- for stdin)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
