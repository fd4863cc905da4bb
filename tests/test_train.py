"""The trainers (tools/train_image.py, tools/train_video.py) on tiny models and synthetic data:
steps, checkpoints, resume, bf16, JSON config files, two-process DDP (gloo) and the
``ncodec train`` subcommand. Everything is written under pytest's tmp folders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Four synthetic training photos (smooth colours plus noise)."""
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:112]
    for i in range(4):
        base = np.stack([np.sin(xx / (7 + i) + c) * np.cos(yy / (9 + c)) for c in range(3)], -1)
        a = np.clip(127 + 90 * base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(d / f"p{i}.png")
    return d


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xdg_cache")


@pytest.fixture
def image_main(monkeypatch, cache_home):
    import tools.train_image as ti

    monkeypatch.setattr(ti, "CACHE", cache_home / "ncodec")
    return ti.main


def _image_args(photos: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", "tiny", "--out", str(out), "--data", str(photos), "--batch", "2",
            "--crop", "64", "--log-every", "1", "--eval-every", "1000000", "--device", "cpu",
            *extra]


def _log(out: Path) -> list[dict]:
    return [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]


def _ckpt(out: Path) -> dict:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=False)


def test_image_steps_checkpoint_resume(photos, image_main, tmp_path):
    out = tmp_path / "run"
    image_main(_image_args(photos, out, "--steps", "3"))
    st = _ckpt(out)
    assert st["step"] == 3 and set(st) == {"model", "opt", "aux_opt", "step", "elapsed", "config", "data"}
    assert not any(k.startswith("module.") for k in st["model"])
    assert [r["step"] for r in _log(out)] == [1, 2, 3]
    image_main(_image_args(photos, out, "--steps", "5"))
    assert _ckpt(out)["step"] == 5
    assert _ckpt(out)["elapsed"] >= st["elapsed"]
    assert [r["step"] for r in _log(out)] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(r["loss"]) for r in _log(out))


def test_image_grow(photos, image_main, tmp_path):
    """--grow-blocks / --grow-widths / --grow-latent deepen and widen a resumed run without
    changing its reconstruction; Adam state follows the grown parameters."""
    from models.image import ImageModel, ImageModelConfig

    image_main(_image_args(photos, tmp_path, "--steps", "2"))
    st = _ckpt(tmp_path)
    small = ImageModel(ImageModelConfig.from_dict(st["config"]))
    small.load_state_dict(st["model"])
    w = tuple(c + 4 for c in small.widths)
    m = small.cfg.m + small.cfg.m // small.cfg.slices  # one slice more
    big, names = small.grown((1, 1, 1, 1), w, m)
    x, q = torch.rand(1, 3, 64, 64), torch.tensor([1.3])
    with torch.no_grad():
        ref, out = small.eval()(x, q, noise=False), big.eval()(x, q, noise=False)
    torch.testing.assert_close(out["x_hat"], ref["x_hat"], rtol=0, atol=1e-6)
    lik_ref = ref["likelihoods"]["y"]  # the old slices' probabilities are untouched
    assert len(out["likelihoods"]["y"]) == len(lik_ref) + 2
    for a, b in zip(out["likelihoods"]["y"], lik_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(names) == len(list(small.parameters()))
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    image_main(_image_args(photos, tmp_path, "--steps", "4", "--grow-blocks", "1,1,1,1",
                           "--grow-widths", ",".join(map(str, w)), "--grow-latent", str(m)))
    st = _ckpt(tmp_path)
    assert st["step"] == 4 and st["config"]["blocks"] == [1, 1, 1, 1]
    assert st["config"]["widths"] == list(w) and st["config"]["m"] == m
    assert st["config"]["slices"] == small.cfg.slices + 1
    model = dict(ImageModel(ImageModelConfig.from_dict(st["config"])).named_parameters())
    main = [n for n in model if not n.endswith("quantiles")]
    for i, s in st["opt"]["state"].items():
        assert s["exp_avg"].shape == model[main[i]].shape
    assert [r["step"] for r in _log(tmp_path)] == [1, 2, 3, 4]
    for flag, bad in (("--grow-blocks", "0,1,1,1"), ("--grow-blocks", "1,1,1"),
                      ("--grow-widths", "4,4,4"), ("--grow-latent", "1")):  # shrinking, wrong count: a clear refusal
        with pytest.raises(SystemExit, match="grow-"):
            image_main(_image_args(photos, tmp_path, "--steps", "5", flag, bad))
    assert _ckpt(tmp_path)["step"] == 4


def test_image_decoder_only(photos, image_main, tmp_path):
    """--grow-decoder-blocks / --grow-decoder-widths grow only the synthesis (its function
    unchanged); --decoder-only then trains it alone: every other parameter, hence every
    latent and its rate, stays as it was."""
    from models.image import ImageModel, ImageModelConfig

    image_main(_image_args(photos, tmp_path, "--steps", "2"))
    st = _ckpt(tmp_path)
    small = ImageModel(ImageModelConfig.from_dict(st["config"]))
    small.load_state_dict(st["model"])
    w = tuple(c + 4 for c in small.widths)
    b = tuple(k + 1 for k in small.cfg.blocks)
    big, _ = small.grown(dec_blocks=b, dec_widths=w)
    assert big.widths == small.widths and big.cfg.blocks == small.cfg.blocks
    assert big.dec_widths == w and big.dec_blocks == b
    x, q = torch.rand(1, 3, 64, 64), torch.tensor([1.3])
    with torch.no_grad():
        ref, out = small.eval()(x, q, noise=False), big.eval()(x, q, noise=False)
    torch.testing.assert_close(out["x_hat"], ref["x_hat"], rtol=0, atol=1e-6)
    image_main(_image_args(photos, tmp_path, "--steps", "5", "--decoder-only",
                           "--grow-decoder-blocks", ",".join(map(str, b)),
                           "--grow-decoder-widths", ",".join(map(str, w))))
    st2 = _ckpt(tmp_path)
    assert st2["config"]["dec_widths"] == list(w) and st2["config"]["dec_blocks"] == list(b)
    assert st2["config"]["widths"] == list(small.widths)
    before = st["model"]
    for k, v in st2["model"].items():
        if k.startswith("g_s.") or k == "q_dec":
            continue
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(st2["model"]["q_dec"], before["q_dec"])
    trained = ImageModel(ImageModelConfig.from_dict(st2["config"]))
    trained.load_state_dict(st2["model"])
    with torch.no_grad():
        out2 = trained.eval()(x, q, noise=False)
    for a, c in zip(out2["likelihoods"]["y"], ref["likelihoods"]["y"]):
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert [r["step"] for r in _log(tmp_path)][-3:] == [3, 4, 5]
    with pytest.raises(SystemExit, match="decoder-only"):  # encoder parts it cannot train
        image_main(_image_args(photos, tmp_path, "--steps", "6", "--decoder-only",
                               "--grow-latent", str(small.cfg.m * 2)))
    with pytest.raises(SystemExit, match="grow-"):  # narrower than now: refused
        image_main(_image_args(photos, tmp_path, "--steps", "6", "--grow-decoder-widths",
                               ",".join(map(str, small.widths))))


def test_image_encoder_only(photos, image_main, tmp_path):
    """--encoder-only with --grow-blocks / --grow-widths grows and trains the analysis side
    alone (g_a, h_a, q_enc): the synthesis keeps its size, and every decoder-side weight (the
    synthesis, the hyper-synthesis, the latent codec, the bottleneck with its quantiles) stays
    bit for bit, so streams of the trained encoder decode with the old decoder."""
    image_main(_image_args(photos, tmp_path, "--steps", "2"))
    before = _ckpt(tmp_path)
    cfg = before["config"]
    b = [k + 1 for k in cfg["blocks"]]
    w = [c + 4 for c in (cfg["widths"] or [cfg["n"] // 2, cfg["n"], cfg["n"]])]
    image_main(_image_args(photos, tmp_path, "--steps", "5", "--encoder-only",
                           "--grow-blocks", ",".join(map(str, b)),
                           "--grow-widths", ",".join(map(str, w))))
    st = _ckpt(tmp_path)
    assert st["config"]["blocks"] == b and st["config"]["widths"] == w
    assert st["config"]["dec_blocks"] == list(cfg["blocks"])
    assert st["config"]["dec_widths"] == [cfg["n"] // 2, cfg["n"], cfg["n"]]
    from models.image import ImageModel, ImageModelConfig

    small = ImageModel(ImageModelConfig.from_dict(cfg))
    small.load_state_dict(before["model"])
    grown = small.grown(blocks=b, widths=w, dec_blocks=small.dec_blocks,
                        dec_widths=small.dec_widths)[0].state_dict()
    changed = set()
    for k, v in st["model"].items():
        if k.startswith(("g_a.", "h_a.", "q_enc")):
            if not torch.equal(v, grown[k]):
                changed.add(k.split(".")[0])
        else:  # the decoder side: as it was
            torch.testing.assert_close(v, before["model"][k], rtol=0, atol=0, msg=k)
    assert changed == {"g_a", "h_a", "q_enc"}
    assert [r["step"] for r in _log(tmp_path)][-3:] == [3, 4, 5]
    for bad in (("--grow-latent", str(cfg["m"] * 2)), ("--grow-decoder-blocks", "2,2,2,2")):
        with pytest.raises(SystemExit, match="encoder-only"):
            image_main(_image_args(photos, tmp_path, "--steps", "6", "--encoder-only", *bad))
    with pytest.raises(SystemExit) as e:  # both sides alone: a usage error
        image_main(_image_args(photos, tmp_path, "--steps", "6", "--encoder-only",
                               "--decoder-only"))
    assert e.value.code == 2


def test_init_from_weights(photos, image_main, tmp_path):
    """--init starts a run from an exported weights file: its configuration, steps, clock and
    weights (float16 transforms as stored, video grid codes back to their exact values)."""
    from safetensors.torch import load_file

    import codec.video
    from models.video import CONFIGS as VIDEO_CONFIGS, VideoModel
    from tools.train_common import ckpt_from_weights

    image_main(_image_args(photos, tmp_path / "a", "--steps", "2"))
    weights = tmp_path / "w.safetensors"
    image_main(_image_args(photos, tmp_path / "a", "--export", str(weights)))
    out = tmp_path / "b"
    out.mkdir()
    st, stored = ckpt_from_weights(weights), load_file(str(weights))
    assert st["step"] == 2 and abs(st["elapsed"] - _ckpt(tmp_path / "a")["elapsed"]) <= 0.05
    assert st["config"] == _ckpt(tmp_path / "a")["config"] and st["opt"] is None
    assert set(st["model"]) == set(_ckpt(tmp_path / "a")["model"])
    for k, v in st["model"].items():
        assert v.dtype == torch.float32 and torch.equal(v, stored[k].float())
    with pytest.raises(SystemExit, match="not an exported weights file"):
        image_main(_image_args(photos, out, "--init", str(tmp_path / "missing.safetensors")))
    assert not (out / "last.pt").exists()
    image_main(_image_args(photos, out, "--steps", "3", "--init", str(weights)))
    assert _ckpt(out)["step"] == 3 and [r["step"] for r in _log(out)] == [3]

    video = VideoModel(VIDEO_CONFIGS["tiny"])
    codec.video.export_weights(video, tmp_path / "v.safetensors", {"steps": 7})
    st = ckpt_from_weights(tmp_path / "v.safetensors")
    loaded = codec.video.load_model(tmp_path / "v.safetensors")[0].state_dict()
    assert st["step"] == 7 and set(st["model"]) == set(loaded)
    for k, v in st["model"].items():
        assert torch.equal(v, loaded[k].float()), k


def test_warm_restart_and_decay_minute(photos, image_main, tmp_path):
    """A run started from exported weights (fresh Adam moments) warms its learning rate up
    again from that step; --decay-minute 0 decays it from the second step on."""
    image_main(_image_args(photos, tmp_path / "a", "--steps", "2"))
    weights = tmp_path / "w.safetensors"
    image_main(_image_args(photos, tmp_path / "a", "--export", str(weights)))
    image_main(_image_args(photos, tmp_path / "b", "--steps", "5", "--init", str(weights),
                           "--lr", "3e-3", "--decay", "0.5", "--decay-minute", "0"))
    lrs = [r["lr"] for r in _log(tmp_path / "b")]
    assert lrs == pytest.approx([3e-3 / 300, 3e-3 * 2 / 300 * 0.5, 3e-3 * 3 / 300 * 0.5], rel=1e-3)


def test_image_compile(photos, image_main, tmp_path):
    """--compile: the same loop through torch.compile; checkpoints keep the plain names."""
    image_main(_image_args(photos, tmp_path, "--steps", "2", "--compile"))
    assert [r["step"] for r in _log(tmp_path)] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in _log(tmp_path))
    assert not any("_orig_mod" in k for k in _ckpt(tmp_path)["model"])


def test_image_bf16(photos, image_main, tmp_path):
    image_main(_image_args(photos, tmp_path, "--steps", "2", "--bf16"))
    assert [r["step"] for r in _log(tmp_path)] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in _log(tmp_path))


def test_config_file(photos, image_main, tmp_path):
    from models.image import CONFIGS

    cfg = CONFIGS["tiny"].to_dict() | {"n_quality": 2, "lambdas": [0.01, 0.05]}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model": cfg, "train": {"batch": 1, "steps": 1, "lr": 1e-4}}))
    out = tmp_path / "run"
    args = _image_args(photos, out, "--config", str(path))
    args.remove("--batch"), args.remove("2")  # the file's batch
    image_main(args + ["--steps", "2"])  # the flag wins over the file
    st = _ckpt(out)
    assert st["step"] == 2 and st["config"] == cfg
    assert {r["batch"] for r in _log(out)} == {1}
    # resuming that run under the tiny preset keeps the checkpoint's architecture
    image_main(_image_args(photos, out, "--steps", "3"))
    st = _ckpt(out)
    assert st["step"] == 3 and st["config"] == cfg
    path.write_text(json.dumps({"train": {"no_such_option": 1}}))
    with pytest.raises(SystemExit):
        image_main(args)


# ---- video -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    """A datasets root with one synthetic 128x128 clip (moving pattern) as the training video
    (the trainer takes raw clips named *320x192*.y4m)."""
    root = tmp_path_factory.mktemp("datasets")
    raw = root / "video" / "raw"
    raw.mkdir(parents=True)
    yy, xx = np.mgrid[0:128, 0:128]
    with open(raw / "synthetic_320x192.y4m", "wb") as f:
        f.write(b"YUV4MPEG2 W128 H128 F10:1 Ip A1:1 C420jpeg\n")
        for t in range(6):
            y = (128 + 80 * np.sin((xx + 2 * t) / 6.0) * np.cos((yy + t) / 9.0)).astype(np.uint8)
            u = np.full((64, 64), 120, np.uint8) + (xx[::2, ::2] // 16).astype(np.uint8)
            v = np.full((64, 64), 130, np.uint8)
            f.write(b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes())
    return root


#: tiny: 3-frame crops of 64 px, one single-P-frame step, then cascades of 2 P frames
VIDEO_ARGS = ["--config", "tiny", "--crops", "100", "--frames", "3", "--size", "64",
              "--crop-single", "64", "--batch", "2", "--single-steps", "1", "--max-p", "2",
              "--rgb-p", "0.5", "--log-every", "1", "--eval-every", "1000000", "--device", "cpu"]


def test_video_q_min_out_of_range_is_a_usage_error(capsys):
    import tools.train_video as tv

    with pytest.raises(SystemExit) as e:
        tv.main(["--q-min", "9", "--steps", "1"])
    assert e.value.code == 2 and "--q-min must lie in [0, 3]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        tv.main(["--crops", "0", "--steps", "1"])
    assert e.value.code == 2 and "not both 0" in capsys.readouterr().err


def test_video_steps(video_root, monkeypatch):
    import tools.train_video as tv

    monkeypatch.setattr(tv, "VIDEO", video_root / "video")
    out = video_root / "run"  # the crop cache goes beside it, into the tmp datasets root
    tv.main(VIDEO_ARGS + ["--out", str(out), "--steps", "2"])
    assert _ckpt(out)["step"] == 2
    assert [r["step"] for r in _log(out)] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in _log(out))
    # grow the contextual decoder on resume: the checkpoint's weights carry over
    before = _ckpt(out)["model"]
    tv.main(VIDEO_ARGS + ["--out", str(out), "--steps", "3", "--grow-decoder-blocks", "0,1,1"])
    st = _ckpt(out)
    assert st["step"] == 3 and st["config"]["dec_blocks"] == [0, 1, 1]
    assert "ctx_dec.r1.0.b.weight" in st["model"] and set(before) < set(st["model"])
    with pytest.raises(SystemExit, match="none below"):
        tv.main(VIDEO_ARGS + ["--out", str(out), "--steps", "4", "--grow-decoder-blocks", "0,0,1"])


def test_video_photo_clips(video_root, photos, monkeypatch):
    """--photo-crops: synthetic camera motion over the photos, a second cache mixed in."""
    import tools.train_video as tv
    from tools.train_video import sample_photos, split_planes

    files = sorted(photos.glob("*.png"))
    seqs = sample_photos(files, 3, 4, 48, np.random.default_rng(1))
    assert all(a.shape == (4, 48 * 48 * 3 // 2) and a.dtype == np.uint8 for a in seqs)
    y = split_planes(np.stack(seqs), 48)[0].astype(int)
    assert np.abs(np.diff(y, axis=1)).mean() > 0  # the window moves
    with pytest.raises(SystemExit, match="no training photo"):
        sample_photos(files, 1, 4, 128, np.random.default_rng(1))
    monkeypatch.setattr(tv, "VIDEO", video_root / "video")
    monkeypatch.setattr(tv, "PHOTOS", photos)
    out = video_root / "run_photos"
    tv.main(VIDEO_ARGS + ["--out", str(out), "--steps", "1", "--photo-crops", "4"])
    assert (video_root / "cache_photos_4_3_64_q4.npz").exists()
    assert "4 synthetic clips" in _ckpt(out)["data"]


def test_video_extra_clips(video_root, monkeypatch, capsys):
    """--extra-clips: crops of a folder of one's own clips, an equal share each, a third cache."""
    import shutil

    import tools.train_video as tv

    monkeypatch.setattr(tv, "VIDEO", video_root / "video")
    mine = video_root / "mine"
    mine.mkdir()
    for name in ("a.y4m", "b.y4m"):
        shutil.copy(video_root / "video" / "raw" / "synthetic_320x192.y4m", mine / name)
    out = video_root / "run_extra"
    tv.main(VIDEO_ARGS + ["--out", str(out), "--steps", "1", "--extra-clips", str(mine),
                          "--extra-crops", "4"])
    cache, = video_root.glob("cache_extra_mine_*_4_3_64_q4.npz")
    assert np.load(cache)["seqs"].shape == (4, 3, 64 * 64 * 3 // 2)
    assert "4 crops of the clips in mine/: a.y4m, b.y4m" in _ckpt(out)["data"]
    # bad input: a usage error (exit 2) or one clear message, and no cache written
    (video_root / "none").mkdir()
    (video_root / "junk").mkdir()
    (video_root / "junk" / "notes.mp4").write_text("not a video")
    for folder, n, msg in (("none", "4", "no files there"), ("missing", "4", "not a folder"),
                           ("mine", "0", "--extra-crops must be 1 or more")):
        with pytest.raises(SystemExit) as e:
            tv.main(VIDEO_ARGS + ["--out", str(video_root / "run_extra2"), "--steps", "1",
                                  "--extra-clips", str(video_root / folder), "--extra-crops", n])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    with pytest.raises(SystemExit, match="notes.mp4 is not a readable video"):
        tv.main(VIDEO_ARGS + ["--out", str(video_root / "run_extra3"), "--steps", "1",
                              "--extra-clips", str(video_root / "junk"), "--extra-crops", "2"])
    assert not list(video_root.glob("cache_extra_junk_*"))


# one torchrun for both trainers (the start of three interpreters costs more than the runs),
# in one process group (a second one in the same processes is not reliable with gloo)
DDP_DRIVER = """
import json, os, sys
import torch.distributed as dist
from tools import train_image, train_video
runs = json.loads(sys.argv[1])
dist.init_process_group("gloo")
for name, main in (("image", train_image.main), ("video", train_video.main)):
    os.environ["NCODEC_TRAIN_DUMP"] = runs[name]["dump"]
    main(runs[name]["args"])
dist.destroy_process_group()
"""


def _same_on_ranks(dump: Path, out: Path) -> None:
    r0, r1 = (torch.load(dump / f"rank{r}.pt") for r in (0, 1))
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "the ranks' parameters differ"
    st = _ckpt(out)
    assert all(torch.equal(st["model"][k], r0[k]) for k in r0)


def test_ddp_two_processes(photos, cache_home, video_root, tmp_path):
    """torchrun, 2 processes, gloo: image (3 steps) then video (2 steps): rank 0 alone logs
    and checkpoints, and the ranks end with identical parameters."""
    img, vid = tmp_path / "image", video_root / "ddp"  # the video crop cache goes beside it
    runs = {"image": {"args": _image_args(photos, img, "--steps", "3"), "dump": str(tmp_path / "d_img")},
            "video": {"args": VIDEO_ARGS + ["--out", str(vid), "--steps", "2"],
                      "dump": str(tmp_path / "d_vid")}}
    for r in runs.values():
        Path(r["dump"]).mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(cache_home),
           "NCODEC_DATASETS": str(video_root)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", "2", "--no-python", sys.executable, "-c", DDP_DRIVER,
                        json.dumps(runs)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [r["step"] for r in _log(img)] == [1, 2, 3]
    assert sorted(p.name for p in img.iterdir()) == ["last.pt", "log.jsonl"]
    assert _ckpt(img)["step"] == 3
    _same_on_ranks(tmp_path / "d_img", img)
    assert [r["step"] for r in _log(vid)] == [1, 2]
    _same_on_ranks(tmp_path / "d_vid", vid)


def test_cli_train_forwards(monkeypatch):
    import tools.cli
    import tools.train_video

    seen = []
    monkeypatch.setattr(tools.train_video, "main", seen.append)
    assert tools.cli.main(["train", "video", "--steps", "1", "--config", "tiny"]) == 0
    assert seen == [["--steps", "1", "--config", "tiny"]]


def _ffv1_clip(path: Path, frames: int = 4, size: int = 64) -> list[np.ndarray]:
    """A lossless (FFV1) clip of a moving pattern; returns its Y planes."""
    import av

    yy, xx = np.mgrid[0:size, 0:size]
    ys = []
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for t in range(frames):
            y = (128 + 60 * np.sin((xx + 3 * t) / 5.0)).astype(np.uint8)
            uv = np.full((size // 2, size // 2), 128, np.uint8)
            planes = np.concatenate([y, uv.reshape(-1, size), uv.reshape(-1, size)])
            f = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            c.mux(s.encode(f))
            ys.append(y)
        c.mux(s.encode())
    return ys


def test_clip_frames_without_pyav(monkeypatch, tmp_path):
    """Where PyAV is missing (a lent GPU machine), the trainer reads clips with OpenCV: the
    same frames, their planes within a level or two (a BGR round trip); without OpenCV either,
    one clear message. y4m never needs either."""
    import tools.train_video as tv

    clip = tmp_path / "c.mkv"
    ys = _ffv1_clip(clip)
    assert [np.array_equal(f[0], y) for f, y in zip(tv.clip_frames(clip), ys)] == [True] * 4
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails
    try:
        import cv2  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "cv2", None)
        with pytest.raises(SystemExit, match="needs PyAV or OpenCV"):
            list(tv.clip_frames(clip))
    else:
        got = list(tv.clip_frames(clip))
        assert len(got) == 4 and [p.shape for p in got[0]] == [(64, 64), (32, 32), (32, 32)]
        assert max(np.abs(f[0].astype(int) - y).mean() for f, y in zip(got, ys)) < 2.5
