"""``ncodec encode`` / ``decode`` with video, batches of files, pipes and error messages.

The video round trips run in-process with a tiny randomly initialised video model (the CLI
plumbing does not depend on the trained weights; the codec's own tests cover those)."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.video_io import open_video, open_writer
from tools.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], input=stdin,
                          capture_output=True, cwd=ROOT)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch = pytest.importorskip("torch")
    try:
        from codec import video
        from models.video import CONFIGS, VideoModel
    except ImportError as e:
        pytest.skip(f"no video codec: {e}")
    if "tiny" not in CONFIGS:
        pytest.skip("models.video has no 'tiny' configuration")
    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    video.export_weights(VideoModel("tiny"), d / f"{video.DEFAULT_MODEL}.safetensors")
    return d


@pytest.fixture
def tiny_video(tiny_weights, monkeypatch):
    """codec.video with the tiny weights as its shipped model, on one torch thread (small
    multi-threaded convolutions crawl on a busy 2-core machine)."""
    import torch

    from codec import video

    monkeypatch.setattr(video, "WEIGHTS_DIR", tiny_weights)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield video
    torch.set_num_threads(threads)


@pytest.fixture
def stdio(monkeypatch):
    """``stdio(data)`` makes ``data`` the process's stdin and returns the buffer that
    collects its stdout (binary, through ``sys.stdin.buffer`` / ``sys.stdout.buffer``)."""

    def replace(data: bytes) -> io.BytesIO:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
        buf = io.BytesIO()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf))
        return buf

    return replace


def _clip(path, n=3, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    with open_writer(path, w, h, 25) as sink:
        for t in range(n):
            y = ((xx * 4 + yy * 2 + t * 3) % 256).astype(np.uint8)
            c = rng.integers(100, 140, ((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
            frames.append((y, c, c.copy()))
            sink.write(frames[-1])
    return frames


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_video_round_trip_equals_decoder(tmp_path, tiny_video, capsys):
    src = tmp_path / "clip.y4m"
    _clip(src)
    ncz = tmp_path / "clip.ncz"
    assert main(["encode", str(src), "-o", str(ncz), "-q", "1.0", "--intra-period", "2",
                 "--no-adaptive-intra", "--no-skip", "--refresh", "0", "--quiet"]) == 0
    ref = list(tiny_video.VideoDecoder(ncz.read_bytes()))
    assert len(ref) == 3
    assert main(["info", str(ncz), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["kind"], info["units"], info["key_units"], info["frame_rate"]) == \
        ("video", 3, 2, [25, 1])
    assert info["params"]["intra_period"] == 2 and info["params"]["refresh_period"] == 0
    assert main(["decode", str(ncz), "--quiet"]) == 1  # default: clip.y4m exists -> refused
    assert "already exists" in capsys.readouterr().err
    for out in ("out.y4m", "out.mkv", "frames"):
        assert main(["decode", str(ncz), "-o", str(tmp_path / out), "--quiet"]) == 0
    with open_video(tmp_path / "out.y4m") as s:
        assert s.fps == 25 and all(_same(a, b) for a, b in zip(s, ref))
    with open_video(tmp_path / "out.mkv") as s:
        assert all(_same(a, b) for a, b in zip(s, ref))
    assert sorted(os.listdir(tmp_path / "frames")) == ["000000.png", "000001.png", "000002.png"]


def test_raw_yuv_frames_limit_and_rgb(tmp_path, tiny_video, capsys):
    frames = _clip(tmp_path / "c.y4m", n=3)
    raw = tmp_path / "c.yuv"
    raw.write_bytes(b"".join(p.tobytes() for f in frames for p in f))
    ncz = tmp_path / "c.ncz"
    assert main(["encode", str(raw), "--size", "48x32", "--fps", "30000/1001", "--frames", "2",
                 "-o", str(ncz), "--rgb", "--quiet"]) == 0
    assert main(["info", str(ncz), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["units"], info["color_format"], info["frame_rate"]) == (2, "rgb",
                                                                       [30000, 1001])
    assert main(["decode", str(ncz), "--quiet"]) == 0  # RGB streams default to .mkv (FFV1)
    with open_video(tmp_path / "c.mkv") as s:
        got = list(s.frames("rgb"))
    ref = list(tiny_video.VideoDecoder(ncz.read_bytes()))
    assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, ref))


def test_odd_size_video(tmp_path, tiny_video):
    src = tmp_path / "odd.y4m"
    _clip(src, n=2, h=31, w=47)
    ncz = tmp_path / "odd.ncz"
    assert main(["encode", str(src), "-o", str(ncz), "--quiet"]) == 0
    assert main(["decode", str(ncz), "-o", str(tmp_path / "back.y4m"), "--quiet"]) == 0
    with open_video(tmp_path / "back.y4m") as s:
        assert (s.width, s.height) == (47, 31)
        assert all(_same(a, b) for a, b in zip(s, tiny_video.VideoDecoder(ncz.read_bytes())))


def test_video_effort_round_trip(tmp_path, tiny_video):
    src = tmp_path / "c.y4m"
    _clip(src, n=3)
    ncz = tmp_path / "c.ncz"
    assert main(["encode", str(src), "-o", str(ncz), "--effort", "1", "--no-adaptive-intra",
                 "--no-skip", "--no-copy", "--quiet"]) == 0
    assert main(["decode", str(ncz), "-o", str(tmp_path / "back.y4m"), "--quiet"]) == 0
    with open_video(tmp_path / "back.y4m") as s:
        assert all(_same(a, b) for a, b in zip(s, tiny_video.VideoDecoder(ncz.read_bytes())))
    plain = tmp_path / "plain.ncz"
    assert main(["encode", str(src), "-o", str(plain), "--no-adaptive-intra", "--no-skip",
                 "--no-copy", "--quiet"]) == 0
    assert plain.read_bytes() != ncz.read_bytes()  # the P frames were refined


def test_video_errors_one_line(tmp_path, tiny_video, capsys):
    src = tmp_path / "e.y4m"
    _clip(src, n=2)
    ncz = tmp_path / "e.ncz"
    assert main(["encode", str(src), "-o", str(ncz), "--quiet"]) == 0
    capsys.readouterr()
    trunc = tmp_path / "t.ncz"
    trunc.write_bytes(ncz.read_bytes()[:-40])
    cases = [
        (["encode", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "m.ncz")], "no such file"),
        (["encode", str(src), "--size", "48by32", "-o", str(tmp_path / "s.ncz")], "bad size"),
        (["encode", str(src), "--size", "50x32", "-o", str(tmp_path / "s.ncz")],
         "not a whole number"),
        (["encode", str(src), "--bpp", "0.1", "-o", str(tmp_path / "s.ncz")], "not supported"),
        (["decode", str(trunc), "-o", str(tmp_path / "t.y4m")], "truncated"),
        (["decode", str(ncz), "-o", str(tmp_path / "t.gif")], "cannot write video as .gif"),
    ]
    for argv, msg in cases:
        assert main(argv + ["--quiet"]) == 1, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and err.startswith("ncodec: error: "), err
    assert sorted(os.listdir(tmp_path)) == ["e.ncz", "e.y4m", "t.ncz"]


def test_cli_errors_subprocess(tmp_path, capsys):
    """Exit status and stderr as a user sees them (no torch import on these paths)."""
    r = run("encode", str(tmp_path / "nope.y4m"), "-o", str(tmp_path / "x.ncz"))
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1 and b"no such file" in r.stderr
    r = run("encode", "-", "--size", "12", "-o", str(tmp_path / "x.ncz"), stdin=b"")
    assert r.returncode == 1 and b"bad size" in r.stderr and b"Traceback" not in r.stderr
    assert main(["encode", str(tmp_path), str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def _png(path, seed):
    x = np.linspace(0, 255, 24 * 32).reshape(24, 32).astype(np.uint8)
    Image.fromarray(np.stack([x, np.roll(x, seed * 3, 1), x[::-1]], -1)).save(path)


def test_batch_folder_with_two_workers(tmp_path, capfd):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    _png(d / "a.png", 1)
    _png(d / "sub" / "b.png", 2)
    (d / "notes.txt").write_text("skipped")
    out = tmp_path / "out"
    assert main(["encode", str(d), "-o", str(out), "-j", "2", "-q", "2"]) == 0
    assert capfd.readouterr().err == ""  # no bar off a terminal, no library warnings
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.ncz")) == ["a.ncz", "sub/b.ncz"]
    # files as inputs (-j 1): an existing output is one error line, the rest is still coded
    assert main(["encode", str(d / "a.png"), str(d / "sub" / "b.png"), "-o", str(out)]) == 1
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "a.ncz: already exists" in err
    assert (out / "b.ncz").exists()
    assert main(["decode", str(out), "-o", str(tmp_path / "dec"), "--quiet"]) == 0
    assert sorted(str(p.relative_to(tmp_path / "dec")) for p in (tmp_path / "dec").rglob("*")
                  if p.is_file()) == ["a.png", "b.png", "sub/b.png"]


def test_failed_batch_leaves_no_new_folders(tmp_path, capfd):
    """Every file of a batch failing leaves no empty output folders behind (folders that
    existed before stay)."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "bad.png").write_bytes(b"not a png")
    (tmp_path / "out").mkdir()
    assert main(["encode", str(d), "-o", str(tmp_path / "out" / "new"), "--quiet"]) == 1
    assert "bad.png" in capfd.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["in", "out"] and not os.listdir(tmp_path / "out")


def test_image_pipe_stdin_stdout(tmp_path, stdio, capfd):
    """``ncodec encode - -o - < in.png | ncodec decode - -o out.png`` (in-process: stdin
    and stdout replaced by byte streams) and ``info -``."""
    src = tmp_path / "p.png"
    _png(src, 0)

    out = stdio(src.read_bytes())
    assert main(["encode", "-", "-o", "-", "-q", "1"]) == 0
    ncz = out.getvalue()
    assert ncz.startswith(b"\x89NCZ")
    stdio(ncz)
    assert main(["decode", "-", "-o", str(tmp_path / "back.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "back.png")).shape == (24, 32, 3)
    out = stdio(ncz)
    assert main(["info", "-", "--json"]) == 0
    sys.stdout.flush()
    assert json.loads(out.getvalue())["kind"] == "image"
    assert capfd.readouterr().err == ""


def test_video_pipe_y4m_stdin_stdout(tmp_path, tiny_video, stdio):
    """``ncodec encode - -o - < clip.y4m | ncodec decode - -o - > out.y4m`` (in-process)."""
    src = tmp_path / "v.y4m"
    _clip(src, n=2)

    out = stdio(src.read_bytes())
    assert main(["encode", "-", "-o", "-", "--quiet"]) == 0
    ncz = out.getvalue()
    ref = list(tiny_video.VideoDecoder(ncz))
    out = stdio(ncz)
    assert main(["decode", "-", "-o", "-", "--quiet"]) == 0
    with open_video(io.BufferedReader(io.BytesIO(out.getvalue()))) as s:
        got = list(s)
    assert len(got) == 2 and all(_same(a, b) for a, b in zip(got, ref))


def test_video_eval_tool(tmp_path, tiny_video):
    """``python -m tools.video_eval propagation|speed`` on a tiny clip: JSON + PNG written,
    the decoder agrees with the encoder in both runs."""
    from tools.video_eval import main as video_eval

    src = tmp_path / "p.y4m"
    _clip(src, n=3)
    out = tmp_path / "res"
    assert video_eval(["propagation", str(src), "--frames", "3", "--refresh", "1", "--verify",
                       "-o", str(out)]) == 0
    res = json.loads((out / "ncodec_propagation.json").read_text())
    assert [r["refresh_period"] for r in res["runs"].values()] == [1, 0]
    assert all(r["decoder_matches_encoder"] and len(r["psnr_yuv"]) == 3
               for r in res["runs"].values())
    assert (out / "ncodec_propagation.png").read_bytes()[:4] == b"\x89PNG"
    assert video_eval(["speed", str(src), "--frames", "2", "--repeats", "1", "-o", str(out)]) == 0
    speed = json.loads((out / "ncodec_speed.json").read_text())
    assert speed["frames"] == 2 and speed["encode_fps"] > 0 and speed["decode_fps"] > 0


def test_full_range_flag_carried_through(tmp_path, tiny_video, capsys):
    src = tmp_path / "full.y4m"
    y = np.full((32, 48), 250, np.uint8)
    c = np.full((16, 24), 128, np.uint8)
    with open_writer(src, 48, 32, 25, full_range=True) as sink:
        sink.write((y, c, c.copy()))
    ncz = tmp_path / "full.ncz"
    assert main(["encode", str(src), "-o", str(ncz), "--quiet"]) == 0
    assert main(["info", str(ncz), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"].get("full_range") is True
    assert main(["decode", str(ncz), "-o", str(tmp_path / "out.y4m"), "--quiet"]) == 0
    with open_video(tmp_path / "out.y4m") as s:
        assert s.full_range
