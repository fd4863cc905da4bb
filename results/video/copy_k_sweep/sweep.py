"""Copy-block threshold sweep (run from the repository root: python results/video/copy_k_sweep/sweep.py K CLIP...): bpp / PSNR-YUV of the full encoder, 96 frames, with codec.video._COPY_K = K, and its BD-rate vs results/video/copy_f96 (no copy blocks; K = 2 there)."""
import io
import json
import sys
from pathlib import Path
import numpy as np

sys.path.insert(0, ".")  # the repository root
import codec.video as cv
from codec.metrics import bpp, psnr_yuv
from tools.eval_media import read_clip
from tools.bdrate import bd_rate

cv._COPY_K = float(sys.argv[1])
res = {}
for clip in sys.argv[2:]:
    v = read_clip(Path(clip), 96)
    pts = []
    for q in (0.0, 0.75, 1.5, 2.25, 3.0):
        buf = io.BytesIO()
        with cv.VideoEncoder(buf, v.width, v.height, fmt="yuv420", quality=q, fps=v.fps, threads=1) as enc:
            rec = [enc.encode((v.y[t], v.u[t], v.v[t])) for t in range(v.frames)]
        p = np.mean([psnr_yuv((v.y[t], v.u[t], v.v[t]), rec[t])["yuv"] for t in range(v.frames)])
        pts.append((bpp(len(buf.getvalue()), v.width * v.height * v.frames), float(p)))
        print(sys.argv[1], Path(clip).name, q, pts[-1], flush=True)
    ref = json.load(open("results/video/copy_f96/ncodec-video-nocopy.json"))["clips"][Path(clip).name]
    k2 = json.load(open("results/video/copy_f96/ncodec-video.json"))["clips"][Path(clip).name]
    res[Path(clip).name] = {"points": pts,
        "bd_vs_nocopy": bd_rate(ref["bpp"], ref["psnr_yuv"], [a for a, _ in pts], [b for _, b in pts]),
        "k2_bd_vs_nocopy": bd_rate(ref["bpp"], ref["psnr_yuv"], k2["bpp"], k2["psnr_yuv"])}
    print(json.dumps({Path(clip).name: res[Path(clip).name]}), flush=True)
json.dump(res, open(f"results/video/copy_k_sweep/k{sys.argv[1]}.json", "w"), indent=1)
