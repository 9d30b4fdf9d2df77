"""Benchmark: CPU fit time per photo (goals on 2 cores: default model ≤ 3 s, BFM ≤ 6 s).

- BFM-sized fit: a synthetic face-like model with the BFM front model's size (189² grid = 35,721
  vertices, 70,560 triangles) and Deep3DFaceRecon's 80 / 64 / 80 identity / expression / albedo
  components, rendered with known coefficients, pose and SH light, then fitted with the default
  schedule (50 rigid + 50 non-rigid Adam steps, photometric term at 224²). Prints per-stage times,
  the rotation error and the photometric drop.
- Default model: the real example portraits (MediaPipe alignment + polygon parsing once, timed
  separately), then the dense-landmark fit of the ~29k-vertex canonical mesh.

Medians of ``REPEATS`` runs with 1 torch thread (add ``--threads 1,2`` to also time 2 threads: on
a loaded shared machine the second thread mostly spins). Run: ``.venv/bin/python bench/bench_fit.py``.
"""

from __future__ import annotations

import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mvinvert_cli.config import Settings  # noqa: E402
from mvinvert_cli.morphable.fit import Fitter  # noqa: E402
from mvinvert_cli.morphable.model import model_from_arrays  # noqa: E402
from mvinvert_cli.render.camera import Camera, rotation_matrix, transform  # noqa: E402
from mvinvert_cli.render.lighting import shade  # noqa: E402
from mvinvert_cli.render.renderer import Renderer  # noqa: E402
from tests.morphable.conftest import grid_face, landmark_vertices, make_observation, smooth_basis  # noqa: E402

REPEATS = 2
GOALS = {"bfm": 6.0, "default": 3.0}


def bfm_sized_model():
    rng = np.random.default_rng(0)
    verts, tris, uvs = grid_face(189, 189)
    mean_tex = np.clip(np.array([0.72, 0.52, 0.42]) + 0.08 * np.sin(verts[:, :1] * 6 + np.arange(3)), 0, 1)
    return model_from_arrays(
        "bfm-sized-synthetic", verts, smooth_basis(verts, 80, 0.03, rng), smooth_basis(verts, 64, 0.02, rng),
        mean_tex, smooth_basis(verts, 80, 0.06, rng), tris, uvs, landmark_vertices(verts),
    )


def bfm_observation(model):
    gen = torch.Generator().manual_seed(1)
    gt = {"id": torch.randn(1, 80, generator=gen) * 0.5, "exp": torch.randn(1, 64, generator=gen) * 0.5,
          "tex": torch.randn(1, 80, generator=gen) * 0.5, "angles": torch.tensor([[0.1, -0.3, 0.05]]),
          "trans": torch.tensor([[0.02, -0.04, 0.1]]),
          "gamma": torch.cat([torch.tensor([-0.15, -0.1, 0.2, 0.15, 0.03, 0.0, 0.05, -0.03, 0.02])] * 3)[None]}
    verts = model.shape(gt["id"], gt["exp"])
    world = transform(verts, gt["angles"], gt["trans"])
    colors = shade(model.albedo(gt["tex"]), model.normals(verts) @ rotation_matrix(gt["angles"][0]).T, gt["gamma"])
    rendering = Renderer().render(world, model.triangles, colors)
    image = rendering.image[0].permute(1, 2, 0).clamp(0, 1).numpy()
    landmarks = Camera().project(world[:, model.landmark_ids])[0, :, :2].numpy()
    return make_observation(image, landmarks, face_mask=rendering.alpha[0, 0].numpy() > 0.5), gt


def rotation_error_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    r = rotation_matrix(a).T @ rotation_matrix(b)
    return math.degrees(math.acos(float(((r.trace() - 1) / 2).clamp(-1, 1))))


def timed_fits(fitter: Fitter, observation, repeats: int = REPEATS):
    fitter.fit(observation)  # warm-up (first-call allocations)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fitter.fit(observation)
        runs.append((time.perf_counter() - t0, result))
    wall = [t for t, _ in runs]
    stages = {k: statistics.median(r.timings[k] for _, r in runs) for k in runs[0][1].timings}
    return statistics.median(wall), min(wall), max(wall), stages, runs[-1][1]


def main() -> None:
    thread_counts = (1,)
    if "--threads" in sys.argv:
        thread_counts = tuple(int(t) for t in sys.argv[sys.argv.index("--threads") + 1].split(","))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"bench_fit @ {commit} · torch {torch.__version__} · {platform.processor() or platform.machine()} · "
          f"{torch.get_num_threads()} default threads")
    model = bfm_sized_model()
    obs, gt = bfm_observation(model)
    print(f"\n[BFM-sized] {model.num_vertices} vertices, {model.num_triangles} triangles, 80/64/80 components")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        med, lo, hi, stages, result = timed_fits(Fitter(model, Settings()), obs)
        drop = 1 - result.losses["photo_final"] / result.losses["photo_initial"]
        print(f"  threads={threads}: fit {med:.2f} s (min {lo:.2f}, max {hi:.2f}) · goal {GOALS['bfm']:.0f} s → "
              f"{med / GOALS['bfm']:.2f}× of budget")
        print("    stages: " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))
        print(f"    rotation error {rotation_error_deg(result.angles, gt['angles'][0]):.2f}°, landmarks "
              f"{result.losses['landmark_px']:.2f} px, photometric drop {100 * drop:.1f} %")

    from mvinvert_cli.align.aligner import Aligner
    from mvinvert_cli.io.images import load_image
    from mvinvert_cli.morphable.default import load_default_model
    from mvinvert_cli.parse.parser import FaceParser

    photos = [ROOT / "examples" / "facerec_obama.jpg", ROOT / "examples" / "skimage_astronaut.png"]
    t0 = time.perf_counter()
    default = load_default_model()
    print(f"\n[default model] {default.num_vertices} vertices, {default.num_triangles} triangles "
          f"(load {time.perf_counter() - t0:.2f} s once per process)")
    aligner, parser = Aligner("mediapipe"), FaceParser("polygon")
    for path in photos:
        if not path.is_file():
            continue
        t0 = time.perf_counter()
        observation = parser.parse(aligner.align(load_image(path)))
        align_s = time.perf_counter() - t0
        for threads in thread_counts:
            torch.set_num_threads(threads)
            med, lo, hi, stages, result = timed_fits(Fitter(default, Settings()), observation)
            print(f"  {path.name} threads={threads}: fit {med:.2f} s (min {lo:.2f}, max {hi:.2f}) · goal "
                  f"{GOALS['default']:.0f} s → {med / GOALS['default']:.2f}× · (align+parse {align_s:.2f} s) · "
                  f"landmarks {result.losses['landmark_px']:.2f} px")
            print("    stages: " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
