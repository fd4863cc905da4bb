"""tools/gpu_kit.py (the kit for a lent GPU) and the trainers' ``--minutes`` budget, on tiny
models and synthetic data (the fixtures of test_train.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from test_train import (VIDEO_ARGS, _ckpt, _image_args, _log, cache_home, image_main,  # noqa: F401
                        photos, video_root)

from tools import gpu_kit


def _tiny_image_run(photos: Path, image_main, out: Path, steps: int = 2) -> Path:
    image_main(_image_args(photos, out, "--steps", str(steps)))
    return out / "last.pt"


def test_minutes_stops_with_a_resumable_checkpoint(photos, image_main, monkeypatch, tmp_path):
    """--minutes counts from the process's start (here set 2 s back: a budget of 0.6 s is spent
    when the first step ends): the run stops as on SIGTERM, with its checkpoint, and resumes;
    a budget not yet spent changes nothing."""
    import tools.train_common as tc

    out = tmp_path / "run"
    monkeypatch.setattr(tc, "PROCESS_START", time.time() - 2.0)
    image_main(_image_args(photos, out, "--steps", "1000", "--minutes", "0.01"))
    st = _ckpt(out)
    assert st["step"] == 1 and [r["step"] for r in _log(out)] == [1]
    image_main(_image_args(photos, out, "--steps", "3", "--minutes", "60"))
    assert _ckpt(out)["step"] == 3 and [r["step"] for r in _log(out)] == [1, 2, 3]


def test_prepare_slim_checkpoint_and_patches_resume(photos, image_main, tmp_path):
    src = _tiny_image_run(photos, image_main, tmp_path / "src")
    kit = tmp_path / "kit"
    gpu_kit.main(["prepare", "--image-ckpt", str(src), "--data", str(photos), "--patch", "64",
                  "--photos-mib", "0.05", "--no-wheels", "--kit", str(kit), "--whl",
                  str(tmp_path / "whl")])
    man = json.loads((kit / "kit.json").read_text())
    assert man["image"]["step"] == 2 and man["image"]["moments"] == "fresh"
    assert 0 < man["photos"]["patches"] == len(list((kit / "photos").glob("*.png")))
    assert man["photos"]["bytes"] <= 0.05 * gpu_kit.MIB
    full, slim = torch.load(src, weights_only=False), torch.load(kit / "image.pt", weights_only=False)
    assert slim["opt"]["state"] == {} and slim["opt"]["param_groups"] == full["opt"]["param_groups"]
    aux, aux_full = slim["aux_opt"]["state"][0], full["aux_opt"]["state"][0]
    assert all(torch.equal(aux[k], aux_full[k]) for k in aux_full)  # tiny: kept as it is
    big = [k for k, v in full["model"].items() if v.is_floating_point() and v.numel() >= gpu_kit.SMALL]
    assert big and all(slim["model"][k].dtype == torch.float16 for k in big)
    for k, v in full["model"].items():
        torch.testing.assert_close(slim["model"][k].to(v.dtype), v, rtol=1e-3, atol=1e-4)
    assert (kit / "image.pt").stat().st_size < src.stat().st_size / 2
    # the trainer resumes from it as it is, on the patches
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(kit / "image.pt", run / "last.pt")
    image_main(_image_args(kit / "photos", run, "--steps", "4"))
    assert _ckpt(run)["step"] == 4 and [r["step"] for r in _log(run)] == [3, 4]
    assert all(np.isfinite(r["loss"]) for r in _log(run))


def test_prepare_from_shipped_weights(photos, image_main, tmp_path):
    """A kit made of an exported weights file: its steps, no optimizer state, no --lr in the
    device command (the run gives its own); the trainer resumes from it."""
    src = _tiny_image_run(photos, image_main, tmp_path / "src")
    weights = tmp_path / "w.safetensors"
    image_main(_image_args(photos, src.parent, "--export", str(weights)))
    kit = tmp_path / "kit"
    gpu_kit.main(["prepare", "--image-ckpt", str(weights), "--data", str(photos), "--patch", "64",
                  "--photos-mib", "0.05", "--no-wheels", "--kit", str(kit), "--whl",
                  str(tmp_path / "whl")])
    man = json.loads((kit / "kit.json").read_text())
    assert man["image"]["step"] == 2 and man["image"]["lr"] is None
    assert torch.load(kit / "image.pt", weights_only=False)["opt"] is None
    line = gpu_kit.command(gpu_kit.parser().parse_args(["command", "--kit", str(kit),
                                                        "--image-args=--lr 1e-4"]))
    assert line.count("--lr") == 1 and "--lr 1e-4" in line
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(kit / "image.pt", run / "last.pt")
    image_main(_image_args(kit / "photos", run, "--steps", "3"))
    assert _ckpt(run)["step"] == 3


def test_pack_unpack(photos, image_main, tmp_path):
    src = _tiny_image_run(photos, image_main, tmp_path / "src")
    full = torch.load(src, weights_only=False)
    files = gpu_kit.pack(src, tmp_path / "back" / "image", limit_mib=0.05, moments="float32")
    assert len(files) > 2 and all(f.stat().st_size <= 0.05 * gpu_kit.MIB for f in files)
    st = gpu_kit.unpack(tmp_path / "back" / "image")
    assert st.keys() == full.keys() and st["config"] == full["config"] and st["step"] == 2
    assert getattr(st["model"], "_metadata", None) == getattr(full["model"], "_metadata", None)
    for a, b in ((st["model"], full["model"]), (st["opt"]["state"][0], full["opt"]["state"][0])):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert st["opt"]["param_groups"] == full["opt"]["param_groups"]
    # bfloat16 moments (the default): smaller, and the trainer resumes from the unpacked file
    files = gpu_kit.pack(src, tmp_path / "back" / "bf16", limit_mib=0.05)
    assert sum(f.stat().st_size for f in files) < sum(f.stat().st_size for f in
                                                      (tmp_path / "back").glob("image.*.pt"))
    run = tmp_path / "run"
    gpu_kit.main(["unpack", str(tmp_path / "back" / "bf16"), str(run / "last.pt")])
    image_main(_image_args(photos, run, "--steps", "3"))
    assert _ckpt(run)["step"] == 3


def test_video_subset_is_found_by_the_trainer(video_root, monkeypatch, tmp_path):
    """prepare --video-ckpt: a weights-only checkpoint (bfloat16 moments kept) and a subset of
    the run's crop cache, found beside the run folder, that the video trainer takes beside its
    --out (it could build none: no clips there)."""
    import tools.train_video as tv

    monkeypatch.setattr(tv, "VIDEO", video_root / "video")
    src = video_root / "kit_src"  # its crop cache goes beside it
    tv.main(VIDEO_ARGS + ["--out", str(src), "--steps", "2"])
    kit = tmp_path / "kit"
    gpu_kit.main(["prepare", "--video-ckpt", str(src / "last.pt"), "--video-mib", "0.2",
                  "--moments", "--no-wheels", "--kit", str(kit), "--whl", str(tmp_path / "whl")])
    v = json.loads((kit / "kit.json").read_text())["video"]
    assert v["step"] == 2 and v["moments"] == "bfloat16" and (v["frames"], v["size"]) == (3, 64)
    assert (kit / "video" / v["cache"]).stat().st_size <= 0.2 * gpu_kit.MIB and "image" not in v
    slim = torch.load(kit / "video.pt", weights_only=False)
    assert {s["exp_avg"].dtype for s in slim["opt"]["state"].values()} == {torch.bfloat16}
    monkeypatch.setattr(tv, "VIDEO", tmp_path / "no_clips")
    run = kit / "video" / "run"
    run.mkdir()
    shutil.copy(kit / "video.pt", run / "last.pt")
    args = VIDEO_ARGS.copy()
    args[args.index("--crops") + 1] = str(v["crops"])
    tv.main(args + ["--out", str(run), "--steps", "3"])
    assert _ckpt(run)["step"] == 3 and [r["step"] for r in _log(run)] == [3]


def test_command_line(tmp_path):
    """The device command: one line under 2000 characters that bash parses, with the steps
    of GPU.md's recipe in it."""
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "kit.json").write_text(json.dumps({
        "image": {"lr": 1e-4},
        "video": {"lr": 3e-5, "cache": "cache_28_5_192_q4.npz", "crops": 28, "frames": 5,
                  "size": 192}}))
    line = gpu_kit.command(gpu_kit.parser().parse_args(["command", "--kit", str(kit)]))
    assert len(line) < 2000 and "\n" not in line
    subprocess.run(["bash", "-n", "-c", line], check=True)
    for part in ("pip install -q --no-index --no-deps", "--target /tmp/site", "PYTHONUNBUFFERED=1",
                 "XDG_CACHE_HOME=", "--device cuda --bf16 --minutes 9", "--batch 32",
                 "--crops 28 --frames 5 --size 192", "-m tools.gpu_kit pack",
                 "$OUT/image.log.jsonl", "| tee $OUT/log"):
        assert part in line, part
    assert line.index("tools.train_video") < line.index("tools.train_image") < line.index("wait")



def test_shipped_weights_travel_with_the_tree(tmp_path):
    """prepare with a shipped weights file that git tracks carries no checkpoint: the device
    trainer starts from the file itself (--init); --fp32 drops bf16, --pack-moments is passed."""
    shipped = gpu_kit.ROOT / "codec" / "weights" / "image_small.safetensors"
    assert gpu_kit._travels(shipped)
    other = tmp_path / "w.safetensors"
    other.write_bytes(b"")
    assert not gpu_kit._travels(other)
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "kit.json").write_text(json.dumps({"image": {
        "init": "codec/weights/image_small.safetensors", "lr": None, "step": 1}}))
    line = gpu_kit.command(gpu_kit.parser().parse_args(
        ["command", "--kit", str(kit), "--fp32", "--pack-moments", "none"]))
    subprocess.run(["bash", "-n", "-c", line], check=True)
    assert "--init codec/weights/image_small.safetensors" in line and "image.pt" not in line
    assert "--bf16" not in line and "--moments none" in line


def test_video_clips_travel(video_root, monkeypatch, tmp_path):
    """prepare --video-clips carries the training clips instead of a crop subset; the device
    command points the video trainer at them (NCODEC_DATASETS), and the trainer cuts its crop
    cache from the copies as from the datasets root."""
    import tools.train_video as tv

    monkeypatch.setattr(tv, "VIDEO", video_root / "video")
    src = tmp_path / "src"
    tv.main(VIDEO_ARGS + ["--out", str(src), "--steps", "1"])
    kit = tmp_path / "kit"
    gpu_kit.main(["prepare", "--video-ckpt", str(src / "last.pt"), "--video-clips",
                  "--video-crops", "12", "--video-frames", "3", "--video-size", "64",
                  "--no-wheels", "--kit", str(kit), "--whl", str(tmp_path / "whl")])
    v = json.loads((kit / "kit.json").read_text())["video"]
    assert v["clips"] == ["raw/synthetic_320x192.y4m"] and (v["crops"], v["frames"]) == (12, 3)
    assert not (kit / "video").exists()
    line = gpu_kit.command(gpu_kit.parser().parse_args(["command", "--kit", str(kit)]))
    subprocess.run(["bash", "-n", "-c", line], check=True)
    assert f"NCODEC_DATASETS={(kit / 'datasets').resolve()} timeout" in line
    assert "--crops 12 --frames 3 --size 64" in line and "cache_" not in line
    monkeypatch.setattr(tv, "VIDEO", kit / "datasets" / "video")
    run = tmp_path / "dev" / "run"
    run.mkdir(parents=True)
    shutil.copy(kit / "video.pt", run / "last.pt")
    args = VIDEO_ARGS.copy()
    args[args.index("--crops") + 1] = "12"
    tv.main(args + ["--out", str(run), "--steps", "2"])
    assert _ckpt(run)["step"] == 2 and (tmp_path / "dev" / "cache_12_3_64_q4.npz").exists()
