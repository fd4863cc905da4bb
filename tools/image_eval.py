"""Kodak rate-distortion of the shipped image model, from real files.

    python -m tools.image_eval [--weights codec/weights/image_small.safetensors]

For every quality and Kodak image: encode to a real ``.ncz`` (bpp from its size, container
included), decode it, check the decoded image equals the encoder's reconstruction, compare
the model's likelihood estimate with the actual size, measure PSNR / MS-SSIM with
:mod:`codec.metrics`. Then BD-rates against every anchor of
``../shared/anchors/kodak_anchors.json`` (PSNR and MS-SSIM dB, pchip over 0.1-2 bpp, as the
anchors), PSNR at 0.25 / 0.5 / 1 bpp and its difference to each anchor there (where ncodec
wins and loses along the curve), timings (median of ``--timing-runs`` on kodim01), a JSON under
``results/image/`` and an RD plot beside it.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tqdm import tqdm

from bitstream.container import VERSION as CONTAINER_VERSION
from codec.image import DEFAULT_MODEL, FORMAT_VERSION, WEIGHTS_DIR, ImageCodec
from codec.io import write_atomic
from codec.metrics import bpp, ms_ssim, ms_ssim_db, psnr
from models.sga import EFFORTS
from tools.bdrate import bd_rate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
ANCHORS = ROOT.parent / "shared" / "anchors" / "kodak_anchors.json"


def _load(f: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(f).convert("RGB"))


def estimated_bits(codec: ImageCodec, img: np.ndarray, q: float) -> float:
    """The model's own estimate: sum of -log2 of the (continuous) likelihoods of the coded
    latent and hyper-latent, i.e. what training optimises."""
    m = copy.deepcopy(codec.model).float().eval()
    x = codec._to_tensor(img)
    with torch.no_grad():
        out = m(x, torch.tensor([float(q)]), noise=False)
    liks = out["likelihoods"]["y"] + [out["likelihoods"]["z"]]
    return float(sum((-torch.log2(lk)).sum() for lk in liks))


def psnr_at(rates: list[float], psnrs: list[float], targets=(0.25, 0.5, 1.0)) -> dict:
    """PSNR at fixed bit rates, interpolated linearly in log-rate between measured points;
    ``None`` outside the measured range (no extrapolation)."""
    order = np.argsort(rates)
    lr, ps = np.log(np.asarray(rates)[order]), np.asarray(psnrs)[order]
    return {f"{t:g}": (float(np.interp(np.log(t), lr, ps)) if lr[0] <= np.log(t) <= lr[-1]
                       else None) for t in targets}


_W: dict = {}


def _init_worker(weights: str, files: list[str], effort: int, threads: int = 1,
                 cache: str = "") -> None:
    """Per process: the codec, the images, the effort (1 torch thread in pool workers) and
    the result cache folder (``""``: none)."""
    if threads:
        torch.set_num_threads(threads)
    _W.update(codec=ImageCodec(weights), files=files, images=[_load(Path(f)) for f in files],
              effort=effort, cache=cache)


def _worker(task: tuple[float, int]) -> dict:
    """One image at one quality, from the cache or measured (and then cached)."""
    q, i = task
    if not _W["cache"]:
        return _measure(q, i)
    codec, effort = _W["codec"], _W["effort"]
    key = json.dumps([FORMAT_VERSION, CONTAINER_VERSION, codec.digest.hex(), effort,
                      EFFORTS.get(effort), q, Path(_W["files"][i]).name])
    f = Path(_W["cache"]) / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
    if f.exists():
        return json.loads(f.read_text())
    r = _measure(q, i)
    f.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(f, json.dumps(r).encode(), force=True)
    return r


def _measure(q: float, i: int) -> dict:
    """One image at one quality: real file, decode, metrics, timings."""
    codec, img, effort = _W["codec"], _W["images"][i], _W["effort"]
    h, w = img.shape[:2]
    t0 = time.perf_counter()
    if effort:
        data, rec = codec.encode(img, quality=q, effort=effort), None
    else:
        data, rec = codec.encode_with_reconstruction(img, q)
    t1 = time.perf_counter()
    out = codec.decode(data)
    t2 = time.perf_counter()
    if rec is not None and not np.array_equal(out, rec):
        raise SystemExit(f"decoded image differs from the encoder's reconstruction (q={q})")
    r = {"bpp": bpp(len(data), h * w), "psnr": psnr(img, out), "msssim": ms_ssim(img, out),
         "enc_s": t1 - t0, "dec_s": t2 - t1}
    if not effort:  # the estimate is that of the unrefined latent
        r["est_over_actual"] = estimated_bits(codec, img, q) / (len(data) * 8)
    return r


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors"))
    ap.add_argument("--qualities", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--effort", type=int, default=0)
    ap.add_argument("--timing-runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes (1 torch thread each) for the Kodak measurements")
    ap.add_argument("--cache", default="", metavar="DIR",
                    help="keep each image's result here and reuse it (same weights, effort "
                         "and quality), so that a long run (--effort) can be stopped and resumed")
    ap.add_argument("--out", default="")
    ap.add_argument("--registry", action="store_true",
                    help="also record the results in the weights' registry JSON")
    ap.add_argument("--promote", action="store_true",
                    help="--weights is a candidate (train_image --export): it replaces the "
                         "shipped weights of its name, with the old registry entry moved into "
                         "history, only when its PSNR BD-rates against WebP and JPEG XL both "
                         "beat the shipped entry's (implies --registry; results go beside the "
                         "candidate unless it is promoted)")
    args = ap.parse_args(argv)
    if args.promote and args.effort:
        ap.error("--promote compares effort-0 results; leave out --effort")
    if args.threads:
        torch.set_num_threads(args.threads)

    codec = ImageCodec(args.weights)  # timings and the registry entry
    files = sorted((DATA / "kodak").glob("*.png"))[:args.images]
    if not files:
        raise SystemExit("Kodak not found under ../shared/datasets/kodak")
    images = [_load(f) for f in files]
    qs = [float(v) for v in args.qualities.split(",")]
    tasks = [(q, i) for q in qs for i in range(len(images))]
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp.get_context("forkserver"), initializer=_init_worker,
                                 initargs=(args.weights, [str(f) for f in files], args.effort, 1,
                                           args.cache)) as ex:
            results = list(tqdm(ex.map(_worker, tasks), total=len(tasks), desc="kodak",
                                disable=None))
    else:
        _init_worker(args.weights, [str(f) for f in files], args.effort, args.threads, args.cache)
        results = [_worker(t) for t in tqdm(tasks, desc="kodak", disable=None)]
    points = []
    for q in qs:
        per: dict[str, list] = {}
        for (tq, _), r in zip(tasks, results):
            if tq == q:
                for k, v in r.items():
                    per.setdefault(k, []).append(v)
        pt = {"quality": q, **{k: float(np.mean(v)) for k, v in per.items()}, "per_image": per}
        points.append(pt)
        print(json.dumps({k: round(v, 4) for k, v in pt.items() if k != "per_image"}), flush=True)

    rates = [p["bpp"] for p in points]
    ps = [p["psnr"] for p in points]
    ms = [ms_ssim_db(p["msssim"]) for p in points]
    anchors = json.loads(ANCHORS.read_text())["lossy"]
    bd, gain = {}, {}
    ours_at = psnr_at(rates, ps)
    for name, a in anchors.items():
        ar = [p["bpp"] for p in a["points"]]
        theirs_at = psnr_at(ar, [p["psnr"] for p in a["points"]])
        gain[name] = {t: (None if v is None or theirs_at[t] is None else round(v - theirs_at[t], 3))
                      for t, v in ours_at.items()}
        bd[name] = {
            "psnr_pchip": bd_rate(ar, [p["psnr"] for p in a["points"]], rates, ps, rate_range=(0.1, 2.0)),
            "msssim_db_pchip": bd_rate(ar, [ms_ssim_db(p["msssim"]) for p in a["points"]], rates, ms,
                                       rate_range=(0.1, 2.0)),
        }
    timing = {}
    if args.timing_runs:
        img = images[0]
        enc, dec = [], []
        for _ in range(args.timing_runs):
            t0 = time.perf_counter()
            data = codec.encode(img, quality=4.0, effort=args.effort)
            t1 = time.perf_counter()
            codec.decode(data)
            dec.append(time.perf_counter() - t1)
            enc.append(t1 - t0)
        timing = {"image": files[0].name, "quality": 4.0, "effort": args.effort,
                  "encode_s_median": statistics.median(enc), "decode_s_median": statistics.median(dec),
                  "torch_threads": torch.get_num_threads()}
    entry_path = Path(args.weights).with_suffix(".json")
    entry = json.loads(entry_path.read_text()) if entry_path.exists() else {}
    res = {"model_id": codec.model_id, "weights_sha256": codec.digest.hex(),
           "steps": entry.get("steps"), "images": [f.name for f in files], "effort": args.effort,
           "bpp": "codec.metrics.bpp of whole .ncz files", "points": points,
           "bpp_range": [min(rates), max(rates)], "psnr_at_bpp": ours_at,
           "psnr_gain_at_bpp_vs_anchors": gain, "bd_rate_vs_anchors": bd, "timing": timing}
    name = f"kodak_{codec.model_id}{'_effort%d' % args.effort if args.effort else ''}.json"
    out = Path(args.out) if args.out else ROOT / "results" / "image" / name
    if args.promote:
        shipped = WEIGHTS_DIR / Path(args.weights).name
        if not promote(Path(args.weights), shipped, bd):
            out = Path(args.weights).parent / name
        else:
            entry_path, args.registry = shipped.with_suffix(".json"), True
            entry = json.loads(entry_path.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({"bd_rate_psnr": {k: round(v["psnr_pchip"], 2) for k, v in bd.items()},
                      "bd_rate_msssim": {k: round(v["msssim_db_pchip"], 2) for k, v in bd.items()},
                      "psnr_at_bpp": res["psnr_at_bpp"], "psnr_gain_at_bpp_vs_anchors": gain,
                      "timing": timing}, indent=1))
    if args.registry and entry_path.exists():
        entry["kodak_effort%d" % args.effort if args.effort else "kodak"] = {
            "measured_by": "python -m tools.image_eval (real files, 24 images)"
                           + (f"; SGA (steps, lr) {EFFORTS[args.effort]}" if args.effort else ""),
            "points": [{k: round(p[k], 4) for k in ("quality", "bpp", "psnr", "msssim",
                                                      "est_over_actual") if k in p} for p in points],
            "bd_rate_psnr_vs": {k: round(v["psnr_pchip"], 2) for k, v in bd.items()},
            "bd_rate_msssim_db_vs": {k: round(v["msssim_db_pchip"], 2) for k, v in bd.items()},
            "timing": timing}
        entry_path.write_text(json.dumps(entry, indent=1) + "\n")
    try:
        _plot(points, anchors, out.with_suffix(".png"), codec.model_id)
    except Exception as e:  # plotting is a convenience
        print(f"plot skipped: {e}")


def promote(candidate: Path, shipped: Path, bd: dict, against=("webp", "jxl")) -> bool:
    """Copy ``candidate`` (weights and registry JSON) over ``shipped`` when its PSNR BD-rates
    ``bd`` against every anchor in ``against`` are lower than the shipped registry's; the
    shipped entry's steps, time and BD-rates go into the new entry's ``history``."""
    import shutil

    if candidate.resolve() == shipped.resolve() or not candidate.with_suffix(".json").exists():
        raise SystemExit(f"--promote {candidate}: give a candidate export (train_image --export "
                         f"elsewhere, with its registry JSON), not the shipped file")
    old = json.loads(shipped.with_suffix(".json").read_text()) if shipped.exists() else {}
    old_bd = old.get("kodak", {}).get("bd_rate_psnr_vs", {})
    new_bd = {k: round(bd[k]["psnr_pchip"], 2) for k in against}
    better = all(new_bd[k] < old_bd.get(k, float("inf")) for k in against)
    print(json.dumps({"candidate": new_bd, "shipped": {k: old_bd.get(k) for k in against},
                      "promoted": better}))
    if not better:
        return False
    entry = json.loads(candidate.with_suffix(".json").read_text())
    entry["history"] = old.get("history", []) + [{
        "steps": old.get("steps"), "train_seconds": old.get("train_seconds"),
        "sha256": old.get("sha256"), "config": old.get("config"), "training": old.get("training"),
        "bd_rate_psnr_vs": old_bd, "note": "previous shipped weights"}]
    shutil.copyfile(candidate, shipped)
    shipped.with_suffix(".json").write_text(json.dumps(entry, indent=1) + "\n")
    return True


def _plot(points, anchors, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for k, a in anchors.items():
        ax.plot([p["bpp"] for p in a["points"]], [p["psnr"] for p in a["points"]], "--", label=k, lw=1)
    ax.plot([p["bpp"] for p in points], [p["psnr"] for p in points], "o-k", label=f"ncodec {name}", lw=2)
    ax.set_xlim(0, 2.0)
    ax.set_xlabel("bpp (whole files)")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_title("Kodak (24 images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
