"""Benchmark the circuit lossless codec: bits/dim of files actually written, bit-exact round
trips, speed; next to PNG, WebP-lossless and JPEG XL lossless on the same images.

    python -m tools.lossless_eval mnist            # last 2,000 MNIST test images
    python -m tools.lossless_eval fashion_mnist    # the 10,000 Fashion-MNIST test images
    python -m tools.lossless_eval kodak            # the 24 Kodak photos
    python -m tools.lossless_eval speedup          # efficient vs naive conditionals
    python -m tools.lossless_eval report           # Markdown tables of the stored results

Writes ``results/lossless/<name>.json`` and adds the headline numbers to the model's registry
entry (``codec/weights/lossless_<model>.json``, key ``results``).

Small sets report three sizes: every image as its own ``.ncz`` file (container included),
the rANS payload alone per image (comparable to the anchors' ``payload_bits_per_dim``), and the
whole set as one ``.ncz`` file (:meth:`LosslessCodec.encode_set`). The classic codecs run here
per image on the same images. Kodak's classic figures are read from the shared anchors file
(``../shared/anchors/kodak_anchors.json``, measured on this machine kind), not recomputed.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "results" / "lossless"


def bits_per_dim(nbytes: int, dims: int) -> float:
    """File bytes * 8 over the number of coded sample values (pixels x channels)."""
    from codec.metrics import bpp

    return float(bpp(nbytes, dims))


def classic_sizes(img: np.ndarray) -> dict[str, int]:
    """Bytes of PNG (optimize), WebP lossless (method 6) and JPEG XL lossless (effort 7), each
    checked to decode to the same pixels."""
    from PIL import Image

    import pillow_jxl  # noqa: F401  (registers JPEG XL)

    im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = {}
    for name, fmt, kw in (("png", "PNG", {"optimize": True}),
                          ("webp_lossless", "WEBP", {"lossless": True, "method": 6, "quality": 100}),
                          ("jxl_lossless_e7", "JXL", {"lossless": True, "effort": 7})):
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(im.mode))
        if not np.array_equal(back.reshape(img.shape), img):
            raise RuntimeError(f"{name} round trip is not exact")
        out[name] = len(buf.getvalue())
    return out


def eval_small(name: str, limit: int | None, classic: bool, verify: int = 2000) -> dict:
    from codec.lossless import LosslessCodec, load_circuit
    from tools.train_lossless import small_split

    _, images, _, desc = small_split(name)
    if limit:
        images = images[:limit]
    model = "hclt-" + name.replace("_", "-")
    codec = LosslessCodec(model)
    tables, digest, entry = load_circuit(model)
    n, dims = len(images), images[0].size
    file_bytes = payload_bytes = 0
    t_enc = t_dec = 0.0
    exact = True
    from bitstream import unpack

    n_verify = min(n, verify)
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        data = codec.encode(img[:, :, None])
        t1 = time.perf_counter()
        t_enc += t1 - t0
        if i < n_verify:  # per-image decoding is one rANS call per pixel: verify a prefix
            back = codec.decode(data)
            t_dec += time.perf_counter() - t1
            exact &= bool(np.array_equal(back[:, :, 0], img))
        file_bytes += len(data)
        payload_bytes += len(unpack(data)[1][0].payload)
    t0 = time.perf_counter()
    set_file = codec.encode_set(images)
    t1 = time.perf_counter()
    set_back = codec.decode_set(set_file)
    t2 = time.perf_counter()
    exact &= bool(np.array_equal(set_back, images))
    # the circuit's own model bits (no coder, no container): -log2 p(x) / dims
    model_bits = 0.0
    for i in range(0, n, 128):
        xb = images[i:i + 128].reshape(-1, dims).astype(np.int64)
        pmf = tables.conditionals(xb)
        p = np.take_along_axis(pmf, xb[:, tables.order][:, :, None], 2)[:, :, 0] / pmf.sum(-1)
        model_bits += float(-np.log2(p).sum())
    model_bits /= n * dims
    res = {
        "data": desc, "n_images": n, "dims_per_image": int(dims), "model": model,
        "weights_sha256": digest.hex(), "exact": exact,
        "hclt": {
            "per_image_file_bits_per_dim": bits_per_dim(file_bytes, n * dims),
            "per_image_payload_bits_per_dim": bits_per_dim(payload_bytes, n * dims),
            "set_file_bits_per_dim": bits_per_dim(len(set_file), n * dims),
            "set_file_bytes": len(set_file),
            "model_bits_per_dim": model_bits,
            "container_bytes_per_image_file": (file_bytes - payload_bytes) / n,
            "enc_ms_per_image": 1e3 * t_enc / n, "dec_ms_per_image": 1e3 * t_dec / max(1, n_verify),
            "per_image_files_decoded_and_verified": n_verify,
            "set_enc_ms_per_image": 1e3 * (t1 - t0) / n, "set_dec_ms_per_image": 1e3 * (t2 - t1) / n,
        },
        "published_hclt_bits_per_dim": {"mnist": 1.2, "fashion_mnist": 3.3}[name],
    }
    if classic:
        tot: dict[str, int] = {}
        for img in images:
            for k, v in classic_sizes(img[:, :, None]).items():
                tot[k] = tot.get(k, 0) + v
        res["classic_per_image_bits_per_dim"] = {k: bits_per_dim(v, n * dims) for k, v in tot.items()}
    return res


def eval_kodak(limit: int | None, decode: bool) -> dict:
    from PIL import Image

    from codec.lossless import LosslessCodec, load_circuit

    files = sorted((SHARED / "datasets" / "kodak").glob("kodim*.png"))[:limit]
    codec = LosslessCodec("hclt-photo")
    _, digest, _ = load_circuit("hclt-photo")
    per = []
    for f in files:
        img = np.asarray(Image.open(f).convert("RGB"))
        t0 = time.perf_counter()
        data = codec.encode(img)
        t1 = time.perf_counter()
        rec = {"image": f.name, "bpp": bits_per_dim(len(data), img.shape[0] * img.shape[1]),
               "bytes": len(data), "enc_s": t1 - t0}
        if decode:
            back = codec.decode(data)
            rec["dec_s"] = time.perf_counter() - t1
            rec["exact"] = bool(np.array_equal(back, img))
        per.append(rec)
        print(json.dumps(rec), flush=True)
    from codec.lossless import ADAPT_DECAY, ADAPT_EDGE, ADAPT_STRENGTH

    res = {"data": f"Kodak, {len(per)} images", "model": "hclt-photo", "weights_sha256": digest.hex(),
           "adapt_strength": ADAPT_STRENGTH, "adapt_decay": ADAPT_DECAY, "adapt_edge": ADAPT_EDGE,
           "bpp": float(np.mean([r["bpp"] for r in per])),
           "enc_s_per_image": float(np.mean([r["enc_s"] for r in per])), "per_image": per}
    if decode:
        res["dec_s_per_image"] = float(np.mean([r["dec_s"] for r in per]))
        res["exact"] = all(r["exact"] for r in per)
    anchors = SHARED / "anchors" / "kodak_anchors.json"
    if anchors.exists():
        ll = json.loads(anchors.read_text())["lossless"]
        idx = [int(r["image"][5:7]) - 1 for r in per]
        res["anchors_bpp_same_images"] = {
            k: float(np.mean([v["per_image_bpp"][i] for i in idx])) for k, v in ll.items()}
        res["anchors_source"] = "../shared/anchors/kodak_anchors.json (measured on this machine kind)"
    return res


def eval_speedup(n: int) -> dict:
    from codec.lossless import load_circuit
    from tools.train_lossless import small_split

    tables, _, _ = load_circuit("hclt-mnist")
    x = small_split("mnist")[1][:n].reshape(n, -1).astype(np.int64)
    tables.conditionals(x[:1]), tables.naive_conditionals(x[:1])  # compile
    t0 = time.perf_counter()
    eff = tables.conditionals(x)
    t1 = time.perf_counter()
    naive = tables.naive_conditionals(x)
    t2 = time.perf_counter()
    pe, pn = eff / eff.sum(-1, keepdims=True), naive / naive.sum(-1, keepdims=True)
    return {"data": f"{n} MNIST images, 784 conditionals each, one thread",
            "efficient_ms_per_image": 1e3 * (t1 - t0) / n, "naive_ms_per_image": 1e3 * (t2 - t1) / n,
            "speedup": (t2 - t1) / (t1 - t0), "max_abs_pmf_difference": float(np.abs(pe - pn).max())}


def record(model_name: str, key: str, summary: dict) -> None:
    """Add ``summary`` under ``results[key]`` of the model's registry entry."""
    path = ROOT / "codec" / "weights" / f"lossless_{model_name}.json"
    entry = json.loads(path.read_text())
    entry.setdefault("results", {})[key] = summary
    path.write_text(json.dumps(entry, indent=1) + "\n")


def report() -> str:
    """Markdown tables of the stored results (``results/lossless/*.json``) for the README."""
    lines = []
    small = [(n, RESULTS / f"{n}.json") for n in ("mnist", "fashion_mnist")]
    if any(p.exists() for _, p in small):
        lines += ["| data (report set) | HCLT set file | HCLT per-image payload | HCLT per-image .ncz | "
                  "PNG | WebP-lossless | JPEG XL e7 | published HCLT |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, p in small:
            if not p.exists():
                continue
            r = json.loads(p.read_text())
            h, c = r["hclt"], r.get("classic_per_image_bits_per_dim", {})
            lines.append(f"| {r['data']} | **{h['set_file_bits_per_dim']:.3f}** | "
                         f"{h['per_image_payload_bits_per_dim']:.3f} | {h['per_image_file_bits_per_dim']:.3f} | "
                         f"{c.get('png', float('nan')):.3f} | {c.get('webp_lossless', float('nan')):.3f} | "
                         f"{c.get('jxl_lossless_e7', float('nan')):.3f} | ~{r['published_hclt_bits_per_dim']} |")
        lines.append("")
    p = RESULTS / "kodak.json"
    if p.exists():
        r = json.loads(p.read_text())
        a = r.get("anchors_bpp_same_images", {})
        lines += ["| Kodak (24) | bpp | encode s/image | decode s/image |", "|---|---|---|---|",
                  f"| HCLT photo codec | **{r['bpp']:.3f}** | {r['enc_s_per_image']:.1f} | "
                  f"{r.get('dec_s_per_image', float('nan')):.1f} |"]
        for k in ("png", "webp_lossless", "jxl_lossless_e7", "jxl_lossless_e9"):
            if k in a:
                lines.append(f"| {k} (anchors) | {a[k]:.3f} | | |")
        lines.append("")
    p = RESULTS / "speedup.json"
    if p.exists():
        r = json.loads(p.read_text())
        lines.append(f"Efficient conditionals: {r['efficient_ms_per_image']:.2f} ms per MNIST image "
                     f"(784 conditionals) vs {r['naive_ms_per_image']:.1f} ms naive: "
                     f"{r['speedup']:.1f}x; max |difference| of the pmfs {r['max_abs_pmf_difference']:.1e}.")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["mnist", "fashion_mnist", "kodak", "speedup", "report"])
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--no-classic", action="store_true", help="skip PNG/WebP/JXL (small sets)")
    ap.add_argument("--no-decode", action="store_true", help="kodak: encode only")
    ap.add_argument("--verify", type=int, default=2000,
                    help="small sets: decode and compare the first N per-image files "
                         "(the whole-set file is always decoded and compared)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        import numba

        numba.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.what == "report":
        print(report())
        return
    if args.what in ("mnist", "fashion_mnist"):
        res = eval_small(args.what, args.limit, not args.no_classic, args.verify)
        if not args.limit:
            record(args.what, "heldout", {"data": res["data"], **res["hclt"], "exact": res["exact"]})
    elif args.what == "kodak":
        res = eval_kodak(args.limit, not args.no_decode)
        if not args.limit:
            record("photo", "kodak", {k: v for k, v in res.items() if k != "per_image"})
    else:
        res = eval_speedup(args.limit or 20)
        record("mnist", "conditional_speedup", res)
    limited = args.limit and args.what != "speedup"
    out = RESULTS / f"{args.what}{'_limit%d' % args.limit if limited else ''}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "per_image"}, indent=1))


if __name__ == "__main__":
    main()
