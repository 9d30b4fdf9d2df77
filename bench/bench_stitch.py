"""Benchmark: screened Poisson stitch (MvInvert Eq. 5–6) at the BFM front topology size.

A synthetic mesh with exactly 35,709 vertices and 70,789 triangles (a curved grid with split
triangles), five views (photo + four synthetic) with facing-based scores and offset colours. Prints:
the one-time factorisation, the per-image stitch (selection + targets + solve) and the solve alone
(median and IQR of repeats), and the same system solved by plain ``scipy.sparse.linalg.lsqr`` and by a
per-image SuperLU refactorisation, with their ratios and the max colour difference. Also T_coarse and
a 1024² UV bake. Before/after: the stitch, the solve and the UV bake of the package at
``bench.baseline.BASELINE_REV`` run interleaved with today's in this process (medians, ratios).
Run: ``.venv/bin/python bench/bench_stitch.py [--baseline REV]``.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import lsqr, splu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import BASELINE_REV, interleaved, load_baseline  # noqa: E402
from mvinvert_cli.render.bake import bake, uv_layout  # noqa: E402
from mvinvert_cli.texture.coarse import coarse_texture  # noqa: E402
from mvinvert_cli.texture.poisson import PoissonSolver  # noqa: E402
from mvinvert_cli.texture.stitch import gradient_targets, stitch  # noqa: E402
from mvinvert_cli.texture.visibility import select_views, triangle_confidence  # noqa: E402

N_VERTS, N_FACES = 35_709, 70_789  # BFM front model (DESIGN.md §3)
REPEATS = 7


def synthetic_face_mesh(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly N_VERTS / N_FACES: a curved 157² grid, 11,057 centroid splits, 3 boundary edge splits."""
    n = 157
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(np.linspace(-1.1, 1.1, n), np.linspace(-0.9, 0.9, n), indexing="ij")
    verts = np.stack([xs, ys, np.zeros_like(xs)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    n_split_edges = 3  # boundary edge (a, b) of the first quads of the bottom row: +1 vertex, +1 face
    n_centroid = (N_VERTS - n * n) - n_split_edges  # 1→3 splits: +1 vertex, +2 faces
    assert len(faces) + 2 * n_centroid + n_split_edges == N_FACES
    chosen = rng.choice(np.arange(n_split_edges, len(faces) // 2), n_centroid, replace=False)
    new_verts, new_faces, keep = [verts], [], np.ones(len(faces), bool)
    next_id = len(verts)
    for t in range(n_split_edges):  # faces[t] = (a, b, d) with (a, b) on the boundary row
        i, j, k = faces[t]
        new_verts.append(((verts[i] + verts[j]) / 2)[None])
        new_faces += [[i, next_id, k], [next_id, j, k]]
        keep[t] = False
        next_id += 1
    tri = faces[chosen]
    centroids = verts[tri].mean(1)
    ids = next_id + np.arange(n_centroid)
    new_verts.append(centroids)
    new_faces = np.concatenate([np.array(new_faces), np.stack([tri[:, 0], tri[:, 1], ids], 1),
                                np.stack([tri[:, 1], tri[:, 2], ids], 1), np.stack([tri[:, 2], tri[:, 0], ids], 1)])
    keep[chosen] = False
    verts = np.concatenate(new_verts)
    verts[:, 2] = np.sqrt(1.0 - (0.95 * verts[:, 0]) ** 2) - 0.25 * verts[:, 1] ** 2  # face-like curvature
    faces = np.concatenate([faces[keep], new_faces])
    assert verts.shape == (N_VERTS, 3) and faces.shape == (N_FACES, 3)
    return torch.from_numpy(verts), torch.from_numpy(faces).long()


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    x = verts[faces]
    face_normal = torch.linalg.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])
    normals = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), face_normal.repeat_interleave(3, 0))
    return torch.nn.functional.normalize(normals, dim=1)


def facing_scores(normals: torch.Tensor, yaw_deg: float, pitch_deg: float, floor: float) -> torch.Tensor:
    """Stand-in for Eq. 4: cosine to a rotated view direction, zero below ``floor`` (silhouette band)."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    direction = normals.new_tensor([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    cosine = normals @ direction
    return torch.where(cosine > floor, cosine, torch.zeros_like(cosine))


def timed(fn, repeats: int = REPEATS) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times), quartiles[2] - quartiles[0], out


def references(solver, targets, weights, anchors, solution, t_solve) -> None:
    """The same per-image system by plain lsqr and by a per-image SuperLU refactorisation."""
    root = 0.1 * np.sqrt(weights)
    system = sp.vstack([solver.G, sp.diags(root)]).tocsr()
    start = time.perf_counter()
    lsqr_solution = np.stack([lsqr(system, np.concatenate([targets[:, ch], root * anchors[:, ch]]))[0]
                              for ch in range(3)], 1)
    t_lsqr = time.perf_counter() - start
    print(f"plain scipy lsqr of the same system (default tolerances): {t_lsqr:.2f} s → "
          f"{t_lsqr / t_solve:.0f}x slower than the solve; max |Δcolour| {np.abs(lsqr_solution - solution).max():.1e}")

    matrix = (solver.GtG + sp.diags(0.01 * weights)).tocsc()
    rhs = solver.Gt @ targets + 0.01 * weights[:, None] * anchors
    t_lu, _, direct = timed(lambda: splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                                         options={"SymmetricMode": True}).solve(rhs), repeats=3)
    print(f"SuperLU refactorisation per image: {1e3 * t_lu:.0f} ms → {t_lu / t_solve:.1f}x the solve; "
          f"max |Δcolour| {np.abs(direct - solution).max():.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE_REV, help="git revision timed as 'before'")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--skip-reference", action="store_true",
                        help="skip the slow lsqr / refactorisation references (minutes on a loaded machine)")
    args = parser.parse_args()
    torch.manual_seed(0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit or '?'} | python {platform.python_version()} | torch {torch.__version__} | "
          f"scipy {scipy.__version__} | numpy {np.__version__} | cpu cores {os.cpu_count()} | "
          f"torch threads {torch.get_num_threads()}")

    verts, faces = synthetic_face_mesh()
    print(f"mesh: {len(verts)} vertices, {len(faces)} triangles")
    start = time.perf_counter()
    solver = PoissonSolver(verts, faces, lam=0.1)
    print(f"factorise once (G, GᵀG, SuperLU of GᵀG + λ²I): {time.perf_counter() - start:.3f} s")

    normals = vertex_normals(verts, faces)
    x, y, z = verts.unbind(1)
    field = torch.stack([0.6 + 0.2 * torch.sin(3 * x) * torch.cos(2 * y), 0.45 + 0.15 * x * y + 0.1 * z,
                         0.4 + 0.1 * torch.cos(4 * y + x)], 1)
    photo_scores = facing_scores(normals, 20.0, 0.0, floor=0.6)  # T = 50 px: a wide band
    views = [(0.0, 0.0), (30.0, 0.0), (-30.0, 0.0), (0.0, -15.0)]
    view_scores = torch.stack([facing_scores(normals, yaw, pitch, floor=0.2) for yaw, pitch in views])
    offsets = torch.tensor([0.03, -0.05, 0.04, -0.02], dtype=field.dtype)[:, None, None]
    view_colors = field[None] + offsets + 0.01 * torch.randn(len(views), *field.shape, dtype=field.dtype)

    t_stitch, iqr_stitch, result = timed(lambda: stitch(solver, field, photo_scores, view_colors, view_scores))
    print(f"photo anchors {float((photo_scores > 0).double().mean()):.0%} of the vertices; "
          f"triangles per source (none, photo, views): {torch.bincount(result.selection + 1).tolist()}")
    print(f"per-image stitch (Eq. 5 selection + targets + Eq. 6 solve): {1e3 * t_stitch:.1f} ms "
          f"(IQR {1e3 * iqr_stitch:.1f} ms, median of {REPEATS}); {result.info.iterations} CG iterations, "
          f"residual {result.info.residual:.1e}, backend {result.info.backend}")

    # the same per-image system, assembled once, for the solve-only and reference timings
    colors = torch.cat([field[None], view_colors])
    scores = torch.cat([photo_scores[None], view_scores])
    selection = select_views(triangle_confidence(scores, faces))
    targets = gradient_targets(solver.basis("cpu", field.dtype), faces, colors, selection).numpy()
    weights = (photo_scores > 0).double().numpy()
    anchors = field.numpy()
    t_solve, iqr_solve, (solution, info) = timed(lambda: solver.solve(targets, weights, anchors))
    print(f"per-image solve only (3 channels): {1e3 * t_solve:.1f} ms (IQR {1e3 * iqr_solve:.1f} ms); "
          f"goal ≤ 100 ms: {'met' if t_solve <= 0.1 else 'MISSED'}")

    if args.skip_reference:
        print("plain lsqr and SuperLU refactorisation references: skipped (--skip-reference)")
    else:
        references(solver, targets, weights, anchors, solution, t_solve)


    t_pca = field * 0.9 + 0.05
    t_coarse, _, _ = timed(lambda: coarse_texture(solver, field, photo_scores, t_pca))
    print(f"T_coarse (photo into T_pca): {1e3 * t_coarse:.1f} ms")

    uvs = torch.stack([0.05 + 0.9 * (x + 0.9) / 1.8, 0.05 + 0.9 * (y + 1.1) / 2.2], 1).float()
    start = time.perf_counter()
    layout = uv_layout(uvs, faces, 1024)
    t_frag = time.perf_counter() - start
    t_bake, _, baked = timed(lambda: bake(result.colors.float(), faces, layout), repeats=3)
    print(f"UV bake 1024²: rasterise layout + padding map once {t_frag:.2f} s, bake + pad per image {1e3 * t_bake:.0f} ms "
          f"({baked.mask.float().mean():.0%} texels inside islands)")
    before_after(args.baseline, args.repeats, verts, faces, field, photo_scores, view_colors, view_scores, uvs,
                 result.colors.float())


def before_after(rev: str, repeats: int, verts, faces, field, photo_scores, view_colors, view_scores, uvs,
                 colors) -> None:
    """The same stitch, solve and UV bake with the package at ``rev`` and today's, interleaved."""
    load_baseline(rev)
    old_poisson = importlib.import_module("mvinvert_baseline.texture.poisson")
    old_stitch = importlib.import_module("mvinvert_baseline.texture.stitch")
    old_bake = importlib.import_module("mvinvert_baseline.render.bake")
    old_select = importlib.import_module("mvinvert_baseline.texture.visibility")
    solvers = {"before": old_poisson.PoissonSolver(verts, faces, lam=0.1), "after": PoissonSolver(verts, faces, lam=0.1)}
    stitchers = {"before": old_stitch.stitch, "after": stitch}
    outputs = {k: stitchers[k](solvers[k], field, photo_scores, view_colors, view_scores, fallback=field)
               for k in solvers}
    colors_all, scores_all = torch.cat([field[None], view_colors]), torch.cat([photo_scores[None], view_scores])
    selection = old_select.select_views(old_select.triangle_confidence(scores_all, faces))
    targets = old_stitch.gradient_targets(solvers["before"].basis("cpu", field.dtype), faces, colors_all,
                                          selection).numpy()
    weights, anchors = (photo_scores > 0).double().numpy(), field.numpy()
    times = interleaved({
        f"{k} {what}": fn for k in solvers for what, fn in (
            ("stitch", lambda k=k: stitchers[k](solvers[k], field, photo_scores, view_colors, view_scores,
                                                fallback=field)),
            ("solve", lambda k=k: solvers[k].solve(targets, weights, anchors)))}, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = float((outputs["before"].colors - outputs["after"].colors).abs().max())
    print(f"before/after ({rev} vs {_commit()}, interleaved, medians of {repeats}; pipeline call with fallback):")
    for k in solvers:
        print(f"  {k:<6} per-image stitch {1e3 * med[f'{k} stitch']:7.1f} ms, solve {1e3 * med[f'{k} solve']:6.1f} ms"
              f" → stitch / solve {med[f'{k} stitch'] / med[f'{k} solve']:.2f}× (goal ≤ 2×)")
    print(f"  stitch {med['before stitch'] / med['after stitch']:.2f}× faster, bookkeeping (stitch − solve) "
          f"{1e3 * (med['before stitch'] - med['before solve']):.1f} → "
          f"{1e3 * (med['after stitch'] - med['after solve']):.1f} ms; max |Δcolour| before vs after {diff:.1e}")
    layouts = {}
    start = time.perf_counter()
    layouts["before"] = old_bake.uv_layout(uvs, faces, 1024)
    t_old = time.perf_counter() - start
    start = time.perf_counter()
    layouts["after"] = uv_layout(uvs, faces, 1024)
    t_new = time.perf_counter() - start
    bakes = {"before": lambda: old_bake.bake(colors, faces, layouts["before"]),
             "after": lambda: bake(colors, faces, layouts["after"])}
    times = interleaved(bakes, max(3, repeats // 2))
    same = torch.equal(bakes["before"]().texture, bakes["after"]().texture)
    new = layouts["after"]
    kept = sum(t.element_size() * t.numel() for t in (new.mask, new.texel_faces, new.texel_bary, new.source))
    frags = layouts["before"].fragments
    held = sum(t.element_size() * t.numel() for t in (frags.pix_to_face, frags.bary_coords, frags.zbuf,
                                                      layouts["before"].mask, layouts["before"].nearest))
    print(f"  UV layout 1024² once: {t_old:.2f} → {t_new:.2f} s, held {held / 2**20:.0f} → {kept / 2**20:.0f} MiB; "
          f"bake + pad {1e3 * statistics.median(times['before']):.0f} → {1e3 * statistics.median(times['after']):.0f} ms "
          f"({'identical' if same else 'DIFFERENT'} textures)")


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return out or "working tree"


if __name__ == "__main__":
    main()
