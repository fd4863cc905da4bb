"""A ready-to-run kit for training on a lent GPU: prepare everything here, spend the device's
15 minutes in one ``run`` call (the recipe of ../shared/design/GPU.md).

How to use it. Here, with the checkpoints to go on from (a minute of CPU; a shipped
``codec/weights/*.safetensors`` file serves as one too, without optimizer state: then give
the learning rate with ``--image-args="--lr 1e-4"``)::

    python -m tools.gpu_kit prepare --image-ckpt out/train_image/wide/last.pt \\
        [--video-ckpt out/train_video/long/last.pt]
    python -m tools.gpu_kit command [--minutes 9 --batch 32 --image-args="--decay-step N"]

then pass the printed line to the device tool: ``run(command=<line>, carry=[".gpu", ".whl"],
timeout_s=600)`` and ``give_back`` at once. What comes back (``files_at``): ``log``, the
trainers' ``image.log.jsonl`` / ``video.log.jsonl`` and the final checkpoints as
``image.0.pt``, ``image.1.pt``, ... (``video.*.pt``); ``python -m tools.gpu_kit unpack
<files_at>/image out/train_image/gpu/last.pt`` puts one together again as a checkpoint that
the trainer resumes from here (``--out out/train_image/gpu``; its ``--export`` writes the
shipped weights). Rehearse first: ``command --minutes 0.5 --device cpu --python
.venv/bin/python --no-install --out DIR --run-dir DIR2 --batch 8`` prints the same line for
the CPU (mkdir DIR, then ``bash -c "$(...)"`` it in the repository's root).

``prepare`` fills the git-ignored folders ``.gpu/`` and ``.whl/``: the wheels the device lacks
(compressai 1.2.8, pytorch-msssim; the trainers need nothing else that is missing there, PyAV
included, once their data caches exist); ``.gpu/image.pt`` / ``.gpu/video.pt``, weights-only
copies of the checkpoints that the trainers resume from as they are (weights in float16, the
optimizer's parameter groups with an empty state: Adam starts its moments afresh;
``--moments`` keeps them, in bfloat16), or none for a shipped weights file that git tracks
here (it travels with the working tree: the device trainer starts from it with ``--init``);
``.gpu/photos/``, patches cut from the decoded photo
cache of :func:`tools.train_image.build_cache`, PNG (or ``--jpeg Q``: three times as many at
q95), that the image trainer takes as ``--data`` (it decodes them into its own cache under
``$XDG_CACHE_HOME`` there, in a second); ``.gpu/video/cache_K_F_S_qQ.npz``, a random subset
of the video trainer's crop cache, named as that trainer looks for it beside its ``--out``, or
with ``--video-clips`` the training clips themselves (``.gpu/datasets/video/``, 5 MiB), from
which the device cuts a cache of ``--video-crops`` crops (OpenCV decodes them there: PyAV's
wheel does not fit the carry) and computes the crops' intra reconstructions on the GPU.
The photos fill what the 64 MiB limit on the working tree plus the carry leaves
(``--total-mib``, 60 by default).

``command`` prints one shell line (under 2000 characters): install the wheels into /tmp/site;
export ``PYTHONPATH``, ``XDG_CACHE_HOME``, ``PYTHONUNBUFFERED``; put the carried checkpoints
in place under ``--run-dir``; train image (and video at the same time, when the kit has it)
with ``--device cuda --bf16 --minutes M`` (``--fp32``: no bf16) and ``--lr`` the rate the
checkpoint was at (its warm-up and decay applied; other options at the trainers' defaults:
add the run's own with ``--image-args`` / ``--video-args``, which win), each under a
``timeout`` that sends SIGTERM (stop and checkpoint) ``--grace`` seconds after M minutes;
then :func:`pack` the final checkpoints into ``$OUT`` (float32 weights, bfloat16 Adam moments
or ``--pack-moments``, files under 15.5 MiB: at most 8 files and 64 MiB come back) beside the
JSON logs, all of it ``tee``'d to ``$OUT/log``.
"""
from __future__ import annotations

import argparse
import json
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / ".gpu"
WHL = ROOT / ".whl"
MIB = 1 << 20
WHEELS = ("compressai==1.2.8", "pytorch-msssim")
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")
SMALL = 4096  #: floating tensors with fewer elements keep their precision in a slim checkpoint
PIECE_OVERHEAD = 512  #: bytes a tensor adds to a ``torch.save`` file beside its data (seen: 270-340)
FILE_OVERHEAD = 4096  #: and a file, beside its tensors and its pickled structure
MAX_COMMAND = 2000


# ---- checkpoints ---------------------------------------------------------------------------
def _load(path: Path) -> dict:
    """A trainer's checkpoint, or one made of an exported ``.safetensors`` weights file
    (:func:`tools.train_common.ckpt_from_weights`: no optimizer state)."""
    import torch

    if path.suffix == ".safetensors":
        from tools.train_common import ckpt_from_weights

        return ckpt_from_weights(path)
    return torch.load(path, map_location="cpu", weights_only=False)


def slim_ckpt(src: Path, dest: Path, moments: bool = False, weights_dtype: str = "float16") -> dict:
    """A copy of the checkpoint ``src`` that the trainers resume from as it is, small enough to
    carry: floating weights of at least :data:`SMALL` elements in ``weights_dtype`` (loading
    casts them back to float32; one that would overflow stays float32), the optimizer's
    parameter groups with an empty state (Adam's moments start afresh) or, with ``moments``,
    its state with the moments in bfloat16. Returns a summary."""
    import torch

    from tools.train_common import save_ckpt

    st = _load(src)
    dt = getattr(torch, weights_dtype)
    model = OrderedDict()
    for k, v in st["model"].items():
        if v.is_floating_point() and v.numel() >= SMALL:
            w = v.to(dt)
            v = w if torch.isfinite(w).all() else v
        model[k] = v
    model._metadata = getattr(st["model"], "_metadata", None)  # type: ignore[attr-defined]
    opt, lr = st["opt"], None
    if opt is not None:  # None: made of exported weights
        state = {i: {k: (t.to(torch.bfloat16) if k.startswith("exp_avg") else t)
                     for k, t in s.items()} for i, s in opt["state"].items()} if moments else {}
        opt = {"state": state, "param_groups": opt["param_groups"]}
        g = opt["param_groups"][0]
        lr = g["lr"] / g.get("gain", 1.0)
    src_step = st["step"]
    st.update(model=model, opt=opt)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_ckpt(dest, st)
    return {"source": str(src), "step": src_step, "config": st["config"], "bytes": dest.stat().st_size,
            "weights": weights_dtype, "moments": "bfloat16" if moments and opt else "fresh",
            "lr": lr}


MARK = "__gpu_kit_tensor__"  #: a tensor's place in the structure that pack() writes


def _rebuild(o, leaf):
    """``o`` with each part for which ``leaf`` returns a 1-tuple replaced by its item; dicts
    (their type and torch's ``_metadata`` kept), lists and tuples are walked."""
    hit = leaf(o)
    if hit:
        return hit[0]
    if isinstance(o, dict):
        out = type(o)((k, _rebuild(v, leaf)) for k, v in o.items())
        if hasattr(o, "_metadata"):
            out._metadata = o._metadata
        return out
    if isinstance(o, (list, tuple)):
        return type(o)(_rebuild(v, leaf) for v in o)
    return o


def pack(ckpt: Path, prefix: Path, limit_mib: float = 15.5, moments: str = "bfloat16") -> list[Path]:
    """Write the checkpoint ``ckpt`` as ``<prefix>.0.pt``, ``<prefix>.1.pt``, ... of at most
    ``limit_mib`` each (tensors are split across files where needed): weights as they are,
    Adam's moments in ``moments`` (``float32``, ``bfloat16``, or ``none``: dropped, a fresh
    optimizer state on resume). :func:`unpack` puts it together again."""
    import torch

    st = _load(ckpt)
    if moments == "none":
        st["opt"] = {"state": {}, "param_groups": st["opt"]["param_groups"]}
    else:
        md = getattr(torch, moments)
        for s in st["opt"]["state"].values():
            for k in [k for k in s if k.startswith("exp_avg")]:
                s[k] = s[k].to(md)
    tensors: list = []

    def take(x):
        if isinstance(x, torch.Tensor):
            tensors.append(x)
            return ({MARK: len(tensors) - 1},)
        return ()

    skeleton = _rebuild(st, take)
    meta = {"skeleton": skeleton, "shapes": [(tuple(t.shape), t.dtype) for t in tensors]}
    limit = int(limit_mib * MIB)
    if limit < 4 * FILE_OVERHEAD:
        raise ValueError(f"--limit-mib {limit_mib}: too small")
    shards: list[dict] = [{}]
    used = FILE_OVERHEAD + len(pickle.dumps(meta, protocol=2))  # torch.save pickles so
    for i, t in enumerate(tensors):
        flat, at, part = t.detach().contiguous().view(-1), 0, 0
        while at < flat.numel() or (at == 0 and part == 0):
            room = (limit - used - PIECE_OVERHEAD) // t.element_size()
            if room <= 0:
                shards.append({})
                used = FILE_OVERHEAD
                continue
            piece = flat[at:at + room].clone()
            shards[-1][(i, part)] = piece
            used += piece.numel() * t.element_size() + PIECE_OVERHEAD
            at, part = at + piece.numel(), part + 1
    meta["files"] = len(shards)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, pieces in enumerate(shards):
        p = prefix.with_name(f"{prefix.name}.{n}.pt")
        torch.save({"pieces": pieces, **(meta if n == 0 else {})}, p)
        paths.append(p)
    return paths


def unpack(prefix: Path, dest: Path | None = None) -> dict:
    """The checkpoint that :func:`pack` wrote under ``prefix``; saved to ``dest`` when given
    (a ``last.pt`` that the trainers resume from)."""
    import torch

    from tools.train_common import save_ckpt

    first = _load(prefix.with_name(f"{prefix.name}.0.pt"))
    pieces = dict(first["pieces"])
    for n in range(1, first["files"]):
        pieces.update(_load(prefix.with_name(f"{prefix.name}.{n}.pt"))["pieces"])
    tensors = []
    for i, (shape, dtype) in enumerate(first["shapes"]):
        parts = [pieces[k] for k in sorted(k for k in pieces if k[0] == i)]
        tensors.append(torch.cat(parts).view(shape) if len(parts) > 1 else parts[0].view(shape))
    st = _rebuild(first["skeleton"],
                  lambda x: (tensors[x[MARK]],) if isinstance(x, dict) and set(x) == {MARK} else ())
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_ckpt(dest, st)
    return st


# ---- data ----------------------------------------------------------------------------------
def cut_patches(cache: Path, dest: Path, budget: int, patch: int = 256, seed: int = 0,
                jpeg: int = 0) -> dict:
    """Random ``patch`` x ``patch`` crops of the photos in the decoded cache ``cache`` (one
    per photo in a random order, then a second round, ...) as PNG files in ``dest`` (or JPEG
    files of quality ``jpeg``, 4:4:4: about three times as many patches at q95) until ``budget``
    bytes are written."""
    from PIL import Image

    d = np.load(cache)
    data, shapes = d["data"], d["shapes"]
    starts = np.concatenate([[0], np.cumsum(shapes.prod(1))[:-1]])
    rng = np.random.default_rng(seed)
    usable = [k for k, (h, w, _) in enumerate(shapes) if h >= patch and w >= patch]
    if not usable:
        raise SystemExit(f"no photo of at least {patch} x {patch} in {cache}")
    dest.mkdir(parents=True, exist_ok=True)
    n = used = 0
    while True:
        for k in rng.permutation(usable):
            h, w, _ = shapes[k]
            img = data[starts[k]:starts[k] + h * w * 3].reshape(h, w, 3)
            y, x = rng.integers(h - patch + 1), rng.integers(w - patch + 1)
            im = Image.fromarray(img[y:y + patch, x:x + patch])
            if jpeg:
                im.save(p := dest / f"p{n:05d}.jpg", quality=jpeg, subsampling=0)
            else:
                im.save(p := dest / f"p{n:05d}.png", compress_level=9)
            size = p.stat().st_size
            if used + size > budget:
                p.unlink()
                return {"patches": n, "patch": patch, "bytes": used, "photos": len(usable),
                        "format": f"jpeg q{jpeg}" if jpeg else "png"}
            used, n = used + size, n + 1


def video_subset(cache: Path, dest_dir: Path, budget: int, seed: int = 0) -> dict:
    """A random subset of the video trainer's crop cache (``cache_N_F_S_qQ.npz``), compressed,
    as many crops as ``budget`` bytes hold, named ``cache_K_F_S_qQ.npz`` in ``dest_dir``: the
    trainer finds it beside ``--out`` with ``--crops K --frames F --size S``."""
    import io

    m = re.fullmatch(r"cache_\d+_(\d+)_(\d+)_q(\d+)\.npz", cache.name)
    if m is None:
        raise SystemExit(f"{cache}: not a video crop cache (cache_N_F_S_qQ.npz)")
    frames, size, nq = (int(g) for g in m.groups())
    d = np.load(cache)
    seqs, intra = d["seqs"], d["intra"]
    order = np.random.default_rng(seed).permutation(len(seqs))
    sample = np.sort(order[:8])
    buf = io.BytesIO()
    np.savez_compressed(buf, seqs=seqs[sample], intra=intra[sample])
    per_crop = buf.tell() / len(sample)
    dest_dir.mkdir(parents=True, exist_ok=True)
    k = min(len(seqs), max(1, int(0.97 * budget / per_crop)))
    while True:
        path = dest_dir / f"cache_{k}_{frames}_{size}_q{nq}.npz"
        np.savez_compressed(path, seqs=seqs[np.sort(order[:k])], intra=intra[np.sort(order[:k])])
        got = path.stat().st_size
        if got <= budget or k == 1:
            return {"cache": path.name, "crops": k, "frames": frames, "size": size,
                    "n_quality": nq, "bytes": got}
        path.unlink()
        k = max(1, int(k * 0.97 * budget / got))


# ---- prepare -------------------------------------------------------------------------------
def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of what a device run sends besides the carry: tracked files and untracked ones
    that git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                           capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root / n).lstat().st_size for n in names if n and (root / n).exists())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def fetch_wheels(whl: Path) -> list[str]:
    """The wheels of :data:`WHEELS` for Python 3.12 on x86-64 Linux (GPU.md's command)."""
    have = sorted(p.name for p in whl.glob("*.whl"))
    if not (any(n.startswith("compressai-1.2.8-") for n in have)
            and any(n.startswith("pytorch_msssim-") for n in have)):
        plat = [a for p in PLATFORMS for a in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *plat, "-d", str(whl),
                        *WHEELS], check=True)
        have = sorted(p.name for p in whl.glob("*.whl"))
    return have


def video_cache_of(ckpt: Path, st: dict) -> Path:
    """The crop cache a video checkpoint was trained on: ``cache_*_F_S_qQ.npz`` beside its
    run folder, F and S from the checkpoint's data note, Q from its configuration."""
    m = re.search(r"crops of (\d+) frames \((\d+)x", st.get("data", ""))
    pattern = f"cache_*_{m[1]}_{m[2]}_q{st['config']['n_quality']}.npz" if m else \
        f"cache_*_q{st['config']['n_quality']}.npz"
    found = sorted(ckpt.resolve().parent.parent.glob(pattern), key=lambda p: p.stat().st_size)
    if not found:
        raise SystemExit(f"no {pattern} beside {ckpt.parent}: name it with --video-cache")
    return found[-1]


def _travels(weights: Path) -> bool:
    """An exported weights file that git tracks in this repository (a shipped model): it
    travels with the working tree, so the device trainer starts from it with ``--init``."""
    p = weights.resolve()
    if p.suffix != ".safetensors" or not p.is_relative_to(ROOT):
        return False
    return subprocess.run(["git", "ls-files", "--error-unmatch", str(p.relative_to(ROOT))], cwd=ROOT,
                          capture_output=True).returncode == 0


def _start(src: Path, dest: Path, args) -> dict:
    """What the device trainer starts from: a shipped weights file itself (``--init``), or a
    slim copy of a checkpoint at ``dest``."""
    if _travels(src):
        return {"init": str(src.resolve().relative_to(ROOT)), "lr": None,
                "step": _load(src)["step"]}
    return slim_ckpt(src, dest, args.moments, args.weights_dtype)


def copy_clips(dest: Path) -> dict:
    """The video trainer's training clips (:func:`tools.train_video.training_clips`, 5 MiB of
    H.264 and y4m), copied under ``dest/video`` as under the datasets root: on the device the
    trainer cuts its crop cache from them (``NCODEC_DATASETS``), with OpenCV where PyAV is
    missing, and computes the intra reconstructions there, so the crops are not limited by
    what the carry holds."""
    from tools.train_video import VIDEO, training_clips

    names = []
    for clip in training_clips():
        rel = clip.relative_to(VIDEO)
        (dest / "video" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, dest / "video" / rel)
        names.append(str(rel))
    if not names:
        raise SystemExit(f"no training clips under {VIDEO}")
    return {"clips": names, "bytes": folder_bytes(dest)}


def prepare(args) -> dict:
    kit, whl = Path(args.kit), Path(args.whl)
    kit.mkdir(parents=True, exist_ok=True)
    for old in ("photos", "video", "datasets", "image.pt", "video.pt", "kit.json"):
        p = kit / old
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    man: dict = {}
    if not args.no_wheels:
        man["wheels"] = fetch_wheels(whl)
    if args.video_ckpt:
        ck = Path(args.video_ckpt)
        man["video"] = _start(ck, kit / "video.pt", args)
        if args.video_clips:
            man["video"].update(copy_clips(kit / "datasets"), crops=args.video_crops,
                                frames=args.video_frames, size=args.video_size)
        else:
            src = Path(args.video_cache) if args.video_cache else video_cache_of(ck, _load(ck))
            man["video"].update(video_subset(src, kit / "video", int(args.video_mib * MIB),
                                             args.seed), source_cache=str(src))
    if args.image_ckpt:
        man["image"] = _start(Path(args.image_ckpt), kit / "image.pt", args)
        if args.photos_mib is not None:
            budget = int(args.photos_mib * MIB)
        else:
            budget = int(args.total_mib * MIB) - tree_bytes() - folder_bytes(kit) - folder_bytes(whl)
            if budget < MIB:
                raise SystemExit(f"{budget / MIB:.2f} MiB left for photos: carry less (--total-mib)")
        from tools.train_image import build_cache

        man["photos"] = cut_patches(build_cache(Path(args.data)), kit / "photos", budget,
                                    args.patch, args.seed, args.jpeg)
    man["carry_bytes"] = folder_bytes(kit) + folder_bytes(whl)
    (kit / "kit.json").write_text(json.dumps(man, indent=1) + "\n")
    return man


# ---- the device command ----------------------------------------------------------------------
def _lr(part: dict) -> str:
    """``--lr`` at the rate the checkpoint was at; none (the trainer's default, or the one in
    ``--image-args`` / ``--video-args``) for a checkpoint made of exported weights."""
    return f"--lr {part['lr']:.3g}" if part.get("lr") is not None else ""


def _init(part: dict, slim: Path, run: str, setup: list[str], rel) -> str:
    """The trainer's start: ``--init`` a shipped weights file, or (a setup step) the carried
    slim checkpoint copied into its run folder."""
    if "init" in part:
        return f"--init {shlex.quote(part['init'])}"
    setup.append(f"cp {rel(slim)} {run}/last.pt")
    return ""


def command(args) -> str:
    """The one shell line to run on the device (see the module's docstring)."""
    kit = Path(args.kit)
    man = json.loads((kit / "kit.json").read_text())
    if not {"image", "video"} & set(man):
        raise SystemExit(f"{kit}: no checkpoint in the kit (prepare --image-ckpt / --video-ckpt)")
    rel = lambda p: shlex.quote(str(p.resolve().relative_to(ROOT) if p.resolve().is_relative_to(ROOT)  # noqa: E731
                                    else p.resolve()))
    py, out, r, m = args.python, args.out, shlex.quote(args.run_dir), args.minutes
    kill = f"timeout -k 20 {round(m * 60 + args.grace)}"
    bf16 = "" if args.fp32 else " --bf16"
    common = f"--device {args.device}{bf16} --minutes {m:g} --threads {args.threads} --ckpt-every 120"
    steps = ["set -o pipefail", f"rm -rf {r}", f"mkdir -p {r}/image {r}/video/run {r}/xdg"]
    setup = [] if args.no_install else [
        f"{py} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
        f"--target /tmp/site {rel(Path(args.whl))}/*.whl"]
    site = "" if args.no_install else "/tmp/site:"
    setup.append(f"export PYTHONPATH={site}$PWD XDG_CACHE_HOME={r}/xdg PYTHONUNBUFFERED=1")
    body, packs = [], []
    if "video" in man:
        v = man["video"]
        if "clips" in v:  # the device cuts the crop cache from the carried clips
            env = f"NCODEC_DATASETS={rel(kit / 'datasets')} "
        else:
            env = ""
            setup.append(f"cp {rel(kit / 'video' / v['cache'])} {r}/video/")
        train = " ".join([f"{env}{kill} {py} -m tools.train_video --out {r}/video/run",
                          f"--crops {v['crops']} --frames {v['frames']} --size {v['size']}",
                          f"--max-p {v['frames'] - 1} --batch {args.video_batch}",
                          _init(v, kit / "video.pt", f"{r}/video/run", setup, rel), _lr(v), common,
                          args.video_args]).rstrip()
        body.append(f"({train} 2>&1 | sed -u 's/^/[video] /') &")
        packs.append(("video", f"{r}/video/run"))
    if "image" in man:
        i = man["image"]
        body.append(" ".join([f"{kill} {py} -m tools.train_image --out {r}/image",
                              f"--data {rel(kit / 'photos')} --batch {args.batch}",
                              f"--batch-late {args.batch}",
                              _init(i, kit / "image.pt", f"{r}/image", setup, rel), _lr(i), common,
                              args.image_args]).rstrip())
        packs.insert(0, ("image", f"{r}/image"))
    body.append("wait")
    for name, d in packs:
        body += [f"{py} -m tools.gpu_kit pack {d}/last.pt {out}/{name} --moments {args.pack_moments}",
                 f"cp {d}/log.jsonl {out}/{name}.log.jsonl"]
    gpu = ["nvidia-smi -L"] if args.device == "cuda" else []
    inner = ["date -u", *gpu, " && ".join(setup) + " || exit 1", *body, f"ls -l {out}", "date -u"]
    # a job sent to the background ends with "&", which takes no ";" after it
    inner_s = "".join(c + (" " if c.endswith("&") else "; ") for c in inner)
    line = "; ".join(steps) + "; { " + inner_s + "} 2>&1 | tee " + f"{out}/log"
    if len(line) >= MAX_COMMAND:
        raise SystemExit(f"the command has {len(line)} characters, {MAX_COMMAND} at most")
    return line


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.gpu_kit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="fill .gpu/ and .whl/")
    p.add_argument("--image-ckpt", default="",
                   help="an image trainer's last.pt, or exported weights (.safetensors)")
    p.add_argument("--video-ckpt", default="",
                   help="a video trainer's last.pt, or exported weights (.safetensors)")
    p.add_argument("--video-cache", default="",
                   help="its crop cache (default: the cache_*.npz beside its run folder)")
    p.add_argument("--video-mib", type=float, default=6.0, help="size of the video crop subset")
    p.add_argument("--video-clips", action="store_true",
                   help="carry the training clips (5 MiB) instead of a crop subset: the device "
                        "cuts --video-crops crops of --video-frames x --video-size from them")
    p.add_argument("--video-crops", type=int, default=3000)
    p.add_argument("--video-frames", type=int, default=5)
    p.add_argument("--video-size", type=int, default=192)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "train"),
                   help="the training photos (their decoded cache is made when missing)")
    p.add_argument("--patch", type=int, default=256, help="side of the photo patches")
    p.add_argument("--jpeg", type=int, default=0, metavar="Q",
                   help="store the patches as JPEG of this quality (default: PNG, lossless)")
    p.add_argument("--photos-mib", type=float, default=None,
                   help="bytes of photo patches (default: what --total-mib leaves)")
    p.add_argument("--total-mib", type=float, default=60.0,
                   help="the working tree plus the carry, at most (the limit is 64)")
    p.add_argument("--moments", action="store_true",
                   help="keep Adam's moments (bfloat16) in the carried checkpoints")
    p.add_argument("--weights-dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--no-wheels", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kit", default=str(KIT))
    p.add_argument("--whl", default=str(WHL))
    c = sub.add_parser("command", help="print the device command")
    c.add_argument("--minutes", type=float, default=9.0, help="training budget of each trainer")
    c.add_argument("--grace", type=float, default=15.0,
                   help="seconds after --minutes when `timeout` sends SIGTERM (a backstop)")
    c.add_argument("--batch", type=int, default=32, help="image batch (also --batch-late)")
    c.add_argument("--video-batch", type=int, default=16)
    c.add_argument("--threads", type=int, default=4)
    c.add_argument("--fp32", action="store_true",
                   help="train in float32 (TF32 matmuls and convolutions) instead of bf16 autocast")
    c.add_argument("--pack-moments", default="bfloat16", choices=("float32", "bfloat16", "none"),
                   help="Adam's moments in what comes back (none: weights only; what comes back "
                        "is 64 MiB at most, and the image model's float32 weights take 44)")
    c.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    c.add_argument("--image-args", default="", help="more train_image options (they win)")
    c.add_argument("--video-args", default="", help="more train_video options (they win)")
    c.add_argument("--python", default="python3")
    c.add_argument("--out", default="$OUT")
    c.add_argument("--run-dir", default="/tmp/ncodec_run", help="the trainers' --out folders")
    c.add_argument("--no-install", action="store_true", help="no wheel install (a CPU rehearsal)")
    c.add_argument("--kit", default=str(KIT))
    c.add_argument("--whl", default=str(WHL))
    k = sub.add_parser("pack", help="a checkpoint as files under 15.5 MiB")
    k.add_argument("ckpt")
    k.add_argument("prefix")
    k.add_argument("--limit-mib", type=float, default=15.5)
    k.add_argument("--moments", default="bfloat16", choices=("float32", "bfloat16", "none"))
    u = sub.add_parser("unpack", help="a resumable checkpoint from pack's files")
    u.add_argument("prefix")
    u.add_argument("dest")
    return ap


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if args.cmd == "prepare":
        man = prepare(args)
        man["tree_bytes"] = tree_bytes()
        print(json.dumps(man, indent=1))
        print(f"working tree {man['tree_bytes'] / MIB:.1f} MiB + carry {man['carry_bytes'] / MIB:.1f} "
              f"MiB = {(man['tree_bytes'] + man['carry_bytes']) / MIB:.1f} MiB (limit 64)",
              file=sys.stderr)
    elif args.cmd == "command":
        print(command(args))
    elif args.cmd == "pack":
        for p in pack(Path(args.ckpt), Path(args.prefix), args.limit_mib, args.moments):
            print(f"{p} {p.stat().st_size / MIB:.2f} MiB")
    else:
        st = unpack(Path(args.prefix), Path(args.dest))
        print(f"{args.dest}: step {st['step']}")


if __name__ == "__main__":
    main()
