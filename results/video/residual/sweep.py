"""Residual frames on / off: the full encoder (its defaults otherwise), one torch thread, every
decode checked against the encoder's reconstruction; one JSON line per clip, mode and quality.

    python results/video/residual/sweep.py CLIP FRAMES QUALITIES MODES OUT.jsonl [WEIGHTS]
    (QUALITIES e.g. 0,0.75,1.5,2.25,3; MODES res,nores; WEIGHTS another video weights file)
    python results/video/residual/sweep.py --bd OUT.jsonl [...]   # BD-rate res vs nores, and
        # both vs x264 / x265 (results/video/copy_f96, the same 96 frames), into bd.json
"""
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


def code_clip(v, frames, q, weights=None, setup=None, **enc_kw):
    """Encode ``frames`` (of clip ``v``) at quality ``q``, decode and check them; the record
    of sizes, quality, times and frame kinds. ``setup(enc)`` may adjust the encoder first."""
    from codec.metrics import bpp, psnr_yuv
    from codec.video import VideoDecoder, VideoEncoder

    buf, t0 = io.BytesIO(), time.time()
    with VideoEncoder(buf, v.width, v.height, quality=q, fps=v.fps, weights=weights, **enc_kw) as enc:
        if setup is not None:
            setup(enc)
        recs = [enc.encode(f) for f in frames]
    enc_s, data = time.time() - t0, buf.getvalue()
    t0 = time.time()
    out_frames = list(VideoDecoder(data, weights=weights))
    dec_s = time.time() - t0
    exact = len(out_frames) == len(recs) and all(
        all(np.array_equal(a, b) for a, b in zip(f, r)) for f, r in zip(out_frames, recs))
    return {"bpp": bpp(len(data), v.width * v.height * v.frames),
            "psnr_yuv": float(np.mean([psnr_yuv(a, b)["yuv"] for a, b in zip(frames, recs)])),
            "encode_s": round(enc_s, 1), "decode_s": round(dec_s, 1), "decode_exact": exact,
            "intra": enc.intra_frames, "skip": enc.skipped_frames, "copy": enc.copy_frames,
            "replenished": enc.replenished_frames, "residual": enc.residual_frames_coded}


def anchor_curves():
    """x264 / x265 per clip on the same 96 frames (results/video/copy_f96)."""
    here = Path(__file__).resolve().parent
    return {a: json.loads((here.parent / "copy_f96" / f"{a}.json").read_text())["clips"]
            for a in ("x264", "x265")}


def run(clip, n, qs, modes, out, weights=None):
    from tools.eval_media import datasets_root, read_clip

    v = read_clip(datasets_root() / "video" / clip, n)
    frames = [(v.y[t], v.u[t], v.v[t]) for t in range(v.frames)]
    torch.set_num_threads(1)
    for q in qs:
        for mode in modes:
            rec = {"clip": Path(clip).name, "frames": v.frames, "quality": q, "mode": mode,
                   **({"weights": Path(weights).name} if weights else {}),
                   **code_clip(v, frames, q, weights, residual_frames=mode == "res")}
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)


def bd(files):
    from tools.bdrate import bd_rate

    here = Path(__file__).resolve().parent
    anchors = anchor_curves()
    rows = [json.loads(line) for f in files for line in open(f)]
    out = []
    for clip in sorted({r["clip"] for r in rows}):
        c = {m: sorted((r["bpp"], r["psnr_yuv"]) for r in rows if r["clip"] == clip and r["mode"] == m)
             for m in ("nores", "res")}
        rec = {"clip": clip, "bd_rate_psnr_yuv_res_vs_nores": round(bd_rate(*zip(*c["nores"]), *zip(*c["res"])), 2),
               "encode_s": {m: sum(r["encode_s"] for r in rows if r["clip"] == clip and r["mode"] == m)
                            for m in ("nores", "res")}}
        for a, clips in anchors.items():
            if clip in clips:
                rec[f"vs_{a}"] = {m: round(bd_rate(clips[clip]["bpp"], clips[clip]["psnr_yuv"],
                                                   *zip(*c[m])), 1) for m in ("nores", "res")}
        out.append(rec)
        print(json.dumps(rec))
    (here / "bd.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--bd":
        bd(sys.argv[2:])
    else:
        run(sys.argv[1], int(sys.argv[2]), [float(q) for q in sys.argv[3].split(",")],
            sys.argv[4].split(","), sys.argv[5], *sys.argv[6:7])
