"""report: eval.csv columns, summary arithmetic (means, ΔPSNR, ratios, wins), best/worst cases, HTML."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from mvinvert_cli.eval import report
from mvinvert_cli.eval.report import column


def _row(name: str, full: float, mirror: float, stat: float, pixels: int = 100, status: str = "ok") -> dict:
    row = {"image": name, "status": status, "fitted_yaw_deg": 3.0, "near_frontal": True,
           column("recon", "l1"): 0.02, column("recon", "psnr"): 30.0 + full / 10, column("recon", "ssim"): 0.9,
           "id_cos": math.nan, "id_backend": "none", "holdout_yaw_deg": 45.0, "holdout_pixels": pixels,
           "full_is": "coarse (refine skipped: no generator)"}
    for method, psnr in (("full", full), ("coarse", full), ("mirror", mirror), ("statistical", stat),
                         ("ceiling", 40.0)):
        row[column("holdout", "psnr", method)] = psnr
        row[column("holdout", "l1", method)] = 10 ** (-psnr / 20)
        row[column("holdout", "ssim", method)] = psnr / 50
    return row


def test_summary_arithmetic():
    rows = [_row("a.jpg", 24.0, 22.0, 18.0), _row("b.jpg", 20.0, 21.0, 17.0),
            _row("c.jpg", math.nan, math.nan, math.nan, pixels=0), {"image": "d.jpg", "status": "error: no face"}]
    s = report.summarise(rows)
    assert (s.photos, s.failed) == (4, 1)
    full = s.holdout["full"]
    assert full["n"] == 2 and full["psnr"] == pytest.approx(22.0)
    assert full["d_psnr"] == pytest.approx(((24 - 22) + (20 - 21)) / 2)
    assert full["wins"] == 1
    mirror_l1 = (10 ** (-22 / 20) + 10 ** (-21 / 20)) / 2
    assert full["l1_ratio"] == pytest.approx((10 ** (-24 / 20) + 10 ** (-20 / 20)) / 2 / mirror_l1)
    assert s.holdout["mirror"]["l1_ratio"] == pytest.approx(1.0)
    assert s.recon["psnr"] == pytest.approx((32.4 + 32.0) / 2)
    assert s.recon_n == 2  # c.jpg's recon PSNR is NaN → not counted
    assert math.isnan(s.recon["id_cos"])
    assert s.holdout_yaw == 45.0 and "refine skipped" in s.full_is
    titles = [t for t, _, _ in report.summary_tables(s)]
    assert "45° turn" in titles[1]


def test_csv_roundtrip(tmp_path):
    rows = [_row("a.jpg", 24.0, 22.0, 18.0), {"image": "d.jpg", "status": "error: no face"}]
    path = report.write_csv(rows, tmp_path / "eval.csv")
    with open(path) as handle:
        back = list(csv.DictReader(handle))
    assert list(back[0]) == report.csv_columns()
    assert float(back[0][column("holdout", "psnr", "mirror")]) == 22.0
    assert back[0]["id_cos"] == "nan" and back[1]["status"] == "error: no face"
    assert back[1][column("recon", "psnr")] == ""


def test_pick_cases_and_html(tmp_path):
    rows = [_row(f"{i}.jpg", 20.0 + i, 22.0, 18.0) for i in range(5)]
    cases = report.pick_cases(rows, count=2)
    assert [r["image"] for _, r in cases] == ["4.jpg", "3.jpg", "0.jpg", "1.jpg"]
    assert cases[0][0].startswith("best 1") and cases[2][0].startswith("worst 1")
    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    region = np.zeros((32, 32), dtype=bool)
    region[8:20, 16:] = True
    panels = {"input": img, "render": img * 0.9, "error": report.error_map(img, img * 0.9),
              "hidden": report.overlay(img, region), "holdout_error": report.error_map(img, img * 0.5, region)}
    built = [report.Case(label, row, panels) for label, row in cases]
    page = report.write_report(tmp_path, rows, report.summarise(rows), built)
    text = page.read_text()
    assert "best 1" in text and "worst 1" in text and "ΔPSNR vs mirror" in text
    assert (tmp_path / "report.png").is_file() and len(list((tmp_path / "cases").glob("*.png"))) == 4
    assert report.case_strip(panels).shape == (32, 5 * 32 + 4 * 4, 3)


def test_error_map_values():
    a = np.zeros((2, 2, 3), dtype=np.float32)
    b = a.copy()
    b[0, 0] = 1.0  # saturates → white
    heat = report.error_map(a, b)
    assert heat[0, 0].tolist() == [1.0, 1.0, 1.0] and heat[1, 1].tolist() == [0.0, 0.0, 0.0]
