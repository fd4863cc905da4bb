"""tools.evaluate / tools.bench: the eval harness end to end on tiny inputs, the result
cache, the adapter plug-in interface, and the Kodak anchors (when ../shared is present)."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.metrics import bpp
from tools.cli import main
from tools.eval_codecs import ImageAdapter, get_codec
from tools.evaluate import ResultCache, evaluate

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "kodak_anchors.json"


def _images(folder: Path) -> Path:
    folder.mkdir()
    y, x = np.mgrid[0:170, 0:180]
    rgb = np.stack([(x * 1.3) % 256, (y * 1.7) % 256, ((x + y) * 0.9) % 256], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(folder / "a.png")
    Image.fromarray(((x * y) % 251).astype(np.uint8)).save(folder / "b.jpg", quality=95)  # grey
    return folder


def _y4m(path: Path, frames=5, w=64, h=48) -> Path:
    t, yy, xx = np.mgrid[0:frames, 0:h, 0:w]
    luma = (100 + 50 * np.sin((xx + 3 * t) / 5.0) + yy).astype(np.uint8)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            chroma = (120 + (xx[i, ::2, ::2] + 2 * yy[i, ::2, ::2] + i) % 17).astype(np.uint8)
            f.write(b"FRAME\n" + luma[i].tobytes() + chroma.tobytes() + (255 - chroma).tobytes())
    return path


def test_eval_image_folder_outputs(tmp_path, capsys):
    src = _images(tmp_path / "imgs")
    out = tmp_path / "out"
    rc = main(["eval", str(src), "-o", str(out), "-q", "-c", "jpeg420,webp,png",
               "--settings", "jpeg420=10,40,90", "--settings", "webp=10,50,90",
               "--bd-range", "0", "100"])
    assert rc == 0
    for name in ("jpeg420.json", "webp.json", "png.json", "per_image.csv", "bd_rate.json",
                 "table.md", "rd.png", "meta.json"):
        assert (out / name).exists(), name
    doc = json.loads((out / "webp.json").read_text())
    assert doc["name"] == "webp" and doc["description"]
    res = doc["results"]
    for key in ("psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"):
        assert len(res[key]) == 3
    assert res["bpp"] == sorted(res["bpp"]) and res["psnr-rgb"] == sorted(res["psnr-rgb"])
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 2 * (3 + 3 + 1)
    for r in rows:  # bpp is the real size through the one bpp function
        assert float(r["bpp"]) == pytest.approx(bpp(int(r["bytes"]), 170 * 180), rel=1e-5)
    png = [r for r in rows if r["codec"] == "png"]
    assert all(r["exact"] == "True" for r in png)
    bd = json.loads((out / "bd_rate.json").read_text())["bd_rate"]
    assert bd["jpeg420"]["psnr_rgb_pchip"] == 0.0 and bd["webp"]["psnr_rgb_pchip"] < 0
    assert "png" not in bd
    table = (out / "table.md").read_text()
    assert "| webp |" in table and "| png |" in table
    assert Image.open(out / "rd.png").size[0] > 100
    assert "| webp |" in capsys.readouterr().out
    # several references (from the cache): BD-rates against each, the first as before
    assert main(["eval", str(src), "-o", str(out), "-q", "-c", "jpeg420,webp,png",
                 "--settings", "jpeg420=10,40,90", "--settings", "webp=10,50,90",
                 "--bd-range", "0", "100", "--reference", "webp,jpeg420"]) == 0
    doc = json.loads((out / "bd_rate.json").read_text())
    assert doc["reference"] == "webp" and doc["bd_rate"]["webp"]["psnr_rgb_pchip"] == 0.0
    vs = doc["bd_rate_vs"]
    assert vs["jpeg420"]["webp"]["psnr_rgb_pchip"] == pytest.approx(
        bd["webp"]["psnr_rgb_pchip"]) and vs["webp"] == doc["bd_rate"]
    assert "| BD-rate PSNR / MS-SSIM vs | webp | jpeg420 |" in (out / "table.md").read_text()
    assert main(["eval", str(src), "-o", str(out), "-q", "-c", "webp",
                 "--reference", "webp,avif"]) == 1  # a reference that is not evaluated
    assert main(["eval", str(src), "-o", str(out), "-q", "-c", "png",
                 "--reference", "png,png"]) == 0  # lossless references only: no BD-rates
    assert json.loads((out / "bd_rate.json").read_text())["bd_rate_vs"] == {}


class Counting(ImageAdapter):
    """A codec plugged in with a few lines: 'encodes' by quantizing, PNG as the file."""

    name, description, settings = "quant", "uniform quantizer + PNG", (8, 32)

    def __init__(self):
        self.calls = 0
        self.png = get_codec("png")

    def encode(self, img, setting):
        self.calls += 1
        return self.png.encode((img // setting) * setting, None)

    def decode(self, data):
        return self.png.decode(data)


def test_custom_adapter_and_cache_resume(tmp_path):
    files = sorted(_images(tmp_path / "imgs").iterdir())
    cache = ResultCache(tmp_path / "cache")
    a = Counting()
    first = evaluate("image", files, [a], cache=cache, progress=False, with_msssim=False)
    assert a.calls == 4 and len(first) == 4  # order: codec, setting, input
    assert [(r["setting"], r["item"]) for r in first] == [(8, "a.png"), (8, "b.jpg"),
                                                          (32, "a.png"), (32, "b.jpg")]
    assert first[0]["psnr_rgb"] > first[2]["psnr_rgb"]
    b = Counting()
    again = evaluate("image", files, [b], cache=cache, progress=False, with_msssim=False)
    assert b.calls == 0  # all from the cache
    assert [r["bytes"] for r in again] == [r["bytes"] for r in first]
    b.settings = (8, 16)  # only the new setting is measured
    evaluate("image", files, [b], cache=cache, progress=False, with_msssim=False)
    assert b.calls == 2


def test_eval_video_clip(tmp_path):
    clip = _y4m(tmp_path / "clip.y4m")
    out = tmp_path / "vout"
    rc = main(["eval", str(clip), "-o", str(out), "-q", "-c", "x264,x265",
               "--settings", "x264=23,35", "--settings", "x265=25,37",
               "--reference", "x264,x265"])
    assert rc == 0
    res = json.loads((out / "x264.json").read_text())["results"]
    for key in ("psnr-y", "psnr-u", "psnr-v", "psnr-yuv", "psnr-rgb", "bpp"):
        assert len(res[key]) == 2
    assert res["psnr-yuv"][0] > res["psnr-yuv"][1]
    assert res["ms-ssim-rgb"] == [None, None]  # 64x48 is below MS-SSIM's minimum size
    rows = list(csv.DictReader((out / "per_clip.csv").open()))
    r = rows[0]
    assert float(r["bpp"]) == pytest.approx(bpp(int(r["bytes"]), 64 * 48 * 5), rel=1e-5)
    w = (6 * float(r["psnr_y"]) + float(r["psnr_u"]) + float(r["psnr_v"])) / 8
    assert float(r["psnr_yuv"]) == pytest.approx(w, rel=1e-3)  # mean of per-frame weighted
    assert "| BD-rate YUV-PSNR (mean over clips) vs | x264 | x265 |" in (out / "table.md").read_text()
    bd = json.loads((out / "bd_rate.json").read_text())["bd_rate"]
    assert math.isfinite(bd["x265"]["psnr_yuv_pchip"]["clip.y4m"])


def test_video_table_shows_slow_frame_rates():
    from tools.evaluate import video_table

    rec = lambda fps: {"bpp": 0.1, "psnr_yuv": 30.0, "psnr_rgb": 29.0, "enc_fps": fps}  # noqa: E731
    summary = {"slow": {"items": {"c.y4m": [rec(0.263), rec(0.31)]}},
               "fast": {"items": {"c.y4m": [rec(22.4), rec(73.0)]}}}
    table = video_table(summary, {}, "fast", "pchip")
    assert "| 0.26-0.31 |" in table and "| 22-73 |" in table


def test_eval_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing"), "-q"]) == 1
    assert "no such file" in capsys.readouterr().err
    src = _images(tmp_path / "imgs")
    assert main(["eval", str(src), "-q", "-c", "x264", "-o", str(tmp_path / "o")]) == 1
    assert main(["eval", str(src), "-q", "-c", "nonesuch", "-o", str(tmp_path / "o")]) == 1


def test_bench_json(tmp_path):
    src = _images(tmp_path / "imgs")
    out = tmp_path / "bench.json"
    assert main(["bench", str(src / "a.png"), "-c", "jpeg420,png", "--settings", "jpeg420=50,80",
                 "--repeats", "1", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [(r["codec"], r["setting"]) for r in doc["results"]] == [
        ("jpeg420", 50), ("jpeg420", 80), ("png", None)]
    r = doc["results"][0]
    assert r["bpp"] == pytest.approx(bpp(r["bytes"], 170 * 180))
    assert r["encode_s"] > 0 and r["encode_peak_traced_mb"] >= 0


@pytest.mark.skipif(not (DATA / "kodak").exists() or not ANCHORS.exists(),
                    reason="../shared/datasets/kodak or anchors not present")
@pytest.mark.parametrize("codec,param", [("jpeg420", 50), ("jpeg444", 20), ("webp", 40)])
def test_reproduces_kodak_anchors_on_two_images(codec, param):
    anchors = json.loads(ANCHORS.read_text())
    names = anchors["meta"]["images"]
    point = next(p for p in anchors["lossy"][codec]["points"] if p["param"] == param)
    a = get_codec(codec)
    a.settings = (param,)
    files = [DATA / "kodak" / n for n in names[:2]]
    recs = evaluate("image", files, [a], progress=False, with_msssim=False)
    for i, r in enumerate(recs):
        assert r["bpp"] == pytest.approx(point["per_image"]["bpp"][i], rel=0.01)
        assert r["psnr_rgb"] == pytest.approx(point["per_image"]["psnr"][i], abs=0.05)


def test_anchor_check_reports_deltas(tmp_path):
    from tools.eval_anchors import check_images

    (tmp_path / "per_image.csv").write_text(
        "codec,setting,item,bpp,psnr_rgb,ms_ssim_rgb,exact\n"
        "jpeg420,50,a.png,1.01,30.02,0.91,False\n"
        "jpeg420,50,b.png,0.99,30.00,0.90,False\n"
        "png,None,a.png,12.0,,,True\n"
        "png,None,b.png,14.0,,,True\n")
    anchors = {"meta": {"images": ["a.png", "b.png"]},
               "lossy": {"jpeg420": {"points": [{"param": 50, "bpp": 0.99, "psnr": 30.0,
                                                 "msssim": 0.905}]}},
               "lossless": {"png": {"bpp": 13.0}}}
    rows = {r["codec"]: r for r in check_images(tmp_path, anchors)}
    assert rows["jpeg420"]["bpp_diff_pct"] == pytest.approx(100 / 99)
    assert rows["jpeg420"]["psnr_diff_db"] == pytest.approx(0.01)
    assert rows["jpeg420"]["msssim_diff"] == pytest.approx(0.0)
    assert rows["png"]["bpp_diff_pct"] == pytest.approx(0.0) and rows["png"]["exact"]


def test_promote_only_when_better(tmp_path):
    """image_eval --promote: a candidate replaces the shipped weights only when it beats their
    PSNR BD-rates against WebP and JPEG XL; the old entry moves into history."""
    from tools.image_eval import promote

    shipped, cand = tmp_path / "ship" / "m.safetensors", tmp_path / "cand" / "m.safetensors"
    for p, steps, blob in ((shipped, 10, b"old"), (cand, 20, b"new")):
        p.parent.mkdir()
        p.write_bytes(blob)
        p.with_suffix(".json").write_text(json.dumps({"steps": steps, "history": [{"steps": 5}]}))
    old = json.loads(shipped.with_suffix(".json").read_text())
    old["kodak"] = {"bd_rate_psnr_vs": {"webp": 10.0, "jxl": 2.0, "avif": 40.0}}
    shipped.with_suffix(".json").write_text(json.dumps(old))

    def bd(webp, jxl):
        return {"webp": {"psnr_pchip": webp}, "jxl": {"psnr_pchip": jxl}}

    with pytest.raises(SystemExit, match="not the shipped file"):
        promote(shipped, shipped, bd(0.0, 0.0))
    assert not promote(cand, shipped, bd(9.0, 2.5))  # better against WebP only
    assert shipped.read_bytes() == b"old"
    assert promote(cand, shipped, bd(9.0, 1.0))
    assert shipped.read_bytes() == b"new"
    entry = json.loads(shipped.with_suffix(".json").read_text())
    assert entry["steps"] == 20
    assert [h["steps"] for h in entry["history"]] == [5, 10]
    assert entry["history"][-1]["bd_rate_psnr_vs"]["webp"] == 10.0


def test_image_eval_cache_reuses_results(tmp_path, monkeypatch):
    """image_eval --cache: a result measured once is read back, not measured again."""
    from PIL import Image

    from codec.image import DEFAULT_MODEL, WEIGHTS_DIR
    import tools.image_eval as ie

    weights = WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors"
    if not weights.exists():
        pytest.skip("no shipped image weights")
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (176, 176, 3), np.uint8)).save(img)
    ie._init_worker(str(weights), [str(img)], 0, 1, str(tmp_path / "cache"))
    first = ie._worker((1.0, 0))
    assert first["bpp"] > 0 and len(list((tmp_path / "cache").glob("*.json"))) == 1

    def no_measure(*_):
        raise AssertionError("measured again")

    monkeypatch.setattr(ie, "_measure", no_measure)
    assert ie._worker((1.0, 0)) == first
    with pytest.raises(AssertionError, match="again"):
        ie._worker((2.0, 0))  # another quality is another result
