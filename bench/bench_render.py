"""Renderer benchmark: 224² face frames and 1024² UV-space bakes of a 70k-triangle mesh.

Mesh: a face-like ellipsoid cap, 189 × 189 grid = 35,721 vertices, 70,688 triangles (the size of
the BFM front model: 35,709 / 70,789), posed by the Deep3DFaceRecon camera so it fills the 224 crop
like a fitted face. Prints median and interquartile range of repeats (wall clock; seeds fixed) for
each stage, with torch's default thread count and with one thread, the process CPU time, and the
ratio of the wall time to the targets of issue 4 (≤ 30 ms per 224² frame, ≤ 0.3 s per 1024² bake).
On a shared machine (load average printed) the wall times of the multi-threaded run suffer most.
Not a pass/fail test.

Run: .venv/bin/python bench/bench_render.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mvinvert_cli.render.camera import Camera, transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks reuse the tests' mesh factory
from mvinvert_cli.render.bake import bake, uv_layout
from mvinvert_cli.render.lighting import shade
from mvinvert_cli.render.rasterize import interpolate, rasterize
from mvinvert_cli.render.renderer import Renderer, uv_fragments, uv_screen, view_pose
from tests.render.conftest import ellipsoid_grid  # noqa: E402

TARGET_FRAME_S = 0.030
TARGET_BAKE_S = 0.300


def face_mesh(side: int = 189) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tests' ellipsoid cap at benchmark size: side² vertices, 2(side−1)² faces."""
    return ellipsoid_grid(side, side)


def timeit(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, float, float]:
    """Median wall time, its interquartile range and the median process CPU time (seconds) of
    ``repeats`` timed calls after one warm-up. CPU time is less sensitive to other processes on a
    shared machine (it sums over threads)."""
    fn()
    times, cpu = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    times.sort()
    cpu.sort()
    q = len(times) // 4
    return times[len(times) // 2], times[-1 - q] - times[q], cpu[len(cpu) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    verts, faces, uvs = face_mesh()
    verts, faces, uvs = verts.to(device), faces.to(device), uvs.to(device)
    angles, translation = view_pose(10.0, -5.0, device=device)
    world = transform(verts[None], angles[None], translation[None])
    screen = Camera().project(world)
    normals = torch.nn.functional.normalize(verts, dim=-1)[None]
    albedo = torch.rand(1, verts.shape[0], 3, device=device)
    gamma = torch.zeros(1, 27, device=device)
    colors = torch.rand(1, verts.shape[0], 3, device=device)
    renderer = Renderer(backend="torch")
    uv_verts = uv_screen(uvs, 1024)[None]
    uv_frags = uv_fragments(uvs, faces, 1024)
    layout = uv_layout(uvs, faces, 1024)
    frame = rasterize(screen, faces, (224, 224), perspective_correct=True)

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"commit {commit or '?'} | torch {torch.__version__} | {platform.processor() or platform.machine()} "
        f"| device {device} | load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"mesh: {verts.shape[0]} vertices, {faces.shape[0]} triangles; "
        f"224² coverage {int(frame.mask.sum())} px; UV 1024² coverage {int(uv_frags.mask.sum())} texels"
    )
    stages = {
        "rasterize 224² (perspective)": lambda: rasterize(
            screen, faces, (224, 224), perspective_correct=True
        ),
        "interpolate 224² (RGB)": lambda: interpolate(frame, faces, colors),
        "Renderer.render 224² (project+raster+interp)": lambda: renderer.render(world, faces, colors),
        "render shaded 224² (SH + render)": lambda: renderer.render(
            world, faces, shade(albedo, normals, gamma)
        ),
        "rasterize UV 1024²": lambda: rasterize(uv_verts, faces, (1024, 1024)),
        "bake 1024² (cached layout)": lambda: bake(colors, faces, layout),
        "bake 1024² (layout + bake)": lambda: bake(colors, faces, uv_layout(uvs, faces, 1024)),
    }
    targets = {
        "Renderer.render 224² (project+raster+interp)": TARGET_FRAME_S,
        "bake 1024² (layout + bake)": TARGET_BAKE_S,
    }
    default_threads = torch.get_num_threads()
    thread_counts = (
        [default_threads] if device.type == "cuda" or default_threads == 1 else [default_threads, 1]
    )
    for threads in thread_counts:
        torch.set_num_threads(threads)
        print(f"\n-- {threads} thread(s) --")
        for name, fn in stages.items():
            with torch.no_grad():
                median, iqr, cpu = timeit(fn, args.repeats, device)
            line = f"{name:48s} {median * 1e3:9.1f} ms  (IQR {iqr * 1e3:6.1f}, CPU {cpu * 1e3:7.1f})"
            if name in targets:
                line += f"   {median / targets[name]:.2f}× of target {targets[name] * 1e3:.0f} ms"
            print(line)
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
