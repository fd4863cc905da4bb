"""Train the learned image codec (variable rate: one model, the whole rate range).

    python -m tools.train_image --config small --out out/train_image/small

Random crops from ../shared/datasets/train (decoded once into a cached uint8 array), the
quality sampled per image (continuous, so the interpolated scalers are trained too) with its
rate-distortion trade-off ``lambda(q)``; loss ``lambda * 255^2 * MSE + bpp``. Checkpoints
(model, optimizers, step, wall time) every ``--ckpt-every`` seconds; an existing checkpoint in
``--out`` is resumed. Log lines (JSON) go to ``<out>/log.jsonl``; Kodak crops are evaluated
every ``--eval-every`` steps. ``--export`` writes the weights file the codec ships.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.image import CONFIGS, ImageModel, ImageModelConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ncodec"


def build_cache(src: Path, max_side: int = 768) -> Path:
    """Decode every training photo once (RGB, the longer side scaled down to ``max_side``
    with Lanczos, which also removes some JPEG noise) into one flat uint8 array."""
    from PIL import Image

    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out = CACHE / f"train_images_{len(files)}_{max_side}.npz"
    if out.exists():
        return out
    arrays, shapes = [], []
    for f in files:
        im = Image.open(f).convert("RGB")
        s = max_side / max(im.size)
        if s < 1:
            im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
        a = np.asarray(im, np.uint8)
        arrays.append(a.reshape(-1))
        shapes.append(a.shape)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, data=np.concatenate(arrays), shapes=np.array(shapes, np.int64))
    tmp.rename(out)
    return out


class CropSampler:
    def __init__(self, cache: Path, seed: int):
        d = np.load(cache)
        self.data, self.shapes = d["data"], d["shapes"]
        self.starts = np.concatenate([[0], np.cumsum(self.shapes.prod(1))[:-1]])
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int, size: int) -> torch.Tensor:
        out = np.empty((n, size, size, 3), np.uint8)
        for i in range(n):
            while True:
                k = self.rng.integers(len(self.shapes))
                h, w, _ = self.shapes[k]
                if h >= size and w >= size:
                    break
            img = self.data[self.starts[k]:self.starts[k] + h * w * 3].reshape(h, w, 3)
            y, x = self.rng.integers(h - size + 1), self.rng.integers(w - size + 1)
            c = img[y:y + size, x:x + size]
            if self.rng.random() < 0.5:
                c = c[:, ::-1]
            out[i] = c
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def rd_loss(model: ImageModel, x: torch.Tensor, q: torch.Tensor, noise: bool = True):
    """Per-batch loss and per-image bpp / mse."""
    out = model(x, q, noise=noise)
    npx = x.shape[2] * x.shape[3]
    bits = sum((-torch.log2(l)).sum((1, 2, 3)) for l in out["likelihoods"]["y"])
    bits = bits + (-torch.log2(out["likelihoods"]["z"])).sum((1, 2, 3))
    bpp = bits / npx
    mse = ((out["x_hat"] - x) ** 2).mean((1, 2, 3))
    lam = model.lmbda(q)
    loss = (lam * 255.0 ** 2 * mse + bpp).mean()
    return loss, bpp, mse, out


def kodak_crops(n: int = 6, size: int = 256) -> torch.Tensor | None:
    from PIL import Image

    files = sorted((DATA / "kodak").glob("*.png"))[:n]
    if not files:
        return None
    xs = []
    for f in files:
        a = np.asarray(Image.open(f).convert("RGB"))
        h, w, _ = a.shape
        a = a[(h - size) // 2:(h + size) // 2, (w - size) // 2:(w + size) // 2]
        xs.append(torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(xs)


@torch.no_grad()
def evaluate(model: ImageModel, x: torch.Tensor, qs=(0.0, 3.5, 7.0)) -> dict:
    model.eval()
    res = {}
    for q in qs:
        qq = torch.full((x.shape[0],), min(q, model.cfg.n_quality - 1))
        _, bpp, mse, _ = rd_loss(model, x, qq, noise=False)
        psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean().item()
        res[f"q{q:g}"] = {"bpp": round(bpp.mean().item(), 4), "psnr": round(psnr, 3)}
    model.train()
    return res


def save_ckpt(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def export(ckpt: Path, dest: Path, extra: dict | None = None) -> dict:
    """Write the shipped weights (safetensors, with coder tables) and the registry JSON."""
    from codec.image import export_weights

    st = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = ImageModel(ImageModelConfig.from_dict(st["config"]))
    model.load_state_dict(st["model"])
    info = {"steps": st["step"], "train_seconds": round(st["elapsed"], 1),
            "data": st.get("data", ""), **(extra or {})}
    return export_weights(model, dest, info)


def bench(args) -> None:
    """CPU seconds (process time, robust to other load) and wall seconds per training step at
    the late crop/batch, contiguous vs channels-last, ``args.threads`` threads."""
    torch.set_num_threads(args.threads)
    rows = []
    for cl in (False, True):
        torch.manual_seed(args.seed)
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = ImageModel(CONFIGS[args.config]).to(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        x = torch.rand(args.batch_late, 3, args.crop_late, args.crop_late).contiguous(
            memory_format=fmt)
        for i in range(3 + args.bench):
            if i == 3:
                t_cpu, t_wall = time.process_time(), time.time()
            loss, *_ = rd_loss(model, x, torch.rand(x.shape[0]) * (model.cfg.n_quality - 1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        rows.append({"channels_last": cl,
                     "cpu_s_per_step": round((time.process_time() - t_cpu) / args.bench, 4),
                     "wall_s_per_step": round((time.time() - t_wall) / args.bench, 4)})
    res = {"config": args.config, "batch": args.batch_late, "crop": args.crop_late,
           "threads": args.threads, "steps": args.bench, "torch": torch.__version__,
           "cpu_count": os.cpu_count(), "rows": rows}
    dest = ROOT / "results" / "bench" / "train_image_speed.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


def start_run(args) -> None:
    """The process settings of a training run: pid file, torch threads (denormals flushed),
    seed."""
    if args.pid_file:
        Path(args.pid_file).write_text(str(os.getpid()))
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)


def split_params(model: torch.nn.Module) -> tuple[list, list]:
    """(main parameters, auxiliary parameters: the entropy bottlenecks' quantiles)."""
    main, aux = [], []
    for n, p in model.named_parameters():
        (aux if n.endswith("quantiles") else main).append(p)
    return main, aux


def stop_flag() -> dict:
    """``{"now": False}``, set to True by SIGTERM/SIGINT so the loop ends with a checkpoint."""
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("now", True))
    return stop


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small", choices=sorted(CONFIGS))
    ap.add_argument("--out", default="out/train_image/small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--crop-late", type=int, default=192, help="crop size after --late-step")
    ap.add_argument("--late-step", type=int, default=6000)
    ap.add_argument("--batch-late", type=int, default=6)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--decay-step", type=int, default=10 ** 9,
                    help="from this step on, the learning rate is --lr times --decay")
    ap.add_argument("--decay", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10 ** 9)
    ap.add_argument("--ckpt-every", type=float, default=240.0, help="seconds")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared CPU")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="NHWC memory layout (about 20 %% less CPU time per step here)")
    ap.add_argument("--pid-file", default="")
    ap.add_argument("--bench", type=int, default=0,
                    help="time this many training steps in each memory layout (fresh model, "
                         "no checkpoint), write results/bench/train_image_speed.json and exit")
    ap.add_argument("--export", default="", help="export <out>/last.pt to this weights path and exit")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    if args.export:
        print(json.dumps(export(ckpt, Path(args.export)), indent=1))
        return
    if args.bench:
        bench(args)
        return
    start_run(args)
    cfg = CONFIGS[args.config]
    model = ImageModel(cfg)
    main_params, aux_params = split_params(model)
    opt = torch.optim.Adam(main_params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    step, elapsed = 0, 0.0
    if ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        aux_opt.load_state_dict(st["aux_opt"])
        step, elapsed = st["step"], st["elapsed"]
        for g in opt.param_groups:
            g["lr"] = args.lr
        print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    cache = build_cache(DATA / "train")
    sampler = CropSampler(cache, args.seed + step)
    kodak = kodak_crops()
    log = open(out / "log.jsonl", "a")
    stop = stop_flag()

    def checkpoint():
        save_ckpt(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(),
                         "aux_opt": aux_opt.state_dict(), "step": step, "elapsed": elapsed,
                         "config": cfg.to_dict(), "data": f"{len(sampler.shapes)} photos from "
                         "shared/datasets/train (CBSD432, CSun_Hays80, wikipedia_photos)"})

    model.train()
    t_last = time.time()
    t_ckpt = time.time()
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
    nq = cfg.n_quality
    while step < args.steps and not stop["now"]:
        size = args.crop if step < args.late_step else args.crop_late
        batch = args.batch if step < args.late_step else args.batch_late
        x = sampler.batch(batch, size).contiguous(memory_format=fmt)
        q = torch.rand(batch) * (nq - 1)
        warm = min(1.0, (step + 1) / 300) * (args.decay if step >= args.decay_step else 1.0)
        for g in opt.param_groups:
            g["lr"] = args.lr * warm
        loss, bpp, mse, _ = rd_loss(model, x, q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        aux = model.entropy_bottleneck.loss()
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        step += 1
        now = time.time()
        elapsed += min(now - t_last, 60.0)  # a paused process does not count
        t_last = now
        if math.isfinite(loss.item()):
            acc["loss"] += loss.item()
            acc["bpp"] += bpp.mean().item()
            acc["psnr"] += (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item()
            acc["n"] += 1
        if step % args.log_every == 0 and acc["n"]:
            n = acc.pop("n")
            rec = {"step": step, "time": round(elapsed, 1), "crop": size, "batch": batch,
                   **{k: round(v / n, 4) for k, v in acc.items()}, "aux": round(aux.item(), 2)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
        if kodak is not None and step % args.eval_every == 0:
            log.write(json.dumps({"step": step, "time": round(elapsed, 1),
                                  "kodak_crops": evaluate(model, kodak)}) + "\n")
            log.flush()
        if now - t_ckpt > args.ckpt_every:
            checkpoint()
            t_ckpt = time.time()
    checkpoint()


if __name__ == "__main__":
    main()
