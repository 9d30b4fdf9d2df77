"""Evaluation outputs: ``eval.csv`` (one row per photo), the summary tables, and the HTML + PNG report.

The summary is computed from the rows alone (no hidden state), so ``eval.csv`` can be re-summarised
later. Means are over the photos whose value is finite: an empty hold-out region (NaN) or a failed
photo does not count, and the count ``n`` is printed next to every mean. PSNR is averaged in dB per
photo (as papers report it), not recomputed from a pooled MSE.
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_open, atomic_write_text
from ..io.images import save_image
from .score import METRICS

HOLDOUT_METHODS = ("statistical", "mirror", "coarse", "full")
CEILING = "ceiling"  # the photo's own colours rendered back: the per-vertex resolution limit
BASELINE = "mirror"
METHOD_HELP = {
    "statistical": "model prediction only (lit PCA albedo, or the default model's statistical fill)",
    "mirror": "mirror-symmetry fill from the kept side, statistical fill where the mirror is hidden too",
    "coarse": "T_coarse: Poisson fill of the kept colours into the statistical texture (no refine)",
    "full": "the full pipeline (T_refine; equals coarse when the refine stage is skipped)",
    CEILING: "upper bound: the photo's own vertex colours (no hold-out) rendered the same way",
}
CASE_PANELS = ("input", "render", "error", "hidden", "full", "mirror", "holdout_error")


def column(kind: str, metric: str, method: str | None = None) -> str:
    """CSV column name: ``recon_psnr``, ``holdout_mirror_ssim``, ..."""
    return f"{kind}_{metric}" if method is None else f"{kind}_{method}_{metric}"


def csv_columns() -> list[str]:
    cols = ["image", "status", "fitted_yaw_deg", "near_frontal"]
    cols += [column("recon", m) for m in METRICS] + ["id_cos", "id_backend"]
    cols += ["holdout_yaw_deg", "holdout_pixels", "holdout_hidden_vertices", "mirror_found"]
    cols += [column("holdout", m, method) for method in (*HOLDOUT_METHODS, CEILING) for m in METRICS]
    cols += ["full_is", "recover_seconds", "seconds", "notes"]
    return cols


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.6g}")
    return "" if value is None else str(value)


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per photo with :func:`csv_columns` (missing values empty, NaN as ``nan``)."""
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=csv_columns(), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in csv_columns()})
    return path


def _finite(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    values = [row.get(key) for row in rows]
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass
class Summary:
    """Aggregates of the rows.

    Attributes:
        photos / failed: counts.
        recon: {metric: mean} of the reconstruction (face region, input vs re-render), + "id_cos".
        recon_n: photos with reconstruction scores; id_backend: identity network used (or a reason).
        holdout: {method: {metric: mean, "n": count, "d_psnr": mean per-photo PSNR − mirror's,
            "l1_ratio": mean L1 / mirror's mean L1, "wins": photos whose PSNR beats mirror's}}.
        holdout_yaw: |turn| in degrees (its sign is per photo, in eval.csv); full_is: what "full" was.
    """

    photos: int = 0
    failed: int = 0
    recon: dict[str, float] = field(default_factory=dict)
    recon_n: int = 0
    id_backend: str = ""
    holdout: dict[str, dict[str, float]] = field(default_factory=dict)
    holdout_yaw: float | None = None
    full_is: str = ""


def summarise(rows: Sequence[dict[str, Any]]) -> Summary:
    ok = [r for r in rows if r.get("status") == "ok"]
    summary = Summary(photos=len(rows), failed=len(rows) - len(ok))
    summary.recon = {m: _mean(_finite(ok, column("recon", m))) for m in METRICS}
    summary.recon["id_cos"] = _mean(_finite(ok, "id_cos"))
    summary.recon_n = len(_finite(ok, column("recon", "psnr")))
    summary.id_backend = next((str(r["id_backend"]) for r in ok if r.get("id_backend")), "")
    held = [r for r in ok if isinstance(r.get("holdout_pixels"), int) and r["holdout_pixels"] > 0]
    summary.holdout_yaw = next((abs(r["holdout_yaw_deg"]) for r in held), None)
    summary.full_is = ", ".join(sorted({str(r.get("full_is")) for r in held if r.get("full_is")}))
    base_l1 = _mean(_finite(held, column("holdout", "l1", BASELINE)))
    for method in (*HOLDOUT_METHODS, CEILING):
        stats: dict[str, float] = {m: _mean(_finite(held, column("holdout", m, method))) for m in METRICS}
        stats["n"] = len(_finite(held, column("holdout", "psnr", method)))
        deltas, wins = [], 0
        for r in held:
            mine, base = r.get(column("holdout", "psnr", method)), r.get(column("holdout", "psnr", BASELINE))
            if isinstance(mine, float) and isinstance(base, float) and math.isfinite(mine) and math.isfinite(base):
                deltas.append(mine - base)
                wins += mine > base
        stats["d_psnr"] = _mean(deltas)
        stats["l1_ratio"] = stats["l1"] / base_l1 if base_l1 and math.isfinite(base_l1) else math.nan
        stats["wins"] = wins
        summary.holdout[method] = stats
    return summary


def _num(value: float, digits: int = 4) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_tables(summary: Summary) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the reconstruction and hold-out tables, as text (CLI, HTML, bench)."""
    recon = (f"Reconstruction, face region, input vs re-render ({summary.recon_n} of {summary.photos} photos)",
             ["L1", "PSNR dB", "SSIM", f"ID cos ({summary.id_backend or 'none'})"],
             [[_num(summary.recon["l1"]), _num(summary.recon["psnr"], 2), _num(summary.recon["ssim"]),
               _num(summary.recon["id_cos"])]])
    rows = []
    for method in (*HOLDOUT_METHODS, CEILING):
        s = summary.holdout.get(method, {})
        label = method + (" (baseline)" if method == BASELINE else "")
        rows.append([label, str(int(s.get("n", 0))), _num(s.get("l1", math.nan)), _num(s.get("psnr", math.nan), 2),
                     _num(s.get("ssim", math.nan)), _num(s.get("d_psnr", math.nan), 2),
                     _num(s.get("l1_ratio", math.nan), 3),
                     "—" if method == BASELINE else f"{int(s.get('wins', 0))}/{int(s.get('n', 0))}"])
    yaw = "—" if summary.holdout_yaw is None else f"{summary.holdout_yaw:g}°"
    title = f"Occlusion hold-out: what a {yaw} turn self-occludes, recovered from the rest, scored against the photo"
    if summary.full_is:
        title += f" (full = {summary.full_is})"
    holdout = (title, ["method", "n", "L1", "PSNR dB", "SSIM", "ΔPSNR vs mirror", "L1 / mirror", "beats mirror"],
               rows)
    return [recon, holdout]


def print_summary(summary: Summary, console: Any) -> None:
    """Render :func:`summary_tables` with rich on ``console``."""
    from rich.markup import escape
    from rich.table import Table

    for title, header, rows in summary_tables(summary):
        table = Table(title=escape(title), title_justify="left")
        for name in header:
            table.add_column(escape(name), justify="left" if name == "method" else "right")
        for row in rows:
            table.add_row(*map(escape, row))
        console.print(table)
    if summary.failed:
        console.print(f"{summary.failed} of {summary.photos} photos failed (see eval.csv, status column)")


# ----------------------------------------------------------------------------- images

def error_map(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None, scale: float = 4.0) -> np.ndarray:
    """(H, W, 3) heat map of the per-pixel mean |a − b| × ``scale`` (black → red → yellow → white).

    Outside ``region`` (bool (H, W)) the map shows the input dimmed to 25 % grey so the region stands out.
    """
    err = np.clip(np.abs(a - b).mean(axis=2) * scale, 0.0, 1.0)
    heat = np.stack([np.clip(3 * err, 0, 1), np.clip(3 * err - 1, 0, 1), np.clip(3 * err - 2, 0, 1)], axis=2)
    if region is not None:
        heat = np.where(region[..., None], heat, 0.25 * a.mean(axis=2, keepdims=True))
    return heat.astype(np.float32)


def overlay(image: np.ndarray, region: np.ndarray, colour: tuple[float, float, float] = (1.0, 0.0, 1.0)) -> np.ndarray:
    """The image with ``region`` tinted (50 %) in ``colour``."""
    tint = np.asarray(colour, dtype=np.float32)
    return np.where(region[..., None], 0.5 * image + 0.5 * tint, image).astype(np.float32)


def case_strip(panels: dict[str, np.ndarray]) -> np.ndarray:
    """Panels of :data:`CASE_PANELS` present in ``panels`` side by side (H, sum W, 3), 4-px white gaps."""
    images = [panels[k] for k in CASE_PANELS if k in panels]
    gap = np.ones((images[0].shape[0], 4, 3), dtype=np.float32)
    parts = []
    for img in images:
        parts += [img, gap]
    return np.concatenate(parts[:-1], axis=1)


@dataclass
class Case:
    """A photo shown in the report: its row and panel images ((H, W, 3) float in [0, 1])."""

    label: str
    row: dict[str, Any]
    panels: dict[str, np.ndarray]


def pick_cases(rows: Sequence[dict[str, Any]], count: int = 2) -> list[tuple[str, dict[str, Any]]]:
    """(label, row) of the ``count`` best and worst photos by full hold-out PSNR (else recon PSNR)."""
    key = column("holdout", "psnr", "full")
    scored = [(r[key], r) for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
    what = "hold-out PSNR (full)"
    if not scored:
        key = column("recon", "psnr")
        scored = [(r[key], r) for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
        what = "reconstruction PSNR"
    scored.sort(key=lambda item: -item[0])
    best = scored[:count]
    worst = [s for s in scored[::-1][:count] if all(s[1] is not b[1] for b in best)]
    return ([(f"best {i + 1} by {what}", r) for i, (_, r) in enumerate(best)]
            + [(f"worst {i + 1} by {what}", r) for i, (_, r) in enumerate(worst)])


def write_report(out: Path, rows: Sequence[dict[str, Any]], summary: Summary, cases: Sequence[Case]) -> Path:
    """``index.html`` + ``cases/*.png`` (one strip per case) + ``report.png`` (all strips stacked)."""
    strips = []
    blocks = []
    for index, case in enumerate(cases):
        strip = case_strip(case.panels)
        name = f"cases/{index:02d}_{Path(str(case.row['image'])).stem}.png"
        save_image(out / name, strip)
        strips.append(strip)
        shown = [k for k in CASE_PANELS if k in case.panels]
        scores = ", ".join(f"{k} {_fmt(case.row.get(k))}" for k in
                           (column("recon", "psnr"), column("holdout", "psnr", "full"),
                            column("holdout", "psnr", "mirror")) if case.row.get(k) is not None)
        blocks.append(f"<h3>{html.escape(case.label)}: {html.escape(str(case.row['image']))}</h3>"
                      f"<p>{html.escape(scores)}</p><p>panels: {html.escape(' | '.join(shown))}</p>"
                      f"<img src='{html.escape(name)}' alt='{html.escape(case.label)}'>")
    if strips:
        width = max(s.shape[1] for s in strips)
        padded = [np.pad(s, ((0, 8), (0, width - s.shape[1]), (0, 0)), constant_values=1.0) for s in strips]
        save_image(out / "report.png", np.concatenate(padded, axis=0)[:-8])
    tables = []
    for title, header, body in summary_tables(summary):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        tables.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{trs}</table>")
    methods = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in METHOD_HELP.items())
    per_image_cols = ["image", "status", column("recon", "psnr"), column("recon", "ssim"), "id_cos",
                      "holdout_pixels", column("holdout", "psnr", "full"), column("holdout", "psnr", "mirror"),
                      column("holdout", "psnr", "statistical"), "notes"]
    per_image = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in per_image_cols) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in per_image_cols) + "</tr>" for r in rows)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mvinvert eval</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>mvinvert eval: {summary.photos} photos</h1>
{''.join(tables)}
<h2>Methods</h2><ul>{methods}</ul>
<p>Panels: input crop | re-render (full) | |error|×4 in the face region | hidden region (magenta) |
full fill in the hidden region | mirror fill | |error|×4 of the full fill in the hidden region.</p>
<h2>Best and worst cases</h2>{''.join(blocks) or '<p>no scored photo</p>'}
<h2>Per photo</h2><table>{per_image}</table>
</body></html>
"""
    return atomic_write_text(out / "index.html", page)
