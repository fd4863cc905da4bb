"""Train the lossless codec's hidden Chow-Liu tree circuits and write shipped weights.

    python -m tools.train_lossless mnist   --states 16 --epochs 20
    python -m tools.train_lossless fashion_mnist --states 16 --epochs 8
    python -m tools.train_lossless photo   --states 16 --epochs 4

* ``mnist``: only the 10,000 MNIST *test* images exist here; trains on the first 8,000 (the
  last 2,000 are the report set of ``tools.lossless_eval``).
* ``fashion_mnist``: the standard 60,000 training images (``apt-get install
  dataset-fashion-mnist``); the 10,000 test images are the report set.
* ``photo``: the per-pixel circuit of the natural-image codec (:mod:`models.hclt_pixels`),
  trained on pixel neighbourhoods of the PNG photos in ``train/wikipedia_photos`` (no JPEG
  origin; Kodak stays unseen).

Writes ``codec/weights/lossless_<name>.safetensors`` and its registry entry ``.json``
(architecture, sha256, data, steps, time, training curve). Checkpoints every epoch to
``results/lossless/ckpt_<name>.pt`` and resumes from it with ``--resume``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
FASHION_FULL = Path("/usr/share/datasets/fashion-mnist")
WEIGHTS = ROOT / "codec" / "weights"
RESULTS = ROOT / "results" / "lossless"


def read_idx_images(path: Path) -> np.ndarray:
    """Images of an MNIST-style idx3 file (``.gz``) as ``N x 28 x 28`` uint8."""
    raw = gzip.open(path).read()
    if int.from_bytes(raw[:4], "big") != 0x803:
        raise ValueError(f"{path}: not an idx3 image file")
    n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)


def small_split(name: str) -> tuple[np.ndarray, np.ndarray, str, str]:
    """(train, report, train description, report description) for ``mnist`` / ``fashion_mnist``."""
    if name == "mnist":
        x = read_idx_images(SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
        return (x[:8000], x[8000:], "MNIST test images 0..7999 (MNIST train images unavailable)",
                "MNIST test images 8000..9999")
    if name == "fashion_mnist":
        for d in (FASHION_FULL, SHARED / "fashion_mnist"):
            if (d / "train-images-idx3-ubyte.gz").exists():
                tr = read_idx_images(d / "train-images-idx3-ubyte.gz")
                te = read_idx_images(d / "t10k-images-idx3-ubyte.gz")
                return tr, te, "Fashion-MNIST train (60,000)", "Fashion-MNIST test (10,000)"
        raise SystemExit("Fashion-MNIST training images missing: apt-get install dataset-fashion-mnist")
    raise ValueError(name)


def photo_samples(n_samples: int, seed: int = 0, n_heldout_files: int = 7):
    """Pixel-neighbourhood variables of random pixels of the training photos: ``(train,
    heldout, descriptions)``; the last ``n_heldout_files`` photos are held out."""
    from PIL import Image

    from models.hclt_pixels import pixel_variables

    files = sorted((SHARED / "train" / "wikipedia_photos").glob("*.png"))
    rng = np.random.default_rng(seed)
    per = n_samples // len(files) + 1
    rows = []
    for f in files:
        v = pixel_variables(np.asarray(Image.open(f).convert("RGB")))
        rows.append(v[rng.choice(len(v), min(per, len(v)), replace=False)])
    k = len(files) - n_heldout_files
    train, held = np.concatenate(rows[:k]), np.concatenate(rows[k:])
    return (train[rng.permutation(len(train))], held,
            f"{per} random pixels from each of {k} PNGs of train/wikipedia_photos (sorted, first {k})",
            f"{per} random pixels from each of the last {n_heldout_files} PNGs of train/wikipedia_photos")


def coded_bits(model, x: torch.Tensor, context: torch.Tensor) -> float:
    """Mean ``-log2 p(targets | context)`` per row: the bits per pixel the codec pays."""
    from models.circuits import conditional_nll

    with torch.no_grad():
        return float(torch.cat([conditional_nll(model, x[i:i + 20000], context)
                                for i in range(0, len(x), 20000)]).mean()) / float(math.log(2))


def quantize_log2(p: np.ndarray, step: int) -> np.ndarray:
    """Probabilities to uint8 codes ``round(-log2(p) * step)`` (clamped to 255)."""
    with np.errstate(divide="ignore"):
        q = np.round(-np.log2(np.maximum(p, 1e-300)) * step)
    return np.clip(q, 0, 255).astype(np.uint8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["mnist", "fashion_mnist", "photo"])
    ap.add_argument("--states", type=int, default=16, help="hidden states K per tree node")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--step-size", type=float, default=0.3, help="initial EM step size (decays)")
    ap.add_argument("--pseudocount", type=float, default=0.1)
    ap.add_argument("--samples", type=int, default=1_000_000, help="photo: pixels sampled")
    ap.add_argument("--conditional-epochs", type=int, default=0,
                    help="photo: then this many epochs of Adam on log p(targets | context)")
    ap.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (conditional)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="torch device for training (default: cuda when present)")
    ap.add_argument("--name", default=None, help="weights name (default: dataset)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from models.circuits import HCLT

    name = args.name or args.dataset
    if args.dataset == "photo":
        from models.hclt_pixels import ALPHABET, NUM_VARS

        train, held, desc, report_desc = photo_samples(args.samples)
        alphabet = ALPHABET
        dims = NUM_VARS
    else:
        tr, te, desc, report_desc = small_split(args.dataset)
        train, held = tr.reshape(len(tr), -1), te.reshape(len(te), -1)
        alphabet, dims = 256, train.shape[1]
    context = None
    if args.dataset == "photo":
        from models.hclt_pixels import COLOR_CONTEXT

        context = torch.zeros(dims, dtype=torch.bool)
        context[list(COLOR_CONTEXT)] = True
        context = context.to(args.device)
    RESULTS.mkdir(parents=True, exist_ok=True)
    ckpt = RESULTS / f"ckpt_{name}.pt"
    t0 = time.time()
    log: list[dict] = []
    start_epoch = 0
    if args.resume and ckpt.exists():
        st = torch.load(ckpt, weights_only=True)
        model = HCLT(st["parent"].numpy(), args.states, alphabet)
        model.load_state_dict(st["model"])
        log, start_epoch, t0 = st["log"], st["epoch"], time.time() - st["elapsed"]
    else:
        model = HCLT.learn(train, args.states, alphabet, bins=8 if alphabet == 256 and dims > 64 else None)
    print(f"{name}: {dims} variables, tree height {model.height}, K={args.states}, "
          f"{len(train)} training rows", flush=True)
    dev = torch.device(args.device)
    model.to(dev)
    xt = torch.from_numpy(train.astype(np.int64)).to(dev)
    xh = torch.from_numpy(held.astype(np.int64)).to(dev)
    n_steps = args.epochs * ((len(xt) + args.batch - 1) // args.batch)
    step = start_epoch * ((len(xt) + args.batch - 1) // args.batch)
    for epoch in range(start_epoch, args.epochs):
        perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(epoch)).to(dev)
        tr_ll = []
        for i in range(0, len(xt), args.batch):
            # step size: linear decay from --step-size to a tenth of it
            lr = args.step_size * (1 - 0.9 * step / max(1, n_steps))
            tr_ll.append(model.em_step(xt[perm[i:i + args.batch]], lr, args.pseudocount))
            step += 1
        with torch.no_grad():
            h_ll = torch.cat([model(xh[i:i + 2000]) for i in range(0, len(xh), 2000)]).mean().item()
        rec = {"epoch": epoch + 1, "steps": step, "seconds": round(time.time() - t0, 1),
               "train_bits_per_dim": -float(np.mean(tr_ll)) / dims / math.log(2),
               "heldout_bits_per_dim": -h_ll / dims / math.log(2)}
        if context is not None:
            rec["heldout_coded_bits_per_pixel"] = coded_bits(model, xh, context)
        log.append(rec)
        print(json.dumps(rec), flush=True)
        torch.save({"parent": model.parent.cpu(), "model": model.state_dict(), "log": log,
                    "epoch": epoch + 1, "elapsed": time.time() - t0}, ckpt)
    if context is not None and args.conditional_epochs:
        from models.circuits import fit_conditional

        for ce in range(args.conditional_epochs):
            tr_bits = fit_conditional(model, xt, context, 1, 4096, args.lr, seed=ce)[0]
            rec = {"conditional_epoch": ce + 1, "seconds": round(time.time() - t0, 1),
                   "train_coded_bits_per_pixel": tr_bits,
                   "heldout_coded_bits_per_pixel": coded_bits(model, xh, context)}
            log.append(rec)
            print(json.dumps(rec), flush=True)
    save_weights(model, name, {
        "dataset": args.dataset, "device": args.device, "training_data": desc, "heldout_data": report_desc,
        "states": args.states, "epochs": args.epochs, "batch": args.batch, "em_steps": step,
        "step_size": args.step_size, "pseudocount": args.pseudocount, "threads": args.threads,
        "conditional_epochs": args.conditional_epochs,
        "conditional_lr": args.lr if args.conditional_epochs else None,
        "train_seconds": round(time.time() - t0, 1), "curve": log,
    })


def save_weights(model, name: str, info: dict) -> Path:
    """Write the shipped weights (uint8 log2-quantized probabilities) and the registry entry."""
    import hashlib

    from safetensors.numpy import save_file

    p = model.probabilities()
    tensors = {"parent": p["parent"].astype(np.int64),
               "prior": quantize_log2(p["prior"], LOG2_STEP),
               "trans": quantize_log2(p["trans"], LOG2_STEP),
               "leaf": quantize_log2(p["leaf"], LOG2_STEP)}
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    path = WEIGHTS / f"lossless_{name}.safetensors"
    save_file(tensors, str(path), metadata={"format": "hclt-log2q", "log2_step": str(LOG2_STEP)})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    reg_path = WEIGHTS / f"lossless_{name}.json"
    old = json.loads(reg_path.read_text()) if reg_path.exists() else {}
    entry = {
        "model_id": f"hclt-{name.replace('_', '-')}",
        "file": path.name, "sha256": digest, "bytes": path.stat().st_size,
        "architecture": {"type": "HCLT", "variables": model.num_vars, "states": model.num_states,
                         "alphabet": model.alphabet, "tree_height": model.height,
                         "storage": f"uint8 codes of -log2(p) in steps of 1/{LOG2_STEP} bit"},
        "training": info,
        "training_runs": old.get("training_runs", []) + [{k: v for k, v in info.items() if k != "curve"}
                                                         | {"final": info["curve"][-1] if info["curve"] else None}],
        "results": old.get("results", {}),
    }
    reg_path.write_text(json.dumps(entry, indent=1) + "\n")
    print(f"wrote {path} ({entry['bytes']} bytes, sha256 {digest[:16]}...)")
    return path


LOG2_STEP = 8  #: shipped probabilities are 2 ** (-code / LOG2_STEP)

if __name__ == "__main__":
    main()
