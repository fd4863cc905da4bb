"""Measurements of the learned video codec beyond the RD curves of ``ncodec eval``.

``python -m tools.video_eval propagation [CLIP]``: error propagation in a long low-delay
run (one intra frame, then P frames only): per-frame PSNR and bits of the encoder's own
reconstruction (what the decoder outputs, bit for bit) with the periodic feature refresh on
(``--refresh``, default 32) and off; ``results/video/ncodec_propagation.{json,png}``.

``python -m tools.video_eval speed [CLIP]``: encode and decode frames per second (median over
``--repeats`` runs, model loading excluded) on a 640x480 clip (an ASL clip by default);
``results/video/ncodec_speed.json``. Both record the machine's load average: the reference
machine is a 2-core VM that may be shared.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from codec.errors import CodecError
from codec.io import write_atomic
from codec.metrics import bpp, psnr_yuv

from .eval_media import datasets_root
from .evaluate import figure_png, json_text

__all__ = ["propagation", "speed", "propagation_plot", "main"]

RESULTS = Path(__file__).resolve().parents[1] / "results" / "video"
DEFAULT_CLIPS = {"propagation": "video/compressed/carphone_pristine.mp4",
                 "speed": "video/compressed/asl_book.mkv"}


def _clip(spec: str | None, what: str) -> Path:
    p = Path(spec) if spec else datasets_root() / DEFAULT_CLIPS[what]
    if not p.exists() and spec:
        p = datasets_root() / spec
    if not p.exists():
        raise CodecError(f"{spec or p}: no such clip")
    return p


def _frames(path: Path, n: int | None) -> tuple[list, object]:
    from codec.video_io import open_video

    with open_video(path) as src:
        return list(src.frames("yuv420", n)), src


def _model(weights=None) -> dict:
    """Which video model was measured (id, sha256 of its weights file, configuration)."""
    from codec.video import load_model

    model, _, digest, model_id = load_model(weights)
    return {"id": model_id, "file": str(weights) if weights else "shipped (codec/weights)",
            "sha256": bytes(digest).hex(), "config": model.cfg.to_dict()}


def _machine() -> dict:
    import torch

    return {"platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _run(frames: list, w: int, h: int, fps, quality: float, refresh: int,
         intra_period: int = -1, weights=None, verify: bool = False, log=None) -> dict:
    """Encode ``frames``; per-frame PSNRs of the reconstruction and bytes of each frame."""
    from codec.video import VideoDecoder, VideoEncoder

    buf = io.BytesIO()
    per = {"psnr_y": [], "psnr_yuv": [], "bytes": []}
    recs = []
    with VideoEncoder(buf, w, h, fmt="yuv420", quality=quality, intra_period=intra_period,
                      refresh_period=refresh, fps=fps, weights=weights,
                      adaptive_intra=False) as enc:  # a chain of P frames: what drifts
        for t, f in enumerate(frames):
            rec = enc.encode(f)
            p = psnr_yuv(f, rec)
            per["psnr_y"].append(round(p["y"], 4))
            per["psnr_yuv"].append(round(p["yuv"], 4))
            if verify:
                recs.append(rec)
            if log:
                log(f"refresh {refresh}: frame {t} PSNR-YUV {p['yuv']:.2f} dB")
        per["bytes"] = list(enc.frame_bytes)
    data = buf.getvalue()
    out = {"refresh_period": refresh, "bytes_total": len(data),
           "bpp": bpp(len(data), w * h * len(frames)), **per}
    if verify:
        dec = list(VideoDecoder(data, weights=weights))
        out["decoder_matches_encoder"] = len(dec) == len(recs) and all(
            all(np.array_equal(a, b) for a, b in zip(x, y)) for x, y in zip(dec, recs))
    return out


def propagation(clip: Path, frames: int = 96, quality: float = 1.5, refresh: int = 32,
                weights=None, verify: bool = False, log=None) -> dict:
    """Refresh on (``refresh``) vs off (0) on the first ``frames`` frames of ``clip``."""
    fr, src = _frames(clip, frames)
    if len(fr) < frames:
        raise CodecError(f"{clip}: has {len(fr)} frames, {frames} asked for")
    runs = {}
    for name, r in (("refresh", refresh), ("no_refresh", 0)):
        t = time.perf_counter()
        runs[name] = _run(fr, src.width, src.height, src.fps, quality, r, weights=weights,
                          verify=verify, log=log)
        runs[name]["wall_s"] = round(time.perf_counter() - t, 2)
    on, off = runs["refresh"]["psnr_yuv"], runs["no_refresh"]["psnr_yuv"]
    tail = slice(len(on) // 2, None)  # the second half: where drift shows
    return {"clip": clip.name, "width": src.width, "height": src.height, "frames": len(fr),
            "quality": quality, "intra_period": -1, "runs": runs,
            "summary": {k: {"mean_psnr_yuv": float(np.mean(r["psnr_yuv"])),
                            "mean_psnr_yuv_second_half": float(np.mean(r["psnr_yuv"][tail])),
                            "first_p_minus_last_psnr_yuv": r["psnr_yuv"][1] - r["psnr_yuv"][-1]
                            if len(r["psnr_yuv"]) > 2 else None,
                            "bpp": r["bpp"]} for k, r in runs.items()},
            "psnr_gain_refresh_db": float(np.mean(on) - np.mean(off)),
            "model": _model(weights), "machine": _machine()}


def propagation_plot(res: dict) -> bytes:
    """Per-frame PSNR-YUV and kbits of both runs as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True, squeeze=False)
    for name, r in res["runs"].items():
        label = f"refresh every {r['refresh_period']}" if r["refresh_period"] > 0 else "no refresh"
        t = np.arange(len(r["psnr_yuv"]))
        axes[0, 0].plot(t, r["psnr_yuv"], label=f"{label} ({r['bpp']:.3f} bpp)", lw=1.2)
        axes[1, 0].plot(t[1:], np.array(r["bytes"][1:]) * 8 / 1000, label=label, lw=1.0)
        axes[1, 0].ticklabel_format(useOffset=False, axis="y")
        if r["refresh_period"] > 0:
            for x in range(r["refresh_period"], len(t), r["refresh_period"]):
                for ax in axes[:, 0]:
                    ax.axvline(x, color="0.8", lw=0.8, zorder=0)
    axes[0, 0].set_ylabel("PSNR-YUV (dB)")
    axes[1, 0].set_ylabel("kbit per P frame")
    axes[1, 0].set_xlabel("frame (0 = the only intra frame)")
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    title = (f"ncodec video error propagation: {res['clip']} {res['width']}x{res['height']}, "
             f"q {res['quality']}, intra period -1")
    return figure_png(fig, axes, 2, title)


def speed(clip: Path, frames: int = 8, repeats: int = 3, quality: float = 1.5,
          weights=None, threads: int | None = None, log=None) -> dict:
    """Encode / decode frames per second over ``frames`` frames, median of ``repeats`` runs;
    the model is loaded before the clock starts."""
    import torch

    from codec.video import VideoDecoder, VideoEncoder

    if threads:
        torch.set_num_threads(threads)
    fr, src = _frames(clip, frames)
    enc_s, dec_s, per_frame_enc, per_frame_dec, data = [], [], [], [], b""
    for i in range(repeats):
        buf = io.BytesIO()
        enc = VideoEncoder(buf, src.width, src.height, quality=quality, fps=src.fps,
                           weights=weights)
        t0 = time.perf_counter()
        for f in fr:
            t = time.perf_counter()
            enc.encode(f)
            per_frame_enc.append(time.perf_counter() - t)
        enc.close()
        enc_s.append(time.perf_counter() - t0)
        data = buf.getvalue()
        dec = VideoDecoder(data, weights=weights)
        t0 = time.perf_counter()
        for _ in range(len(fr)):
            t = time.perf_counter()
            dec.read()
            per_frame_dec.append(time.perf_counter() - t)
        dec_s.append(time.perf_counter() - t0)
        if log:
            log(f"run {i}: encode {len(fr) / enc_s[-1]:.3f} fps, decode "
                f"{len(fr) / dec_s[-1]:.3f} fps")
    n = len(fr)
    return {"clip": clip.name, "width": src.width, "height": src.height, "frames": n,
            "repeats": repeats, "quality": quality, "bpp": bpp(len(data), src.width * src.height * n),
            "encode_fps": n / statistics.median(enc_s), "decode_fps": n / statistics.median(dec_s),
            "encode_s": enc_s, "decode_s": dec_s,
            "median_frame_ms": {"encode": 1000 * statistics.median(per_frame_enc),
                                "decode": 1000 * statistics.median(per_frame_dec)},
            "intra_frames": enc.intra_frames, "skipped_frames": enc.skipped_frames,
            "copy_frames": enc.copy_frames, "replenished_frames": enc.replenished_frames,
            "residual_frames": enc.residual_frames_coded,
            "note": "wall time per run over all frames (the encoder's defaults: adaptive intra "
                    "frames, skip frames, copy blocks, replenished and residual frames), model "
                    "load excluded",
            "model": _model(weights), "machine": _machine()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.video_eval", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("propagation", "speed"):
        s = sub.add_parser(name)
        s.add_argument("clip", nargs="?", help=f"clip (default: {DEFAULT_CLIPS[name]} under "
                                               "../shared/datasets)")
        s.add_argument("-q", "--quality", type=float, default=1.5)
        s.add_argument("--weights", help="video model weights (default: the shipped model)")
        s.add_argument("-o", "--out", default=str(RESULTS), help="output folder")
        s.add_argument("--verbose", action="store_true", help="log every frame / run")
        s.add_argument("--note", default="", help="a remark stored with the results")
    sp = sub.choices["propagation"]
    sp.add_argument("--frames", type=int, default=96)
    sp.add_argument("--refresh", type=int, default=32, help="refresh period of the 'on' run")
    sp.add_argument("--verify", action="store_true", help="also decode and compare")
    ss = sub.choices["speed"]
    ss.add_argument("--frames", type=int, default=8)
    ss.add_argument("--repeats", type=int, default=3)
    for s in (sp, ss):
        s.add_argument("--threads", type=int, default=1,
                       help="torch threads (default 1: the reference machine is shared)")
    args = p.parse_args(argv)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.verbose else None
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        clip = _clip(args.clip, args.what)
        if args.what == "propagation":
            res = propagation(clip, args.frames, args.quality, args.refresh, args.weights,
                              args.verify, log)
            res["note"] = " ".join(t for t in (res.get("note", ""), args.note) if t)
            write_atomic(out / "ncodec_propagation.json", json_text(res).encode(), force=True)
            write_atomic(out / "ncodec_propagation.png", propagation_plot(res), force=True)
            print(json.dumps(res["summary"], indent=1))
        else:
            res = speed(clip, args.frames, args.repeats, args.quality, args.weights, log=log)
            res["note"] = " ".join(t for t in (res.get("note", ""), args.note) if t)
            write_atomic(out / "ncodec_speed.json", json_text(res).encode(), force=True)
            print(json.dumps({k: res[k] for k in ("clip", "width", "height", "frames",
                                                  "encode_fps", "decode_fps")}, indent=1))
    except CodecError as e:
        print(f"video_eval: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
