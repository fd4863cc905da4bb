"""Decoder ceilings: how well a model's synthesis can reconstruct at all.

    python -m tools.ceiling [--image-weights W] [--video-weights W] [--iters 400]

For the image model: on 256 px Kodak crops, the PSNR of the autoencoder (rounded latent, the
codec's reconstruction up to coding) and the PSNR reached when the latent is a free float
tensor optimised for MSE through the fixed synthesis ``g_s`` (Adam, ``--iters`` steps). For the
video model: on the first P frame of the held-out clips (original frames, 128 px crop), the
motion-compensated prediction, the P frame's reconstruction, the output with a zero frame
latent (the contexts alone) and with the frame latent optimised the same way through the
fixed contextual decoder. A ceiling barely above the autoencoder
means the decoder, not the rate or the training of the encoder, limits the quality: more
bits cannot buy more PSNR. For the image model the same is done with the feature after each
up-sampling of ``g_s`` (where the synthesis loses the detail). Results in ``results/diagnostics/ceiling.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float(10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean())), 3)


def _optimise(latent: torch.Tensor, decode, target: torch.Tensor, iters: int) -> tuple[float, float]:
    """PSNR of ``decode(latent)`` before and after ``iters`` Adam steps on ``latent`` alone
    (MSE)."""
    latent = latent.detach().clone().requires_grad_(True)
    with torch.no_grad():
        start = _psnr(decode(latent), target)
    opt = torch.optim.Adam([latent], lr=0.02)
    for _ in range(iters):
        loss = ((decode(latent) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return start, _psnr(decode(latent), target)


def image_ceiling(weights: str | None, iters: int, images: int = 4) -> dict:
    from codec.image import ImageCodec
    from tools.train_image import kodak_crops

    model = ImageCodec(weights).model.float()
    for p in model.parameters():
        p.requires_grad_(False)
    x = kodak_crops(images, 256)
    rows = []
    for q in (0.0, float(model.cfg.n_quality - 1)):
        qq = torch.full((x.shape[0],), q)
        with torch.no_grad():
            ae = model(x, qq, noise=False)["x_hat"]
            y = model.g_a(x)  # unscaled: the synthesis sees y * scaler(q_dec) / scaler(q_enc)
        scale = model._scaler(model.q_dec, qq) / model._scaler(model.q_enc, qq)
        unquantized, ceiling = _optimise(y, lambda v: model.g_s(v * scale), x, iters)
        rows.append({"quality": q, "autoencoder_psnr": _psnr(ae, x),
                     "unquantized_latent_psnr": unquantized, "ceiling_psnr": ceiling})
    # where the synthesis loses it: a free feature after each up-sampling (x2) of g_s, started
    # from the autoencoder's own (top quality) and optimised through the rest of g_s
    stages, h = {}, y * scale
    with torch.no_grad():
        for i, layer in enumerate(model.g_s[:-1]):
            h = layer(h)
            if isinstance(layer, torch.nn.Sequential) and isinstance(layer[-1], torch.nn.PixelShuffle):
                rest = model.g_s[i + 1:]
                with torch.enable_grad():
                    stages[f"1/{x.shape[-1] // h.shape[-1]} ({h.shape[1]} ch)"] = \
                        _optimise(h, rest, x, iters)[1]
    return {"rows": rows, "stage_ceiling_psnr": stages}


def video_ceiling(weights: str | None, iters: int) -> list[dict]:
    from codec.video import load_model
    from codec.video_io import read_clip
    from models.video import TrainCoder, pack_frame, warp
    from tools.train_video import HELD_OUT, VIDEO

    model = load_model(weights)[0].float()
    for p in model.parameters():
        p.requires_grad_(False)
    rows = []
    for clip in sorted((VIDEO / "compressed").iterdir()):
        if clip.stem not in HELD_OUT:
            continue
        v = read_clip(clip, 2)
        y0, x0 = (v.height - 128) // 4 * 2, (v.width - 128) // 4 * 2

        def packed(t):
            planes = [v.y[t][y0:y0 + 128, x0:x0 + 128], v.u[t][y0 // 2:y0 // 2 + 64, x0 // 2:x0 // 2 + 64],
                      v.v[t][y0 // 2:y0 // 2 + 64, x0 // 2:x0 // 2 + 64]]
            return pack_frame([torch.from_numpy(np.ascontiguousarray(p)).float()[None, None] / 255
                               for p in planes], "yuv420")

        ref, x = packed(0), packed(1)
        for q in (0.0, float(model.cfg.n_quality - 1)):
            qq = torch.tensor([q])
            with torch.no_grad():
                out = model.p_frame(TrainCoder(noise=False), "yuv420", qq, ref, None, None, False, x=x)
                c1, c2, c3 = model.ctx(warp(model.extract_feature(ref, "yuv420"), out["flow"]))
            scale = model._q(model.q_dec, qq)
            y = torch.zeros(1, model.cfg.m, x.shape[2] // 8, x.shape[3] // 8)
            zero, ceiling = _optimise(y, lambda v: model.reconstruct(model.ctx_dec(v * scale, c1, c2, c3),
                                                                "yuv420", out["pred"]), x, iters)
            rows.append({"clip": clip.name, "quality": q, "prediction_psnr": _psnr(out["pred"], x),
                         "p_frame_psnr": _psnr(out["x_hat"], x), "zero_latent_psnr": zero,
                         "ceiling_psnr": ceiling})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-weights", default=None, help="default: the shipped image model")
    ap.add_argument("--video-weights", default=None, help="default: the shipped video model")
    ap.add_argument("--parts", default="image,video", help="which models to measure")
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "diagnostics" / "ceiling.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    res = {"iters": args.iters, "psnr": "dB over RGB (image) / packed YUV 4:2:0 samples (video)"}
    parts = args.parts.split(",")
    if "image" in parts:
        res["image"] = {"weights": args.image_weights or "shipped",
                        **image_ceiling(args.image_weights, args.iters)}
    if "video" in parts:
        res["video"] = {"weights": args.video_weights or "shipped",
                        "rows": video_ceiling(args.video_weights, args.iters)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
