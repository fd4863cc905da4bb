"""tools.mpq (``ncodec mpq``): the pure parts (OCR set generator, CER, box matching, curve
thresholds, summary) always; the perception models end to end on two tiny images when the
optional ``ncodec[mpq]`` packages are installed (skipped with the reason otherwise)."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from codec.errors import CodecError
from codec.metrics import bpp
from tools import mpq_models
from tools.cli import main
from tools.mpq import _match, bpp_to_reach, summarize, value_at
from tools.mpq_text import FONT_SIZES, levenshtein, make_ocr_set, score_ocr

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MISSING = mpq_models.missing()
needs_models = pytest.mark.skipif(
    bool(MISSING), reason=f"optional mpq packages not installed: {', '.join(MISSING)} "
                          f"({mpq_models.INSTALL_HINT})")


def _photo(w=320, h=240, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 0.6 + 40, y * 0.8 + 30, (x + y) * 0.3 + 60], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0


def test_ocr_set_is_seeded_and_has_truth():
    a = make_ocr_set([_photo()], 2, seed=3)
    b = make_ocr_set([_photo()], 2, seed=3)
    c = make_ocr_set([_photo()], 2, seed=4)
    assert [t for _, _, t in a] == [t for _, _, t in b]
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert [t for _, _, t in a] != [t for _, _, t in c]
    name, img, truth = a[0]
    assert name == "ocr00.png" and img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert [t["size"] for t in truth] == list(FONT_SIZES) and min(FONT_SIZES) == 10
    for t in truth:
        x0, y0, x1, y1 = t["box"]
        assert t["text"] and 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240


def test_score_ocr_assigns_lines_and_counts_edits():
    truth = [{"text": "river 12", "size": 20, "box": [10, 10, 110, 40]},
             {"text": "Bridge", "size": 10, "box": [10, 60, 80, 80]}]
    lines = [((12, 12, 60, 38), "river"), ((62, 12, 100, 38), "12"),  # one line in two parts
             ((12, 62, 78, 78), "Bridqe"), ((200, 200, 260, 220), "STOP")]  # stray text ignored
    s = score_ocr(truth, lines)
    assert s["chars"] == len("river12") + len("Bridge") and s["edits"] == 1
    assert s["by_size"] == {"20": [0, 7], "10": [1, 6]}
    assert score_ocr(truth, [])["edits"] == s["chars"]  # nothing read: every character lost


def test_box_matching():
    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    det = np.array([[1, 1, 11, 11], [100, 100, 110, 110]], float)
    iou = mpq_models.box_iou(ref, det)
    assert iou.shape == (2, 2) and iou[0, 0] == pytest.approx(81 / 119) and iou[1].max() == 0
    assert _match(iou) == (1, pytest.approx(81 / 119))
    assert _match(np.zeros((2, 0))) == (0, 0.0)


def _curve(pairs):
    return [{"bpp": r, "value": v} for r, v in pairs]


def test_bpp_to_reach_and_value_at():
    c = _curve([(0.1, 0.5), (0.2, 0.8), (0.4, 0.95), (0.8, 0.99)])
    r = bpp_to_reach(c, 0.9, True)
    assert 0.2 < r < 0.4
    assert value_at(c, r) == pytest.approx(0.9)
    assert bpp_to_reach(c, 0.4, True) == "<0.100"
    assert bpp_to_reach(c, 0.999, True) == ">0.800"
    # not monotone: the threshold counts from where the curve stays above it
    bumpy = _curve([(0.1, 0.95), (0.2, 0.7), (0.4, 0.92)])
    assert 0.2 < bpp_to_reach(bumpy, 0.9, True) < 0.4
    cer = _curve([(0.1, 0.5), (0.3, 0.01)])
    assert 0.1 < bpp_to_reach(cer, 0.02, False) < 0.3
    assert value_at(c, 0.05) is None and value_at(c, 2.0) is None


def test_summarize_aggregates_per_task():
    recs = [
        {"codec": "x", "setting": 1, "item": "a", "set": "photo", "bpp": 0.2, "top1": 1.0,
         "top5": 0.8, "kl": 0.1, "feat": 0.3, "face_ref": 3, "face_matched": 2,
         "face_iou_sum": 1.6, "face_recall": 2 / 3},
        {"codec": "x", "setting": 1, "item": "b", "set": "photo", "bpp": 0.4, "top1": 0.0,
         "top5": 0.6, "kl": 0.3, "feat": 0.5},
        {"codec": "x", "setting": 1, "item": "o", "set": "ocr", "bpp": 1.0, "ocr_edits": 5,
         "ocr_chars": 100, "cer": 0.05},
    ]
    s = summarize(recs)["x"]
    assert s["top1"] == [{"setting": 1, "bpp": pytest.approx(0.3), "value": 0.5, "n": 2}]
    assert s["face_recall"][0]["value"] == pytest.approx(2 / 3) and s["face_recall"][0]["bpp"] == 0.2
    assert s["face_iou"][0]["value"] == pytest.approx(0.8)
    assert s["cer"][0]["value"] == pytest.approx(0.05) and s["cer"][0]["bpp"] == 1.0


def test_missing_extra_is_a_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(mpq_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CodecError, match=r"ncodec\[mpq\]"):
        mpq_models.require()
    from PIL import Image

    Image.fromarray(_photo()).save(tmp_path / "a.png")
    assert main(["mpq", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-q",
                 "-c", "jpeg420"]) == 1
    err = capsys.readouterr().err
    assert "ncodec[mpq]" in err and "--no-deps" in err and "Traceback" not in err


def test_bad_task_and_lossless_codec_are_errors(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(_photo()).save(tmp_path / "a.png")
    assert main(["mpq", str(tmp_path / "a.png"), "--tasks", "smell", "-q"]) == 1
    assert "unknown task" in capsys.readouterr().err


@needs_models
def test_lossless_codec_refused(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(_photo()).save(tmp_path / "a.png")
    assert main(["mpq", str(tmp_path / "a.png"), "-c", "png", "-q", "-o",
                 str(tmp_path / "o")]) == 1
    assert "lossy image codecs only" in capsys.readouterr().err


@needs_models
def test_mpq_end_to_end_tiny(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(2):
        Image.fromarray(_photo(seed=i)).save(src / f"p{i}.png")
    out = tmp_path / "out"
    rc = main(["mpq", str(src), "-o", str(out), "-q", "-c", "jpeg420,webp",
               "--settings", "jpeg420=5,95", "--settings", "webp=90", "--ocr-images", "1"])
    assert rc == 0
    for name in ("mpq.json", "per_image.csv", "curves.png", "table.md", "ocr_set/ocr00.png",
                 "ocr_set/truth.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 3 * 3  # (2 photos + 1 OCR image) x 3 codec settings
    for r in rows:  # the one bpp function of ncodec eval, on the real file size
        assert float(r["bpp"]) == pytest.approx(bpp(int(r["bytes"]), 320 * 240), rel=1e-5)
        if r["set"] == "photo":
            assert 0 <= float(r["top1"]) <= 1 and 0 <= float(r["top5"]) <= 1
            assert float(r["kl"]) >= -1e-9 and float(r["feat"]) >= 0
        else:
            assert 0 <= float(r["cer"]) and int(r["ocr_chars"]) > 50
    doc = json.loads((out / "mpq.json").read_text())
    jpeg = doc["curves"]["jpeg420"]
    # near-lossless JPEG keeps the classifier's view; q5 moves it further away
    assert jpeg["top5"][-1]["value"] >= 0.6
    assert jpeg["feat"][-1]["value"] < jpeg["feat"][0]["value"]
    assert jpeg["kl"][-1]["value"] < jpeg["kl"][0]["value"]
    # the OCR set is legible on the original and at q95
    orig = [o for o in doc["originals"] if o["set"] == "ocr"][0]
    assert orig["cer"] < 0.1 and jpeg["cer"][-1]["value"] < 0.1
    assert set(doc["bpp_to_reach"]["jpeg420"]) == {"top1", "cer", "face_recall"}
    assert "bpp for CER <= 2 %" in capsys.readouterr().out
    # a second run is served from the cache and gives the same numbers
    assert main(["mpq", str(src), "-o", str(out), "-q", "-c", "jpeg420,webp",
                 "--settings", "jpeg420=5,95", "--settings", "webp=90", "--ocr-images", "1"]) == 0
    assert json.loads((out / "mpq.json").read_text())["curves"] == doc["curves"]


@needs_models
@pytest.mark.skipif(not (DATA / "kodak" / "kodim04.png").exists(), reason="Kodak not present")
def test_faces_found_on_kodak_portrait():
    det = mpq_models.FaceDetector()
    from tools.eval_media import load_image

    boxes = det.detect(load_image(DATA / "kodak" / "kodim04.png"), 0.95)
    assert len(boxes) >= 1 and not math.isnan(boxes[0][0])
