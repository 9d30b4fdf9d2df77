"""``mvinvert render``: look at any textured OBJ/PLY/GLB (ours or another tool's) from chosen views.

Examples:
    mvinvert render out/mesh.obj --views 0,30,-30
    mvinvert render out/mesh.glb --views 0:-15,45:0 --size 1024 -o shots/
    mvinvert render out/mesh.obj --turntable spin.gif --frames 48
    mvinvert render head.obj --turntable spin.mp4 --motion spin
"""

from __future__ import annotations

import importlib.util
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ..config import parse_views
from ..errors import OutputError, UsageError
from ._common import OPTIONS, JsonOpt, absolute, console, emit_json, log, output_option
from ._progress import StageProgress

VIDEO_CODECS = {".mp4": "libx264", ".webm": "libvpx-vp9"}
FRAMES_PER_CHUNK = 8  # turntable frames rendered per call (progress granularity, bounded memory)


class Motion(str, Enum):  # noqa: UP042 - Typer lists str-Enum values
    """Turntable motion: full 360° spin, ±75° sweep, or auto (spin when the mesh has a back)."""

    auto = "auto"
    spin = "spin"
    sweep = "sweep"


def _check_turntable(path: Path, mesh: Path) -> None:
    """Reject a bad --turntable name, or a video one without an encoder, before any rendering."""
    suffix = path.suffix.lower()
    if suffix != ".gif" and suffix not in VIDEO_CODECS:
        raise UsageError(f"--turntable {path.name}: use a .gif, .mp4 or .webm file name")
    if suffix in VIDEO_CODECS and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise UsageError(f"--turntable {path.name}: writing {suffix} needs an ffmpeg encoder: "
                         "pip install 'mvinvert[video]' (imageio-ffmpeg ships one), or use a .gif name")
    if path.resolve() == mesh.resolve():
        raise OutputError(f"refusing to overwrite the input {mesh}")


def _write_animation(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """GIF through Pillow (every frame kept), MP4/WebM through imageio-ffmpeg's bundled ffmpeg."""
    from PIL import Image

    from ..io.atomic import atomic_write
    from ..io.images import to_uint8

    pixels = [to_uint8(f) for f in frames]
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(p) for p in pixels]
        atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                      duration=int(1000 / fps), loop=0, optimize=False,
                                                      disposal=1))
        return
    import imageio_ffmpeg

    def encode(tmp: Path) -> None:
        height, width = pixels[0].shape[:2]
        writer = imageio_ffmpeg.write_frames(str(tmp), (width, height), fps=fps, codec=VIDEO_CODECS[path.suffix.lower()],
                                             pix_fmt_out="yuv420p", macro_block_size=2, output_params=["-f", path.suffix[1:]])
        writer.send(None)
        for frame in pixels:
            writer.send(np.ascontiguousarray(frame))
        writer.close()

    atomic_write(path, encode)


def command(
    mesh: Annotated[Path, typer.Argument(help="Mesh file: OBJ (+MTL/texture), PLY (vertex colours) or GLB.", readable=False)],
    views: Annotated[str, typer.Option("--views", help="Yaws, or yaw:pitch pairs, in degrees.")] = "0,30,-30",
    pitch: Annotated[float, typer.Option("--pitch", help="Pitch added to every view, degrees.")] = 0.0,
    size: Annotated[int, typer.Option("--size", min=32, max=4096, help="Image side in pixels.")] = 512,
    output: output_option("./<stem>_renders/") = None,
    turntable: Annotated[Path | None, typer.Option("--turntable", help="Also write a turntable .gif, .mp4 or .webm.")] = None,
    frames: Annotated[int, typer.Option("--frames", min=4, max=720, help="Turntable frames (exactly this many).")] = 36,
    motion: Annotated[Motion, typer.Option("--motion", help="Turntable motion: spin (360°), sweep (±75°), or auto: "
                                                            "spin when the mesh has a back, else sweep.")] = Motion.auto,
    shading: Annotated[float, typer.Option("--shading", min=0.0, max=1.0, help="Neutral light strength.")] = 0.3,
    json_out: JsonOpt = False,
) -> None:
    """Render a mesh with a neutral light; writes one PNG per view (and an optional turntable).

    The turntable of a face-only mesh (no back, like ours) sweeps ±75° by default; a mesh with a back
    spins 360°. Which one was used is printed (and in --json). MP4/WebM need imageio-ffmpeg.
    """
    from ..io.images import save_image
    from ..io.meshes import read_mesh

    parsed = [(yaw, p + pitch) for yaw, p in parse_views(views)]
    out_dir = output if output is not None else Path.cwd() / f"{mesh.stem}_renders"
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} exists and is not a folder")
    if turntable is not None:
        _check_turntable(turntable, mesh)
    textured = read_mesh(mesh)  # a bad mesh is reported before torch is imported

    from ..config import resolve_device  # lazy: torch, for start-up speed
    from ..viewer import has_back, render_views, turntable_views

    dev = resolve_device(OPTIONS.device)
    source = "texture" if textured.texture is not None else ("vertex colours" if textured.vertex_colors is not None
                                                           else "none (grey)")
    log(f"{len(textured.vertices)} vertices, {len(textured.faces)} faces, colour from {source}")
    written = []
    spin = None
    with StageProgress(console, enabled=not OPTIONS.quiet) as progress:
        progress("views", "start")
        images = render_views(textured, parsed, size=size, shading=shading, device=dev)
        for (yaw, p), image in zip(parsed, images, strict=True):
            path = out_dir / f"{mesh.stem}_yaw{yaw:+g}_pitch{p:+g}.png"
            if path.resolve() == mesh.resolve():
                raise OutputError(f"refusing to overwrite the input {mesh}")
            written.append(str(save_image(path, image)))
        progress("views", "done")
        if turntable is not None:
            spin = motion is Motion.spin or (motion is Motion.auto and has_back(textured))
            what = "360° spin" if spin else "±75° sweep"
            why = "" if motion is not Motion.auto else (" (the mesh has a back)" if spin else " (face-only mesh)")
            log(f"turntable: {frames} frames, {what}{why}")
            poses = turntable_views(frames, pitch=pitch, full_spin=spin)
            frames_rgb: list[np.ndarray] = []
            for start in range(0, len(poses), FRAMES_PER_CHUNK):
                chunk = f"turntable frames {start + 1}-{min(start + FRAMES_PER_CHUNK, len(poses))}/{len(poses)}"
                progress(chunk, "start")
                frames_rgb += render_views(textured, poses[start:start + FRAMES_PER_CHUNK], size=size,
                                           shading=shading, device=dev)
                progress(chunk, "done")
            progress("encode", "start")
            _write_animation(turntable, frames_rgb, fps=max(1, frames // 3))
            progress("encode", "done")
            written.append(str(turntable))
    if json_out:
        emit_json({"output": absolute(out_dir), "mesh": str(mesh), "vertices": len(textured.vertices),
                   "faces": len(textured.faces), "colour_source": source, "views": [list(v) for v in parsed],
                   "turntable": None if turntable is None else
                   {"path": absolute(turntable), "frames": frames, "motion": "spin" if spin else "sweep"},
                   "files": written})
    else:
        for path in written:
            typer.echo(path)
