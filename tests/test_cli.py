"""The ``ncodec`` command line: exit codes, messages, atomic and safe output."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitstream import Header, StreamKind, UnitType, pack
from codec.errors import CodecError
from codec.io import read_image, write_atomic
from tools.cli import main


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], input=stdin,
                          capture_output=True, cwd=Path(__file__).resolve().parents[1])


@pytest.fixture
def ncz(tmp_path):
    p = tmp_path / "a.ncz"
    p.write_bytes(pack(Header(StreamKind.VIDEO, 64, 48, frame_count=2, fps_num=25),
                       [(UnitType.KEY, 0, b"x" * 100), (UnitType.INTER, 0, b"y" * 50)]))
    return p


def test_version_and_usage():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"ncodec ")
    assert run().returncode == 2
    assert run("encode").returncode == 2
    assert run("encode", "x.png", "-q", "1", "--bpp", "1").returncode == 2


def test_info_text_and_json(ncz):
    r = run("info", str(ncz), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "video" and info["units"] == 2 and info["key_units"] == 1
    assert info["bytes"] == ncz.stat().st_size
    assert info["bpp"] == pytest.approx(ncz.stat().st_size * 8 / (64 * 48 * 2))
    r = run("info", "-", stdin=ncz.read_bytes())
    assert r.returncode == 0 and b"frame_rate" in r.stdout


@pytest.mark.parametrize("content,msg", [
    (None, b"no such file"), (b"", b"bad signature"), (b"\x89NCZ\r\n\x1a\n\x01\x00", b"truncated"),
    (b"hello world, not a codec file", b"bad signature")])
def test_bad_inputs_one_line_exit_1(tmp_path, content, msg):
    p = tmp_path / "in.ncz"
    if content is not None:
        p.write_bytes(content)
    for args in (("info", str(p)), ("decode", str(p), "-o", str(tmp_path / "out.png"))):
        r = run(*args)
        assert r.returncode == 1
        assert msg in r.stderr and r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
        assert str(p).encode() in r.stderr  # the message names the file
    assert not (tmp_path / "out.png").exists()


def test_encode_rejects_non_images(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"not a png at all")
    r = run("encode", str(p), "-o", str(tmp_path / "x.ncz"))
    assert r.returncode == 1 and b"cannot read the image" in r.stderr
    assert str(p).encode() in r.stderr and b"BytesIO" not in r.stderr
    assert not (tmp_path / "x.ncz").exists()
    r = run("encode", str(tmp_path / "none.png"), "-o", str(tmp_path / "x.ncz"))
    assert r.returncode == 1 and r.stderr.count(b"none.png") == 1  # named once


def test_encode_rejects_quality_out_of_range(tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(p)
    r = run("encode", str(p), "-o", str(tmp_path / "x.ncz"), "-q", "90")  # not JPEG's 0..100
    assert r.returncode == 1 and b"out of ncodec's range -3..7" in r.stderr
    assert r.stderr.count(b"\n") == 1 and not (tmp_path / "x.ncz").exists()
    for target in ("nan", "-1", "0"):
        r = run("encode", str(p), "-o", str(tmp_path / "x.ncz"), "--psnr", target)
        assert r.returncode == 1 and b"PSNR target must be" in r.stderr
    assert run("encode", str(p), "-j", "-3").returncode == 2  # argparse: usage error


def test_encode_refuses_to_overwrite_its_input(tmp_path):
    p = tmp_path / "x.ncz"
    Image.new("RGB", (8, 8)).save(p, format="PNG")
    r = run("encode", str(p), "-o", str(p), "--force")
    assert r.returncode == 1 and b"overwrite the input" in r.stderr


def test_write_atomic_refuses_existing_and_leaves_no_temp(tmp_path):
    p = tmp_path / "out.bin"
    write_atomic(p, b"first")
    with pytest.raises(CodecError, match="already exists"):
        write_atomic(p, b"second")
    assert p.read_bytes() == b"first"
    write_atomic(p, b"second", force=True)
    assert p.read_bytes() == b"second"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.bin"]
    with pytest.raises(CodecError, match="no such directory"):
        write_atomic(tmp_path / "missing" / "f", b"")
    with pytest.raises(CodecError, match="is a directory"):  # not "use --force"
        write_atomic(tmp_path, b"")


def test_main_returns_exit_codes(ncz, capsys):
    assert main(["info", str(ncz)]) == 0
    assert "video" in capsys.readouterr().out
    assert main(["info", str(ncz) + ".missing"]) == 1


@pytest.mark.parametrize("mode,shape,dtype", [
    ("L", (5, 7, 1), np.uint8), ("RGB", (5, 7, 3), np.uint8), ("RGBA", (5, 7, 4), np.uint8),
    ("P", (5, 7, 3), np.uint8), ("1", (5, 7, 1), np.uint8), ("I;16", (5, 7, 1), np.uint16),
    ("CMYK", (5, 7, 3), np.uint8)])
def test_read_image_modes(tmp_path, mode, shape, dtype):
    p = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.new(mode, (7, 5)).save(p)
    a = read_image(p)
    assert a.shape == shape and a.dtype == dtype


def test_read_image_orientation_and_bad_modes(tmp_path):
    im = Image.new("RGB", (7, 5))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    p = tmp_path / "r.jpg"
    im.save(p, exif=exif)
    assert read_image(p).shape == (7, 5, 3)
    p = tmp_path / "f.tif"
    Image.new("F", (4, 4)).save(p)
    with pytest.raises(CodecError, match="unsupported image mode"):
        read_image(p)


def test_write_atomic_uses_umask_permissions(tmp_path):
    import os

    p = tmp_path / "perm.bin"
    write_atomic(p, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask
