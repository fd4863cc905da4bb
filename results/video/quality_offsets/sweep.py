"""Per-frame quality offsets (hierarchical quality, low delay): an encoder-only experiment (NOTE.md).

    python sweep.py CLIP FRAMES QUALITIES "MODE;MODE..." OUT.jsonl

MODE: "0" constant quality; "a,b,c,d" offsets of the video quality by frame index mod 4
(suffix "i": the intra and residual frames follow them too); "I<d>" the intra and residual
frames' image quality raised by d."""
import io, json, sys, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from codec.metrics import bpp, psnr_yuv
from codec.video import VideoEncoder
from tools.eval_media import datasets_root, read_clip

clip, n, qs, out = sys.argv[1], int(sys.argv[2]), [float(q) for q in sys.argv[3].split(",")], sys.argv[5]
modes = sys.argv[4].split(";")  # each: comma offsets per frame index mod len, "0" = constant; suffix "i" = intra q too
v = read_clip(datasets_root() / "video" / clip, n)
frames = [(v.y[t], v.u[t], v.v[t]) for t in range(v.frames)]
torch.set_num_threads(1)
for q in qs:
    for mode in modes:
        ioff = float(mode[1:]) if mode.startswith("I") else 0.0
        offs = [0.0] if mode.startswith("I") else [float(o) for o in mode.rstrip("i").split(",")]
        buf, t0 = io.BytesIO(), time.time()
        enc = VideoEncoder(buf, v.width, v.height, quality=q, fps=v.fps)
        s = enc._s
        nq, inq = s.model.cfg.n_quality, s.intra.m.cfg.n_quality
        recs = []
        to_image_q = lambda vq: vq * (inq - 1) / (nq - 1)  # noqa: E731 (the session's mapping)
        for t, f in enumerate(frames):
            qt = float(np.float32(min(max(q + offs[t % len(offs)], 0.0), nq - 1.0)))
            s.q = qt
            if mode.endswith("i") or ioff:
                s.q_intra = s.q_res = float(np.float32(min(to_image_q(qt) + ioff, inq - 1)))
            recs.append(enc.encode(f))
        enc.close()
        data = buf.getvalue()
        ps = [psnr_yuv(a, b)["yuv"] for a, b in zip(frames, recs)]
        rec = {"clip": Path(clip).name, "frames": v.frames, "quality": q, "mode": mode,
               "bpp": bpp(len(data), v.width * v.height * v.frames), "psnr_yuv": float(np.mean(ps)),
               "encode_s": round(time.time() - t0, 1), "intra": enc.intra_frames, "skip": enc.skipped_frames,
               "copy": enc.copy_frames, "residual": enc.residual_frames_coded,
               "frame_bytes": enc.frame_bytes, "frame_psnr": [round(p, 2) for p in ps]}
        open(out, "a").write(json.dumps(rec) + "\n")
        print(json.dumps({k: rec[k] for k in ("quality", "mode", "bpp", "psnr_yuv", "encode_s", "intra", "residual")}), flush=True)
