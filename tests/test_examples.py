"""Every script in ``examples/`` runs, as a user would run it, on small inputs.

The Python examples run in this process (``runpy`` + their ``main(argv)``: torch and the
models load once for all of them); the shell example runs through ``bash``. A new example
without a test here fails :func:`test_every_example_is_exercised`."""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TESTED = {"pillow_roundtrip.py", "numpy_roundtrip.py", "torch_dataloader.py",
          "transcode_video.py", "shell_pipe.sh"}


def run_example(name, *argv):
    return runpy.run_path(str(EXAMPLES / name))["main"](list(argv))


def test_every_example_is_exercised():
    found = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")}
    assert found == TESTED


def test_pillow_roundtrip(tmp_path, capsys):
    run_example("pillow_roundtrip.py", "--out", str(tmp_path))
    out = capsys.readouterr().out
    assert "NCZ (64, 64) RGB" in out and "exact" in out
    assert Image.open(tmp_path / "decoded.png").size == (64, 64)


def test_numpy_roundtrip(capsys):
    run_example("numpy_roundtrip.py")
    out = capsys.readouterr().out
    assert "as torch: (1, 3, 64, 64) torch.float32" in out and "lossless" in out


def test_torch_dataloader(capsys):
    run_example("torch_dataloader.py", "--batch-size", "2")
    out = capsys.readouterr().out
    assert out.count("batch (2, 3, 64, 64) torch.float32") == 2 and "inf" in out


def test_shell_pipe(tmp_path):
    png = tmp_path / "in.png"
    photo = astronaut()[90:122, 180:212]
    Image.fromarray(photo).save(png)
    env = dict(os.environ, NCODEC=f"{sys.executable} -m tools.cli")
    r = subprocess.run(["bash", str(EXAMPLES / "shell_pipe.sh"), str(png), str(tmp_path / "out.png")],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "lossless" in r.stdout  # `ncodec info` of the piped stream
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), photo)


def _video_ready():
    try:
        import codec.video as video
    except ImportError:
        return "codec.video is not in this build yet"
    if not (video.WEIGHTS_DIR / f"{video.DEFAULT_MODEL}.safetensors").exists():
        return "no shipped video model weights"
    ns = runpy.run_path(str(EXAMPLES / "transcode_video.py"))
    if not Path(ns["CLIP"]).exists():
        return "../shared/datasets (the carphone clip) is absent"
    return None


def test_transcode_video(tmp_path, capsys):
    why = _video_ready()
    if why:
        pytest.skip(why)
    assert run_example("transcode_video.py", "--frames", "3", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "3 frames" in out and "bpp" in out
    import av

    with av.open(str(tmp_path / "decoded.mkv")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
