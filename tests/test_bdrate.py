"""tools.bdrate: known answers, an independent implementation (bjontegaard) and the anchors."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tools.bdrate import bd_rate, quality_at_rate

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "kodak_anchors.json"

RATE = np.array([0.12, 0.25, 0.5, 0.9, 1.6])
PSNR = np.array([27.0, 29.5, 32.0, 34.6, 37.4])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.3])
def test_constant_rate_factor_gives_factor_minus_one(method, factor):
    assert bd_rate(RATE, PSNR, RATE * factor, PSNR, method) == pytest.approx((factor - 1) * 100)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_factor_with_other_sample_points(method):
    # the test curve samples the same (log-linear) RD law at other qualities
    law = lambda q: np.exp(0.23 * q - 8.0)  # noqa: E731
    q1, q2 = np.linspace(26, 38, 6), np.linspace(27.3, 39.1, 5)
    assert bd_rate(law(q1), q1, 0.7 * law(q2), q2, method) == pytest.approx(-30.0)


def test_antisymmetric_in_log_rate():
    q2 = PSNR + np.array([0.9, 1.0, 1.2, 1.1, 0.8])
    a = bd_rate(RATE, PSNR, RATE, q2)
    b = bd_rate(RATE, q2, RATE, PSNR)
    assert (1 + a / 100) * (1 + b / 100) == pytest.approx(1.0)
    assert a < 0 < b


def test_rate_range_filters_points():
    r2 = RATE.copy()
    r2[-1] *= 3  # only the last point differs; it falls outside the range
    assert bd_rate(RATE, PSNR, r2, PSNR, rate_range=(0.1, 1.0)) == pytest.approx(0.0)
    assert bd_rate(RATE, PSNR, r2, PSNR) > 0


def test_no_overlap_or_too_few_points_is_nan():
    assert math.isnan(bd_rate(RATE, PSNR, RATE, PSNR + 20))
    assert math.isnan(bd_rate(RATE[:3], PSNR[:3], RATE[:3], PSNR[:3], "cubic"))
    with pytest.raises(ValueError):
        bd_rate(RATE, PSNR, RATE, PSNR, "linear")
    with pytest.raises(ValueError):
        bd_rate([0.1, 0.2], [30.0, 30.0], RATE, PSNR)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_agrees_with_bjontegaard_package(method):
    bj = pytest.importorskip("bjontegaard")
    rng = np.random.default_rng(7)
    for _ in range(20):
        q1 = np.sort(rng.uniform(25, 40, 6))
        r1 = np.exp(0.22 * q1 - 8 + rng.normal(0, 0.05, 6))
        r1.sort()
        q2 = np.sort(q1 + rng.uniform(-1.5, 2.5) + rng.normal(0, 0.2, 6))
        r2 = np.sort(r1 * rng.uniform(0.6, 1.2, 6))
        ours = bd_rate(r1, q1, r2, q2, method)
        theirs = bj.bd_rate(r1, q1, r2, q2, method=method, min_overlap=0)
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-9)


@pytest.mark.skipif(not ANCHORS.exists(), reason="../shared/anchors not present")
def test_reproduces_anchor_bd_rates_from_anchor_points():
    d = json.loads(ANCHORS.read_text())
    ref = d["lossy"]["jpeg420"]["points"]
    for codec, expected in d["bd_rate_vs_jpeg420"].items():
        pts = d["lossy"][codec]["points"]
        for key, value in expected.items():
            metric, method = key.rsplit("_", 1)
            got = bd_rate([p["bpp"] for p in ref], [p[metric] for p in ref],
                          [p["bpp"] for p in pts], [p[metric] for p in pts],
                          {"pchip": "pchip", "poly": "cubic"}[method], (0.1, 2.0))
            assert got == pytest.approx(value, abs=1e-6), (codec, key)


def test_quality_at_rate_is_linear_in_log_rate():
    assert quality_at_rate([0.25, 1.0], [30.0, 36.0], 0.5) == pytest.approx(33.0)
    assert quality_at_rate(RATE, PSNR, 0.5) == pytest.approx(32.0)
    assert math.isnan(quality_at_rate(RATE, PSNR, 3.0))
