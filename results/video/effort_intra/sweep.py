"""The full encoder at an effort level, one torch thread, every decode checked against the
encoder's reconstruction; one JSON line per clip and quality. Run from the checkout whose
encoder is measured (the line records its commit and LABEL).

    python results/video/effort_intra/sweep.py CLIP FRAMES QUALITIES EFFORT LABEL OUT.jsonl
    (QUALITIES e.g. 0,0.75,1.5,2.25,3; EFFORT 1, or 1-image: effort 1 without the P-frame
    refinement, only the frames the image model codes refined)
    python results/video/effort_intra/sweep.py --bd OUT.jsonl [...]   # BD-rate of every label
        # against the others and against x264 / x265 (results/video/copy_f96, the same frames)
"""
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))


def run(clip, n, qs, effort, label, out):
    from codec.metrics import bpp, psnr_yuv
    from codec.video import VideoDecoder, VideoEncoder
    from tools.eval_media import datasets_root, read_clip

    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    v = read_clip(datasets_root() / "video" / clip, n)
    frames = [(v.y[t], v.u[t], v.v[t]) for t in range(v.frames)]
    torch.set_num_threads(1)
    for q in qs:
        buf, t0 = io.BytesIO(), time.time()
        with VideoEncoder(buf, v.width, v.height, quality=q, fps=v.fps,
                          effort=int(effort.split("-")[0])) as enc:
            if effort.endswith("-image"):
                enc._refine = None  # the P frames' refiner; the image model's stays
            recs = [enc.encode(f) for f in frames]
        enc_s, data = time.time() - t0, buf.getvalue()
        t0 = time.time()
        out_frames = list(VideoDecoder(data))
        dec_s = time.time() - t0
        exact = len(out_frames) == len(recs) and all(
            all(np.array_equal(a, b) for a, b in zip(f, r)) for f, r in zip(out_frames, recs))
        rec = {"clip": Path(clip).name, "frames": v.frames, "quality": q, "effort": effort,
               "label": label, "commit": commit,
               "bpp": bpp(len(data), v.width * v.height * v.frames),
               "psnr_yuv": float(np.mean([psnr_yuv(a, b)["yuv"] for a, b in zip(frames, recs)])),
               "encode_s": round(enc_s, 1), "decode_s": round(dec_s, 1), "decode_exact": exact,
               "intra": enc.intra_frames, "skip": enc.skipped_frames, "copy": enc.copy_frames,
               "replenished": enc.replenished_frames, "residual": enc.residual_frames_coded}
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)


def bd(files):
    from tools.bdrate import bd_rate

    here = Path(__file__).resolve().parent
    anchors = {a: json.loads((here.parent / "copy_f96" / f"{a}.json").read_text())["clips"]
               for a in ("x264", "x265")}
    rows = [json.loads(line) for f in files for line in open(f)]
    out = []
    for clip in sorted({r["clip"] for r in rows}):
        curves = {}
        for r in rows:
            if r["clip"] == clip:
                curves.setdefault(r["label"], []).append((r["bpp"], r["psnr_yuv"]))
        curves = {k: sorted(v) for k, v in curves.items() if len(v) >= 4}
        rec = {"clip": clip, "encode_s": {k: round(sum(r["encode_s"] for r in rows if r["clip"] == clip
                                                       and r["label"] == k), 1) for k in curves}}
        labels = sorted(curves)
        rec["bd_rate_psnr_yuv"] = {f"{b} vs {a}": round(bd_rate(*zip(*curves[a]), *zip(*curves[b])), 2)
                                   for a in labels for b in labels if a < b}
        for a, clips in anchors.items():
            if clip in clips:
                rec[f"vs_{a}"] = {k: round(bd_rate(clips[clip]["bpp"], clips[clip]["psnr_yuv"],
                                                   *zip(*c)), 1) for k, c in curves.items()}
        out.append(rec)
        print(json.dumps(rec))
    (here / "bd.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--bd":
        bd(sys.argv[2:])
    else:
        run(sys.argv[1], int(sys.argv[2]), [float(q) for q in sys.argv[3].split(",")],
            sys.argv[4], sys.argv[5], sys.argv[6])
