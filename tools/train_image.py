"""Train the learned image codec (variable rate: one model, the whole rate range).

    python -m tools.train_image --config small --out out/train_image/small

Random crops from ../shared/datasets/train (decoded once into a cached uint8 array), the
quality sampled per image (continuous, so the interpolated scalers are trained too) with its
rate-distortion trade-off ``lambda(q)``; loss ``lambda * 255^2 * MSE + bpp``. Checkpoints
(model, optimizers, step, wall time) every ``--ckpt-every`` seconds; an existing checkpoint in
``--out`` is resumed. Log lines (JSON) go to ``<out>/log.jsonl``; Kodak crops are evaluated
every ``--eval-every`` steps. ``--export`` writes the weights file the codec ships.

Runs on the CPU, on a GPU (``--device``) or data-parallel under ``torchrun`` (``--batch`` per
process), optionally with ``--bf16`` autocast; ``--config`` also takes a JSON file (see
:mod:`tools.train_common`).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from models.image import CONFIGS, ImageModel, ImageModelConfig
from tools.train_common import (TrainRun, add_run_args, export_or_train, int_list,
                                 parse_with_config, split_params)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ncodec"


def build_cache(src: Path, max_side: int = 768) -> Path:
    """Decode every training photo once (RGB, the longer side scaled down to ``max_side``
    with Lanczos, which also removes some JPEG noise) into one flat uint8 array."""
    from PIL import Image

    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"no training photos in {src}")
    tag = "" if src.resolve() == (DATA / "train").resolve() else \
        "_" + hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:8]
    out = CACHE / f"train_images_{len(files)}_{max_side}{tag}.npz"
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


def rd_loss(model: ImageModel, x: torch.Tensor, q: torch.Tensor, noise: bool = True,
            decoder_only: bool = False):
    """Per-batch loss and per-image bpp / mse; ``decoder_only``: the latent pass without
    gradients and without noise (the latents and rate the codec codes; only the distortion
    term trains)."""
    out = model(x, q, noise=noise and not decoder_only, latent_grad=not decoder_only)
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
        qq = torch.full((x.shape[0],), min(q, model.cfg.n_quality - 1), device=x.device)
        _, bpp, mse, _ = rd_loss(model, x, qq, noise=False)
        psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean().item()
        res[f"q{q:g}"] = {"bpp": round(bpp.mean().item(), 4), "psnr": round(psnr, 3)}
    model.train()
    return res


def export(ckpt: Path, dest: Path, extra: dict | None = None) -> dict:
    """Write the shipped weights (safetensors, with coder tables) and the registry JSON."""
    from codec.image import export_weights

    st = torch.load(ckpt, map_location="cpu", weights_only=False)
    model = ImageModel(ImageModelConfig.from_dict(st["config"]))
    model.load_state_dict(st["model"])
    info = {"steps": st["step"], "train_seconds": round(st["elapsed"], 1),
            "data": st.get("data", ""), **(extra or {})}
    return export_weights(model, dest, info)


def bench(args, cfg: ImageModelConfig) -> None:
    """CPU seconds (process time, robust to other load) and wall seconds per training step at
    the late crop/batch, contiguous vs channels-last, ``args.threads`` threads."""
    torch.set_num_threads(args.threads)
    rows = []
    for cl in (False, True):
        torch.manual_seed(args.seed)
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = ImageModel(cfg).to(memory_format=fmt)
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


class _Loss(torch.nn.Module):
    """The training loss as a module's forward (what DDP wraps): ``(loss, bpp, mse)``."""

    def __init__(self, model: ImageModel, decoder_only: bool = False):
        super().__init__()
        self.model, self.decoder_only = model, decoder_only

    def forward(self, x: torch.Tensor, q: torch.Tensor):
        return rd_loss(self.model, x, q, decoder_only=self.decoder_only)[:3]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small",
                    help=f"a preset ({', '.join(sorted(CONFIGS))}) or a JSON file "
                         '{"model": {...}, "train": {...}}')
    ap.add_argument("--out", default="out/train_image/small")
    ap.add_argument("--data", default=str(DATA / "train"), help="folder of training photos")
    ap.add_argument("--batch", type=int, default=8, help="per process")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--crop-late", type=int, default=192, help="crop size after --late-step")
    ap.add_argument("--late-step", type=int, default=6000)
    ap.add_argument("--batch-late", type=int, default=6)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--decay-step", type=int, default=10 ** 9,
                    help="from this step on, the learning rate is --lr times --decay")
    ap.add_argument("--decay", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10 ** 9)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=20)
    add_run_args(ap, ckpt_every=240.0)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="NHWC memory layout (about 20 %% less CPU time per step here)")
    ap.add_argument("--grow-blocks", type=int_list,
                    default=None, metavar="B0,B1,B2,B3",
                    help="on resume, deepen the model to these MetaFormer blocks per stage "
                         "(added blocks start as identities: the function is unchanged)")
    ap.add_argument("--grow-widths", type=int_list,
                    default=None, metavar="W1,W2,W3",
                    help="on resume, widen the transform stages at 1/2, 1/4, 1/8 to these "
                         "channel counts (added channels start unseen: the function is unchanged)")
    ap.add_argument("--grow-latent", type=int, default=None, metavar="M",
                    help="on resume, grow the latent to M channels in added slices (the "
                         "reconstruction is unchanged; the added channels cost rate until "
                         "trained)")
    ap.add_argument("--grow-decoder-blocks", type=int_list,
                    default=None, metavar="B0,B1,B2,B3",
                    help="on resume, deepen only the synthesis transform (as --grow-blocks)")
    ap.add_argument("--grow-decoder-widths", type=int_list,
                    default=None, metavar="W1,W2,W3",
                    help="on resume, widen only the synthesis transform (as --grow-widths)")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--decoder-only", action="store_true",
                      help="train only the synthesis transform and its quantization scalers on "
                           "the latents the fixed encoder codes: the rate and the bitstream of "
                           "every image stay as they are, only the reconstruction improves")
    only.add_argument("--encoder-only", action="store_true",
                      help="train only the analysis side (g_a, h_a and the encoder's quantization "
                           "scalers; --grow-blocks / --grow-widths grow it alone) against the "
                           "fixed decoder and entropy model: every decoder-side weight stays as "
                           "it is, only the latents the encoder chooses change")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the training step's forward (a few minutes of compiling "
                         "first; on this CPU 10 %% less time per step)")
    ap.add_argument("--bench", type=int, default=0,
                    help="time this many training steps in each memory layout (fresh model, "
                         "no checkpoint), write results/bench/train_image_speed.json and exit")
    ap.add_argument("--export", default="", help="export <out>/last.pt to this weights path and exit")
    args, cfg = parse_with_config(ap, argv, CONFIGS, ImageModelConfig)

    if args.bench:
        bench(args, cfg)
        return
    export_or_train(args, cfg, ImageModelConfig, export, train)


#: the parameters of each side that ``--decoder-only`` / ``--encoder-only`` train alone
PARTS = {"decoder": ("g_s.", "q_dec"), "encoder": ("g_a.", "h_a.", "q_enc")}


def trainable(model: ImageModel, part: str | None) -> list[tuple[str, torch.nn.Parameter]]:
    """The named parameters the main optimizer trains: all but the bottleneck's quantiles, or
    with ``part`` (a key of :data:`PARTS`) only that side's parameters; the others, and with
    ``part`` the quantiles too, are frozen (``requires_grad`` off)."""
    out = []
    for n, p in model.named_parameters():
        train = not n.endswith("quantiles") and (part is None or n.startswith(PARTS[part]))
        p.requires_grad_(train or (n.endswith("quantiles") and part is None))
        if train:
            out.append((n, p))
    return out


def grow(model: ImageModel, opt, aux_opt, grow_args: dict, lr: float, part: str | None):
    """:meth:`ImageModel.grown` (``grow_args``: its keywords) with new optimizers over the
    copy: the Adam state of every inherited parameter is carried over (a widened one's added
    entries start with a zero first moment and the mean second moment of the old entries;
    added blocks start without state), the auxiliary optimizer's (the bottleneck's quantiles)
    as it is."""
    new, names = model.grown(**grow_args)
    new.to(next(model.parameters()).device)  # before the optimizers take its parameters
    main_names = lambda m: [n for n, _ in trainable(m, part)]  # noqa: E731
    old_index = {n: i for i, n in enumerate(main_names(model))}
    main, aux = [p for _, p in trainable(new, part)], split_params(new)[1]
    new_opt = torch.optim.Adam(main, lr=lr)
    new_aux = torch.optim.Adam(aux, lr=1e-3)
    new_aux.load_state_dict(aux_opt.state_dict())
    old_state = opt.state_dict()["state"]
    sd = new_opt.state_dict()
    sd["state"] = {}
    for i, p in enumerate(main):
        st = old_state.get(old_index.get(names.get(main_names(new)[i], ""), -1))
        if st is None:
            continue
        st = dict(st)
        if st["exp_avg"].shape != p.shape:
            lead = tuple(slice(0, d) for d in st["exp_avg"].shape)
            m1, m2 = torch.zeros_like(p), torch.full_like(p, st["exp_avg_sq"].mean().item())
            m1[lead], m2[lead] = st["exp_avg"], st["exp_avg_sq"]
            st["exp_avg"], st["exp_avg_sq"] = m1, m2
        sd["state"][i] = st
    new_opt.load_state_dict(sd)
    return new, new_opt, new_aux


def train(args, cfg: ImageModelConfig, run: TrainRun) -> None:
    dev = run.device
    model = ImageModel(cfg)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    if args.decoder_only and (args.grow_blocks or args.grow_widths or args.grow_latent):
        raise SystemExit("--decoder-only: grow the synthesis with --grow-decoder-blocks / "
                         "--grow-decoder-widths (--grow-blocks / --grow-widths / --grow-latent "
                         "add encoder or entropy-model parts that a decoder-only run cannot train)")
    if args.encoder_only and (args.grow_decoder_blocks or args.grow_decoder_widths
                              or args.grow_latent):
        raise SystemExit("--encoder-only: grow the analysis with --grow-blocks / --grow-widths "
                         "(--grow-decoder-* / --grow-latent add decoder or entropy-model parts "
                         "that an encoder-only run cannot train)")
    part = "decoder" if args.decoder_only else "encoder" if args.encoder_only else None
    main_params = [p for _, p in trainable(model, part)]
    opt = torch.optim.Adam(main_params, lr=args.lr)
    aux_opt = torch.optim.Adam(split_params(model)[1], lr=1e-3)
    step = run.resume(model, opt, aux_opt)
    grow_args = {"blocks": args.grow_blocks, "widths": args.grow_widths, "m": args.grow_latent,
                 "dec_blocks": args.grow_decoder_blocks, "dec_widths": args.grow_decoder_widths}
    if args.encoder_only:  # the synthesis keeps its size
        grow_args.update(dec_blocks=model.dec_blocks, dec_widths=model.dec_widths)
    if (args.grow_blocks and tuple(args.grow_blocks) != cfg.blocks) or (
            args.grow_widths and tuple(args.grow_widths) != model.widths) or (
            args.grow_latent and args.grow_latent != cfg.m) or (
            args.grow_decoder_blocks and tuple(args.grow_decoder_blocks) != model.dec_blocks) or (
            args.grow_decoder_widths and tuple(args.grow_decoder_widths) != model.dec_widths):
        try:
            model, opt, aux_opt = grow(model, opt, aux_opt, grow_args, args.lr, part)
        except ValueError as e:
            raise SystemExit(f"--grow-*: {e}") from None
        model.to(memory_format=fmt)
        cfg, main_params = model.cfg, [p for _, p in trainable(model, part)]
        run.say(f"grown to blocks {cfg.blocks}, widths {model.widths}, decoder blocks "
                f"{model.dec_blocks}, widths {model.dec_widths}, {cfg.m} latent channels at "
                f"step {step}")
    cache = run.main_first(lambda: build_cache(Path(args.data)))
    sampler = CropSampler(cache, run.data_seed(args.seed + step))
    kodak = kodak_crops() if run.is_main else None
    loss_fn = run.wrap(_Loss(model, args.decoder_only))
    if args.compile:  # one graph per crop size (two in a run: --crop, then --crop-late)
        loss_fn = torch.compile(loss_fn, dynamic=False)

    def checkpoint():
        run.save(lambda: {
            "model": model.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
            "step": step, "elapsed": run.elapsed, "config": cfg.to_dict(),
            "data": f"{len(sampler.shapes)} photos from " + (
                "shared/datasets/train (CBSD432, CSun_Hays80, wikipedia_photos)"
                if Path(args.data) == DATA / "train" else args.data)})

    model.train()
    run.start_loop(step, args.steps)
    acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
    nq = cfg.n_quality
    while step < args.steps:
        size = args.crop if step < args.late_step else args.crop_late
        batch = args.batch if step < args.late_step else args.batch_late
        x = sampler.batch(batch, size).to(dev).contiguous(memory_format=fmt)
        q = (torch.rand(batch) * (nq - 1)).to(dev)
        decayed = step >= args.decay_step or run.decayed
        warm = min(1.0, (step + 1 - run.warm_start) / 300) * (args.decay if decayed else 1.0)
        for g in opt.param_groups:
            g["lr"] = args.lr * warm
        with run.autocast():
            loss, bpp, mse = loss_fn(x, q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        aux = model.entropy_bottleneck.loss()
        if part is None:  # else the quantiles (hence the hyper-latent's medians) stay
            aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            aux_opt.step()
        step += 1
        if math.isfinite(loss.item()):
            acc["loss"] += loss.item()
            acc["bpp"] += bpp.float().mean().item()
            acc["psnr"] += (10 * torch.log10(1 / mse.float().clamp_min(1e-10))).mean().item()
            acc["n"] += 1
        if step % args.log_every == 0 and acc["n"]:
            n = acc.pop("n")
            run.log({"step": step, "time": round(run.elapsed, 1), "crop": size, "batch": batch,
                     **{k: round(v / n, 4) for k, v in acc.items()}, "aux": round(aux.item(), 2),
                     "lr": float(f"{opt.param_groups[0]['lr']:.4g}")})
            acc = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, "n": 0}
        if kodak is not None and step % args.eval_every == 0:
            run.log({"step": step, "time": round(run.elapsed, 1),
                     "kodak_crops": evaluate(model, kodak.to(dev))})
        if not run.step_done(checkpoint, loss=f"{loss.item():.3f}"):
            break
    checkpoint()
    run.dump_params(model)


if __name__ == "__main__":
    main()
