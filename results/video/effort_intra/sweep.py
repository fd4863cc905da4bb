"""The full encoder at an effort level, one torch thread, every decode checked against the
encoder's reconstruction; one JSON line per clip and quality. Run from the checkout whose
encoder is measured (the line records its commit and LABEL).

    python results/video/effort_intra/sweep.py CLIP FRAMES QUALITIES EFFORT LABEL OUT.jsonl
    (QUALITIES e.g. 0,0.75,1.5,2.25,3; EFFORT 1, or 1-image: effort 1 without the P-frame
    refinement, only the frames the image model codes refined)
    python results/video/effort_intra/sweep.py --bd OUT.jsonl [...]   # BD-rate of every label
        # against the others and against x264 / x265 (results/video/copy_f96, the same frames)
"""
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "residual"))
from sweep import anchor_curves, code_clip  # noqa: E402  (results/video/residual/sweep.py)


def run(clip, n, qs, effort, label, out):
    from tools.eval_media import datasets_root, read_clip

    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    v = read_clip(datasets_root() / "video" / clip, n)
    frames = [(v.y[t], v.u[t], v.v[t]) for t in range(v.frames)]
    torch.set_num_threads(1)

    def setup(enc):
        if effort.endswith("-image"):
            enc._refine = None  # the P frames' refiner; the image model's stays

    for q in qs:
        rec = {"clip": Path(clip).name, "frames": v.frames, "quality": q, "effort": effort,
               "label": label, "commit": commit,
               **code_clip(v, frames, q, effort=int(effort.split("-")[0]), setup=setup)}
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
