"""Train the learned video codec (P frames; intra frames come from the shipped image model).

    python -m tools.train_video --config small --out out/train_video/small --threads 1

Data: random crops of consecutive frames from the clips in ../shared/datasets/video
(H.264-coded camera clips: they carry the H.264 coding loss; ``carphone_pristine`` and
``asl_book`` are held out for evaluation), decoded once with PyAV into a cached uint8 array
``<out>/../cache_*.npz`` (Y, U, V planes of ``--frames`` frames per crop, some crops taken
from 2x down-scaled frames or with a frame stride of 2 for larger motion, random flips),
together with the intra reconstruction of each crop's first frame by the shipped image
model at the quality matching each of the video model's quality indexes. ``--photo-crops``
adds synthetic clips of camera motion over the image trainer's photos (:func:`sample_photos`,
a second cache ``cache_photos_*.npz``); ``--extra-clips DIR`` adds crops of every video file
in ``DIR`` (clips of your own, an equal share each, a third cache ``cache_extra_*.npz``).

Curriculum (DCVC-style): first single P frames (with an auxiliary loss on the warped
reference frame, so that the motion coder learns useful flow), then cascades of several P
frames with the gradient through the whole chain (error propagation is trained), with a
feature refresh at random P frames (both reference paths are trained). Per sample the quality
is uniform in ``[0, n_quality - 1]`` (``--q-min`` raises the lower end) with loss
``lambda(q) * 255^2 * MSE + bpp``; RGB is
trained on a share of the batches (the clips converted to RGB). Checkpoints (model,
optimizers, step, wall time) every ``--ckpt-every`` seconds and on SIGTERM; an existing
``<out>/last.pt`` is resumed; JSON log lines in ``<out>/log.jsonl``. Devices, ``torchrun``,
``--bf16`` and JSON ``--config`` files as in :mod:`tools.train_image`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from models.video import (CONFIGS, TrainCoder, VideoModel, VideoModelConfig, pack_frame,
                          round_frame)

from tools.eval_media import datasets_root
from tools.train_common import (TrainRun, add_run_args, export_or_train, int_list,
                                 parse_with_config, split_params)

VIDEO = datasets_root() / "video"  # ../shared/datasets/video, or $NCODEC_DATASETS/video
PHOTOS = datasets_root() / "train"  # the image trainer's photos (synthetic camera motion)
HELD_OUT = ("carphone_pristine", "asl_book")
DATA_NOTE = ("H.264-coded clips from shared/datasets/video (bottle-detection, "
             "one-by-one-person-detection, asl_help, asl_thanks, asl_walk) and the raw "
             "CiscoVT2people y4m; carphone_pristine and asl_book held out")


def _planes(f):
    """(Y, U, V) uint8 planes of a PyAV frame (4:2:0)."""
    if f.format.name not in ("yuv420p", "yuvj420p"):
        f = f.reformat(format="yuv420p")
    out = []
    for i, (h, w) in enumerate([(f.height, f.width)] + [((f.height + 1) // 2, (f.width + 1) // 2)] * 2):
        p = f.planes[i]
        out.append(np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:h, :w].copy())
    return out


def _down2(p: np.ndarray) -> np.ndarray:
    h, w = p.shape[0] // 2 * 2, p.shape[1] // 2 * 2
    return (p[:h, :w].reshape(h // 2, 2, w // 2, 2).astype(np.uint16).sum((1, 3)) + 2 >> 2).astype(np.uint8)


def clip_frames(path: Path) -> Iterator[list[np.ndarray]]:
    """The (Y, U, V) uint8 planes of a clip's frames: y4m read directly, anything else with
    PyAV or, where PyAV is not installed (a lent GPU machine: its wheel does not fit the
    carry), with OpenCV. OpenCV hands out BGR frames, so its planes are a BGR -> YUV 4:2:0
    round trip (BT.601, studio range) of the decoded ones: about one level off PyAV's for a
    studio-range clip, more for a full-range one. Training data only, never measurements."""
    if path.suffix == ".y4m":
        from codec.video_io import open_video

        with open_video(path) as src:
            yield from (list(f) for f in src.frames("yuv420"))
        return
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        with av.open(str(path)) as c:
            yield from (_planes(f) for f in c.decode(video=0))
        return
    try:
        import cv2
    except ImportError:
        raise SystemExit(f"{path.name}: reading it needs PyAV or OpenCV (pip install av)") from None
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot read it")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            h, w = bgr.shape[0] // 2 * 2, bgr.shape[1] // 2 * 2
            i420 = cv2.cvtColor(np.ascontiguousarray(bgr[:h, :w]), cv2.COLOR_BGR2YUV_I420)
            yield [i420[:h], i420[h:h + h // 4].reshape(h // 2, w // 2),
                   i420[h + h // 4:].reshape(h // 2, w // 2)]
    finally:
        cap.release()


def sample_clip(path: Path, n: int, frames: int, size: int, rng) -> list[np.ndarray]:
    """``n`` crops of ``frames`` consecutive frames (stride 1 or 2, sometimes 2x down-scaled,
    random flips) from one clip, each as a ``frames x (size*size*3/2)`` uint8 array."""
    total = sum(1 for _ in clip_frames(path))
    specs = []
    for _ in range(n):
        stride = int(rng.integers(1, 3)) if total > 2 * frames + 2 else 1
        span = (frames - 1) * stride + 1
        if span > total:
            continue
        specs.append({"start": int(rng.integers(0, total - span + 1)), "stride": stride,
                      "scale": int(rng.random() < 0.35), "flip": bool(rng.random() < 0.5)})
    out = []
    buf: dict[int, list] = {}
    need = {s["start"] + k * s["stride"] for s in specs for k in range(frames)}
    for i, decoded in enumerate(clip_frames(path)):
        if i in need:
            buf[i] = decoded
        for s in specs:
            last = s["start"] + (frames - 1) * s["stride"]
            if last == i:
                seq = [buf[s["start"] + k * s["stride"]] for k in range(frames)]
                if s["scale"]:
                    seq = [[_down2(p) for p in fr] for fr in seq]
                hh, ww = seq[0][0].shape
                if hh < size or ww < size:
                    continue
                y0 = int(rng.integers(0, (hh - size) // 2 + 1)) * 2
                x0 = int(rng.integers(0, (ww - size) // 2 + 1)) * 2
                crop = []
                for yp, up, vp in seq:
                    planes = [yp[y0:y0 + size, x0:x0 + size],
                              up[y0 // 2:(y0 + size) // 2, x0 // 2:(x0 + size) // 2],
                              vp[y0 // 2:(y0 + size) // 2, x0 // 2:(x0 + size) // 2]]
                    if s["flip"]:
                        planes = [p[:, ::-1] for p in planes]
                    crop.append(np.concatenate([p.reshape(-1) for p in planes]))
                out.append(np.stack(crop))
        done = max((s["start"] + (frames - 1) * s["stride"] for s in specs), default=-1)
        for k in [k for k in buf if k < i - 2 * frames - 2]:
            del buf[k]
        if i >= done:
            break
    return out


def sample_photos(photos: list[Path], n: int, frames: int, size: int, rng) -> list[np.ndarray]:
    """``n`` synthetic clips of camera motion over still photos, in the format of
    :func:`sample_clip`: a ``size`` window moving at a constant velocity of up to 6 pixels per
    frame (plus a jitter of one pixel), on the photo or on its 2x area-downscaled copy taken
    at twice the window size (then the motion has half-pixel steps), random flips. Pristine
    detail and sub-pixel motion, which the H.264-coded clips lack."""
    from PIL import Image

    from codec.video import rgb_to_yuv420

    sizes = [Image.open(f).size for f in photos]
    photos = [f for f, (w, h) in zip(photos, sizes) if min(w, h) >= size + 2]
    if not photos:
        raise SystemExit(f"--photo-crops: no training photo is {size + 2} pixels or larger")
    out: list[np.ndarray] = []
    while len(out) < n:  # a draw that does not fit the photo is drawn again
        img = np.asarray(Image.open(photos[int(rng.integers(len(photos)))]).convert("RGB"), np.float64)
        s = 2 if rng.random() < 0.5 else 1
        win = size * s
        v = rng.integers(-6, 7, 2)
        span = np.abs(v) * (frames - 1) + 2 + win
        if np.any(span > img.shape[:2]):
            continue
        y0 = int(rng.integers(1, img.shape[0] - span[0] + 2)) + max(0, -v[0]) * (frames - 1)
        x0 = int(rng.integers(1, img.shape[1] - span[1] + 2)) + max(0, -v[1]) * (frames - 1)
        flip = rng.random() < 0.5
        seq = []
        for t in range(frames):
            jy, jx = rng.integers(-1, 2, 2) if t else (0, 0)
            yy, xx = y0 + v[0] * t + jy, x0 + v[1] * t + jx
            a = img[yy:yy + win, xx:xx + win]
            if s == 2:
                a = a.reshape(size, 2, size, 2, 3).mean((1, 3))
            if flip:
                a = a[:, ::-1]
            seq.append(np.concatenate([pl.reshape(-1) for pl in rgb_to_yuv420(a)]))
        out.append(np.stack(seq))
    return out


def split_planes(a: np.ndarray, size: int):
    """``... x (size*size*3/2)`` -> Y, U, V arrays."""
    n = size * size
    y = a[..., :n].reshape(*a.shape[:-1], size, size)
    u = a[..., n:n + n // 4].reshape(*a.shape[:-1], size // 2, size // 2)
    v = a[..., n + n // 4:].reshape(*a.shape[:-1], size // 2, size // 2)
    return y, u, v


@torch.no_grad()
def intra_recons(seqs: np.ndarray, size: int, n_quality: int, batch: int = 16,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """The shipped image model's reconstruction (noise-free forward pass: rounded latents) of
    each sequence's first frame at the image quality matching each video quality index;
    ``N x n_quality x (size*size*3/2)`` uint8 (YUV 4:2:0 via the codec's internal RGB)."""
    from codec.image import ImageCodec
    from codec.video import rgb_to_yuv420, yuv420_to_rgb

    model = ImageCodec().model.float().to(device)
    inq = model.cfg.n_quality
    y, u, v = split_planes(seqs[:, 0], size)
    rgb = np.stack([yuv420_to_rgb(y[i], u[i], v[i]) for i in range(len(seqs))]) / 255.0
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float().to(device)
    out = np.empty((len(seqs), n_quality, seqs.shape[-1]), np.uint8)
    for k in range(n_quality):
        qi = k * (inq - 1) / (n_quality - 1)
        for s in range(0, len(seqs), batch):
            xb = x[s:s + batch]
            xh = model(xb, torch.full((len(xb),), float(qi), device=device), noise=False)["x_hat"]
            xh = torch.round(xh.clamp(0, 1) * 255).permute(0, 2, 3, 1).double().cpu().numpy()
            for j in range(len(xb)):
                out[s + j, k] = np.concatenate([p.reshape(-1) for p in rgb_to_yuv420(xh[j])])
    return out


def training_clips() -> list[Path]:
    """The clips the crop cache is cut from: all under ``VIDEO`` but the held-out ones."""
    return sorted(p for p in (VIDEO / "compressed").glob("*") if p.stem not in HELD_OUT) + \
        sorted((VIDEO / "raw").glob("*320x192*.y4m"))


def extra_files(folder: Path) -> list[Path]:
    """The files of an ``--extra-clips`` folder, sorted."""
    return sorted(f for f in folder.iterdir() if f.is_file())


def build_cache(out: Path, n: int, frames: int, size: int, n_quality: int, seed: int = 0,
                device: str | torch.device = "cpu", photos: bool = False,
                extra: Path | None = None) -> Path:
    """The crop cache (``n`` crops of the training clips; with ``photos`` ``n`` synthetic
    clips of the training photos; with ``extra`` ``n`` crops of the video files in that
    folder, an equal share each) with its intra reconstructions, built once."""
    kind = "photos_" if photos else ""
    if extra:  # named by the folder and a digest of its files' names and sizes
        files = extra_files(extra)
        digest = hashlib.sha256(repr([(f.name, f.stat().st_size) for f in files]).encode())
        kind = f"extra_{extra.name}_{digest.hexdigest()[:8]}_"
    path = out.parent / f"cache_{kind}{n}_{frames}_{size}_q{n_quality}.npz"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    if extra:
        seqs = []
        for c in files:
            try:
                got = sample_clip(c, max(1, n // len(files)), frames, size, rng)
            except (OSError, ValueError) as e:
                raise SystemExit(f"--extra-clips: {c} is not a readable video ({e})") from None
            print(f"{c.name}: {len(got)} crops", file=sys.stderr)
            seqs += got
        if not seqs:
            raise SystemExit(f"--extra-clips {extra}: no crop of {size} px fits its clips")
    elif photos:
        files = sorted(f for f in PHOTOS.rglob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        seqs = sample_photos(files, n, frames, size, rng)
        print(f"{PHOTOS}: {len(seqs)} synthetic clips", file=sys.stderr)
    else:
        weights = {"bottle-detection": 0.32, "one-by-one-person-detection": 0.32}
        seqs = []
        for c in training_clips():
            share = weights.get(c.stem, 0.3 / 3 if c.stem.startswith("asl") else 0.04)
            got = sample_clip(c, max(1, int(n * share)), frames, size, rng)
            print(f"{c.name}: {len(got)} crops", file=sys.stderr)
            seqs += got
    seqs = np.stack(seqs)
    t = time.time()
    intra = intra_recons(seqs, size, n_quality, device=device)
    print(f"intra reconstructions: {time.time() - t:.0f} s", file=sys.stderr)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, seqs=seqs, intra=intra)
    os.replace(tmp, path)
    return path


def to_packed(a: np.ndarray, size: int, fmt: str) -> torch.Tensor:
    """``B x (size*size*3/2)`` uint8 -> packed B x K x size/2 x size/2 float in [0, 1]."""
    y, u, v = split_planes(a, size)
    if fmt == "rgb":
        from codec.video import yuv420_to_rgb

        rgb = np.stack([yuv420_to_rgb(y[i], u[i], v[i]) for i in range(len(a))])
        return pack_frame(torch.from_numpy(np.rint(rgb) / 255.0).permute(0, 3, 1, 2).float(), "rgb")
    t = lambda p: torch.from_numpy(p.astype(np.float32))[:, None] / 255.0  # noqa: E731
    return pack_frame((t(y), t(u), t(v)), "yuv420")


def cascade(model: VideoModel, seq: torch.Tensor, intra: torch.Tensor, q: torch.Tensor,
            fmt: str, n_p: int, refresh_p: float, warp_w: float, rng, noise: bool = True,
            y_rate_w: float = 1.0):
    """I frame (given) + ``n_p`` P frames. Returns the loss and per-frame (bpp, mse).
    ``y_rate_w`` < 1 discounts the frame latent's rate in the loss (a warm-up that keeps the
    contextual path from collapsing to zero rate behind the motion-compensated prediction)."""
    ref, feat, mv = intra, None, None
    lam = model.lmbda(q) * 255.0 ** 2
    npx = seq.shape[-2] * seq.shape[-1] * 4
    loss, stats = 0.0, []
    for t in range(1, n_p + 1):
        x = seq[:, t]
        refresh = t > 1 and rng.random() < refresh_p
        coder = TrainCoder(noise)
        out = model.p_frame(coder, fmt, q, ref, feat, mv, refresh, x=x)
        bits = coder.bits()
        bpp = (bits["mv"] + bits["y"]) / npx
        mse = ((out["x_hat"] - x) ** 2).mean((1, 2, 3))
        frame_loss = lam * mse + (bits["mv"] + y_rate_w * bits["y"]) / npx
        if warp_w:
            mse_w = ((out["pred"] - x) ** 2).mean((1, 2, 3))
            frame_loss = frame_loss + warp_w * lam * mse_w
        loss = loss + frame_loss.mean() / n_p
        stats.append((bpp.detach(), mse.detach(), (bits["mv"] / npx).detach()))
        ref, feat, mv = round_frame(out["x_hat"]), out["feat"], out["mv"]
    return loss, stats


def fit_quantiles(model: VideoModel, steps: int = 5000, lr: float = 0.02) -> float:
    """Converge the entropy bottlenecks' quantiles (the coder tables' ranges): the auxiliary
    loss depends on nothing but the bottlenecks' own parameters, so it is fitted here with a
    larger step than during training. Returns the final auxiliary loss."""
    params = [model.eb.quantiles, model.mv_eb.quantiles]
    opt = torch.optim.Adam(params, lr=lr)
    for i in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * (0.1 if i > steps * 0.7 else 1.0)
        aux = model.eb.loss() + model.mv_eb.loss()
        opt.zero_grad(set_to_none=True)
        aux.backward()
        opt.step()
    return float(aux)


def export(ckpt: Path, dest: Path, extra: dict | None = None) -> dict:
    from codec.video import export_weights

    st = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = VideoModel(VideoModelConfig.from_dict(st["config"]))
    model.load_state_dict(st["model"])
    aux = fit_quantiles(model)
    print(f"entropy bottleneck quantiles fitted: aux loss {aux:.3f}", file=sys.stderr)
    info = {"steps": st["step"], "train_seconds": round(st["elapsed"], 1), "data": st.get("data", ""),
            "intra": "image_small (codec/weights/image_small.safetensors)", **(extra or {})}
    return export_weights(model, dest, info)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def _psnr(mse: float) -> float:
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def code_clip(path: Path, frames: int, quality: float, weights=None, refresh_period: int = 32,
              intra_period: int = -1, check: bool = True, threads: int = 1,
              adaptive_intra: bool = False) -> dict:
    """Encode the first ``frames`` frames of a clip (YUV 4:2:0), decode the stream and check
    that it equals the encoder's reconstruction; bpp, per-frame PSNR (Y and YUV 6:1:1) and
    encode / decode frames per second. Without ``adaptive_intra`` only ``intra_period`` places
    intra frames and there are no copy blocks (what the P-frame model alone does, with skip
    frames, as in the registry's measurements); the count of intra frames is reported."""
    import io

    from codec.video import VideoDecoder, VideoEncoder
    from tools.eval_media import read_clip

    v = read_clip(path, frames)
    buf = io.BytesIO()
    t0 = time.time()
    with VideoEncoder(buf, v.width, v.height, fmt="yuv420", quality=quality, weights=weights,
                      refresh_period=refresh_period, intra_period=intra_period, fps=v.fps,
                      threads=threads, adaptive_intra=adaptive_intra,
                      copy_blocks=adaptive_intra) as enc:
        recs = [enc.encode((v.y[t], v.u[t], v.v[t])) for t in range(v.frames)]
    t_enc = time.time() - t0
    res = {"clip": path.name, "frames": v.frames, "size": [v.width, v.height],
           "quality": enc.quality, "refresh_period": refresh_period,
           "adaptive_intra": adaptive_intra, "intra_frames": enc.intra_frames,
           "bpp": round(len(buf.getvalue()) * 8 / (v.frames * v.width * v.height), 4),
           "bpp_per_frame": [round(b * 8 / (v.width * v.height), 4) for b in enc.frame_bytes]}
    mses = [[_mse(p, rp) for p, rp in zip((v.y[t], v.u[t], v.v[t]), r)] for t, r in enumerate(recs)]
    py = [_psnr(m[0]) for m in mses]
    pyuv = [_psnr((4 * m[0] + m[1] + m[2]) / 6) for m in mses]  # samples of 4:2:0 weighted
    res.update({"psnr_y": round(float(np.mean(py)), 3), "psnr_yuv": round(float(np.mean(pyuv)), 3),
                "psnr_y_per_frame": [round(p, 2) for p in py], "encode_fps": round(v.frames / t_enc, 3)})
    if check:
        t0 = time.time()
        out = list(VideoDecoder(buf.getvalue(), weights=weights, threads=threads))
        res["decode_fps"] = round(v.frames / (time.time() - t0), 3)
        res["decoded_equals_encoder"] = len(out) == len(recs) and all(
            all(np.array_equal(a, b) for a, b in zip(o, r)) for o, r in zip(out, recs))
    return res


def code_anchor(path: Path, frames: int, name: str) -> list[dict]:
    """bpp and mean PSNR-Y of a classic codec (``tools.classic``: low delay, one intra frame)
    at each of its CRF points on the same frames."""
    from tools.classic import VIDEO_CODECS
    from tools.eval_media import read_clip

    v = read_clip(path, frames)
    codec = VIDEO_CODECS[name]()
    out = []
    for crf in codec.settings:
        data = codec.encode(v, crf)
        d = codec.decode(data)
        py = [_psnr(_mse(v.y[t], d.y[t])) for t in range(v.frames)]
        out.append({"clip": path.name, "codec": name, "crf": crf, "frames": v.frames,
                    "bpp": round(len(data) * 8 / (v.frames * v.width * v.height), 4),
                    "psnr_y": round(float(np.mean(py)), 3)})
    return out


class _Loss(torch.nn.Module):
    """The training loss (:func:`cascade`) as a module's forward, what DDP wraps."""

    def __init__(self, model: VideoModel):
        super().__init__()
        self.model = model

    def forward(self, *args, **kw):
        return cascade(self.model, *args, **kw)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small",
                    help=f"a preset ({', '.join(sorted(CONFIGS))}) or a JSON file "
                         '{"model": {...}, "train": {...}}')
    ap.add_argument("--out", default="out/train_video/small")
    ap.add_argument("--crops", type=int, default=1100, help="cached crop sequences")
    ap.add_argument("--frames", type=int, default=5, help="frames per cached sequence")
    ap.add_argument("--photo-crops", type=int, default=0,
                    help="also train on this many synthetic clips of camera motion over the "
                         "training photos (a second cache)")
    ap.add_argument("--extra-clips", type=Path, default=None, metavar="DIR",
                    help="also train on crops of the video files in DIR (clips of your own)")
    ap.add_argument("--extra-crops", type=int, default=700, help="crops of --extra-clips")
    ap.add_argument("--size", type=int, default=192, help="cached crop size")
    ap.add_argument("--crop-single", type=int, default=128,
                    help="random sub-crop size in the single-P-frame stage (faster steps)")
    ap.add_argument("--batch", type=int, default=4, help="per process")
    ap.add_argument("--single-steps", type=int, default=400, help="steps of single P frames")
    ap.add_argument("--max-p", type=int, default=3, help="longest cascade (P frames)")
    ap.add_argument("--refresh-p", type=float, default=0.25)
    ap.add_argument("--q-min", type=float, default=0.0,
                    help="train qualities uniform in [Q_MIN, n_quality - 1] (a high-rate fine-tune)")
    ap.add_argument("--rgb-p", type=float, default=0.25, help="share of RGB batches")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--grow-decoder-blocks", type=int_list,
                    default=None, metavar="B8,B4,B2",
                    help="residual blocks of the contextual decoder at H/8, H/4, H/2: on --init "
                         "or resume, a model with fewer grows to these (added blocks start as "
                         "the identity)")
    ap.add_argument("--y-ramp-start", type=int, default=10 ** 9,
                    help="from this step, the frame latent's rate weight is --y-w0 (for "
                         "--y-hold steps), then ramps to 1")
    ap.add_argument("--y-ramp-steps", type=int, default=600)
    ap.add_argument("--y-hold", type=int, default=0, help="steps at --y-w0 before the ramp")
    ap.add_argument("--y-w0", type=float, default=0.2)
    ap.add_argument("--eb-lr-gain", type=float, default=10.0,
                    help="learning-rate factor of the factorized priors' densities")
    ap.add_argument("--decay-step", type=int, default=10 ** 9)
    ap.add_argument("--decay", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=10 ** 9)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=200)
    add_run_args(ap, ckpt_every=120.0)
    ap.add_argument("--export", default="", help="export <out>/last.pt to this weights path and exit")
    ap.add_argument("--measure", nargs="*", metavar="CLIP",
                    help="code these clips (default: the held-out carphone and asl_book) with "
                         "the shipped (or --weights) model and print JSON results, then exit")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--frames-measured", type=int, default=32)
    ap.add_argument("--qualities", default="0,3")
    ap.add_argument("--refresh", type=int, default=32, help="refresh period when measuring")
    ap.add_argument("--no-check", action="store_true", help="measure without decoding")
    ap.add_argument("--adaptive-intra", action="store_true",
                    help="measure with the encoder's adaptive intra frames (as `ncodec encode`)")
    ap.add_argument("--anchors", default="", help="also measure these classic codecs (x264,x265)")
    args, cfg = parse_with_config(ap, argv, CONFIGS, VideoModelConfig)
    if args.crops < 0 or args.photo_crops < 0 or args.crops + args.photo_crops == 0:
        ap.error("--crops / --photo-crops: counts of 0 or more, not both 0")
    if args.extra_clips is not None:
        if not args.extra_clips.is_dir():
            ap.error(f"--extra-clips {args.extra_clips}: not a folder")
        if not extra_files(args.extra_clips):
            ap.error(f"--extra-clips {args.extra_clips}: no files there")
        if args.extra_crops < 1:
            ap.error(f"--extra-crops must be 1 or more, not {args.extra_crops}")
    if not 0.0 <= args.q_min <= cfg.n_quality - 1:
        ap.error(f"--q-min must lie in [0, {cfg.n_quality - 1}], not {args.q_min:g}")
    if args.measure is not None:
        clips = [Path(c) for c in args.measure] or [VIDEO / "compressed" / f"{c}{e}" for c, e in
                                                    (("carphone_pristine", ".mp4"), ("asl_book", ".mkv"))]
        for c in clips:
            for q in (float(x) for x in args.qualities.split(",")):
                r = code_clip(c, args.frames_measured, q, args.weights, args.refresh,
                              check=not args.no_check, threads=args.threads,
                              adaptive_intra=args.adaptive_intra)
                print(json.dumps(r), flush=True)
            for a in filter(None, args.anchors.split(",")):
                for r in code_anchor(c, args.frames_measured, a):
                    print(json.dumps(r), flush=True)
        return

    export_or_train(args, cfg, VideoModelConfig, export, train)


def train(args, cfg: VideoModelConfig, run: TrainRun) -> None:
    dev = run.device
    if args.grow_decoder_blocks and args.grow_decoder_blocks != cfg.dec_blocks:
        if len(args.grow_decoder_blocks) != 3 or any(
                n < o for n, o in zip(args.grow_decoder_blocks, cfg.dec_blocks)):
            raise SystemExit(f"--grow-decoder-blocks: three counts, none below the model's "
                             f"{','.join(map(str, cfg.dec_blocks))}")
        cfg = replace(cfg, dec_blocks=args.grow_decoder_blocks)
        run.say(f"contextual decoder grown to blocks {cfg.dec_blocks}")
    model = VideoModel(cfg).to(dev)
    main_params, aux_params = split_params(model)
    # the factorized priors' densities learn with a larger step: on a short CPU budget the
    # hyper-latents' rate otherwise stays high for thousands of steps
    is_eb = lambda n: n.startswith(("eb.", "mv_eb."))  # noqa: E731
    opt = torch.optim.Adam([
        {"params": [p for n, p in model.named_parameters() if not n.endswith("quantiles") and not is_eb(n)],
         "gain": 1.0},
        {"params": [p for n, p in model.named_parameters() if not n.endswith("quantiles") and is_eb(n)],
         "gain": args.eb_lr_gain}], lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=3e-3)
    step = run.resume(model, opt, strict=False)
    sources = ((args.crops, False, None), (args.photo_crops, True, None),
               (args.extra_crops if args.extra_clips else 0, False, args.extra_clips))
    caches = [np.load(run.main_first(lambda: build_cache(
        run.out, n, args.frames, args.size, cfg.n_quality, args.seed, dev, photos, extra)))
        for n, photos, extra in sources if n]
    n_extra = len(caches[-1]["seqs"]) if args.extra_clips else 0
    seqs = np.concatenate([c["seqs"] for c in caches])
    intra = np.concatenate([c["intra"] for c in caches])
    n_eval = min(8, len(seqs) // 10)
    ev_seqs, ev_intra = seqs[:n_eval], intra[:n_eval]  # a fixed monitoring batch
    rng = np.random.default_rng(run.data_seed(args.seed + step))
    # per rank, the format (RGB / YUV heads), the cascade length and the refresh path vary:
    # parameters unused in a step are expected
    loss_fn = run.wrap(_Loss(model), find_unused=True)

    def checkpoint():
        run.save(lambda: {
            "model": model.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
            "step": step, "elapsed": run.elapsed, "config": cfg.to_dict(),
            "data": f"{len(seqs) - args.photo_crops - n_extra} crops of {args.frames} frames "
                    f"({args.size}x{args.size}) from {DATA_NOTE}"
                    + (f"; {args.photo_crops} synthetic clips of camera motion over "
                       "the training photos" if args.photo_crops else "")
                    + (f"; {n_extra} crops of the clips in {args.extra_clips.name}/: "
                       + ", ".join(f.name for f in extra_files(args.extra_clips))
                       if n_extra else "")})

    def batch(idx, qs, fmt, crop):
        sq = torch.stack([to_packed(seqs[idx, t], args.size, fmt) for t in range(args.frames)], 1)
        qi = np.clip(np.rint(qs.numpy()), 0, cfg.n_quality - 1).astype(int)
        ir = to_packed(intra[idx, qi], args.size, fmt)
        if crop < args.size:  # a random sub-crop, in the packed (H/2) domain
            c, oy, ox = crop // 2, *rng.integers(0, (args.size - crop) // 2 + 1, 2)
            sq, ir = sq[..., oy:oy + c, ox:ox + c], ir[..., oy:oy + c, ox:ox + c]
        return sq.to(dev), ir.to(dev)

    nq = cfg.n_quality
    acc, n_acc = np.zeros(4), 0
    model.train()
    run.start_loop(step, args.steps)
    while step < args.steps:
        single = step < args.single_steps
        n_p = 1 if single else int(rng.integers(2, args.max_p + 1))
        fmt = "rgb" if rng.random() < args.rgb_p else "yuv420"
        idx = rng.integers(0, len(seqs), args.batch)
        q = args.q_min + torch.rand(args.batch) * (nq - 1 - args.q_min)
        sq, ir = batch(idx, q, fmt, args.crop_single if single else args.size)
        q = q.to(dev)
        decayed = step >= args.decay_step or run.decayed
        warm = min(1.0, (step + 1 - run.warm_start) / 200) * (args.decay if decayed else 1.0)
        for g in opt.param_groups:
            g["lr"] = args.lr * warm * g.get("gain", 1.0)
        ramp = min(1.0, max(0.0, (step - args.y_ramp_start - args.y_hold) / args.y_ramp_steps))
        y_w = 1.0 if step < args.y_ramp_start else args.y_w0 + (1.0 - args.y_w0) * ramp
        with run.autocast():
            loss, stats = loss_fn(sq, ir, q, fmt, n_p, args.refresh_p, 1.0 if single else 0.1, rng,
                                  y_rate_w=y_w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        aux = model.eb.loss() + model.mv_eb.loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        step += 1
        if math.isfinite(loss.item()):
            bpp = torch.stack([s[0] for s in stats]).float().mean().item()
            psnr = torch.stack([10 * torch.log10(1 / s[1].float().clamp_min(1e-10))
                                for s in stats]).mean().item()
            mvb = torch.stack([s[2] for s in stats]).float().mean().item()
            acc += [loss.item(), bpp, psnr, mvb]
            n_acc += 1
        if step % args.log_every == 0 and n_acc:
            a = acc / n_acc
            run.log({"step": step, "time": round(run.elapsed, 1), "n_p": n_p,
                     "loss": round(a[0], 4), "bpp": round(a[1], 4), "psnr": round(a[2], 3),
                     "mv_bpp": round(a[3], 4), "aux": round(aux.item(), 2)})
            acc, n_acc = np.zeros(4), 0
        if step % args.eval_every == 0 and run.is_main:
            model.eval()
            res = {}
            with torch.no_grad():
                for qv in (0.0, float(nq - 1)):
                    qq = torch.full((n_eval,), qv, device=dev)
                    sq_e = torch.stack([to_packed(ev_seqs[:, t], args.size, "yuv420")
                                        for t in range(args.frames)], 1).to(dev)
                    ir_e = to_packed(ev_intra[:, int(qv)], args.size, "yuv420").to(dev)
                    _, st = cascade(model, sq_e, ir_e, qq, "yuv420", args.frames - 1, 0.0, 0.0,
                                    rng, noise=False)
                    res[f"q{qv:g}"] = [{"bpp": round(s[0].mean().item(), 4),
                                        "psnr": round((10 * torch.log10(1 / s[1])).mean().item(), 2)}
                                       for s in st]
            run.log({"step": step, "time": round(run.elapsed, 1), "eval_p_frames": res})
            model.train()
        if not run.step_done(checkpoint, loss=f"{loss.item():.3f}"):
            break
    checkpoint()
    run.dump_params(model)


if __name__ == "__main__":
    main()
