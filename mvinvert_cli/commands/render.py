"""``mvinvert render``: look at any textured OBJ/PLY/GLB (ours or another tool's) from chosen views.

Examples:
    mvinvert render out/mesh.obj --views 0,30,-30
    mvinvert render out/mesh.glb --views 0:-15,45:0 --size 1024 -o shots/
    mvinvert render out/mesh.obj --turntable spin.gif
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ..config import parse_views, resolve_device
from ..errors import OutputError, UsageError
from ..io.atomic import atomic_write
from ..io.images import save_image
from ._common import DeviceOpt, JsonOpt, device_name, emit_json, log


def _write_animation(path: Path, frames: list[np.ndarray], fps: int) -> None:
    from PIL import Image

    from ..io.images import to_uint8

    images = [Image.fromarray(to_uint8(f)) for f in frames]
    suffix = path.suffix.lower()
    if suffix == ".gif":
        atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                      duration=int(1000 / fps), loop=0))
    elif suffix in (".mp4", ".webm"):
        try:
            import imageio.v3 as iio

            atomic_write(path, lambda tmp: iio.imwrite(tmp, np.stack([np.asarray(i) for i in images]), fps=fps,
                                                       extension=suffix))
        except (ImportError, ValueError, OSError, RuntimeError) as exc:
            raise UsageError(f"cannot write {suffix} ({type(exc).__name__}); install imageio-ffmpeg or use .gif") from exc
    else:
        raise UsageError(f"--turntable {path.name}: use a .gif, .mp4 or .webm file name")


def command(
    mesh: Annotated[Path, typer.Argument(help="Mesh file: OBJ (+MTL/texture), PLY (vertex colours) or GLB.")],
    views: Annotated[str, typer.Option("--views", help="Yaws, or yaw:pitch pairs, in degrees.")] = "0,30,-30",
    pitch: Annotated[float, typer.Option("--pitch", help="Pitch added to every view, degrees.")] = 0.0,
    size: Annotated[int, typer.Option("--size", min=32, max=4096, help="Image side in pixels.")] = 512,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder [default: ./<stem>_renders/].")] = None,
    turntable: Annotated[Path | None, typer.Option("--turntable", help="Also write a turntable .gif/.mp4.")] = None,
    frames: Annotated[int, typer.Option("--frames", min=4, max=720, help="Turntable frames.")] = 36,
    shading: Annotated[float, typer.Option("--shading", min=0.0, max=1.0, help="Neutral light strength.")] = 0.3,
    json_out: JsonOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Render a mesh with a neutral light; writes one PNG per view (and an optional turntable)."""
    from ..io.meshes import read_mesh
    from ..viewer import render_views, turntable_views

    dev = resolve_device(device_name(device))
    parsed = [(yaw, p + pitch) for yaw, p in parse_views(views)]
    textured = read_mesh(mesh)
    out_dir = out if out is not None else Path.cwd() / f"{mesh.stem}_renders"
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} exists and is not a folder")
    written = []
    images = render_views(textured, parsed, size=size, shading=shading, device=dev)
    for (yaw, p), image in zip(parsed, images, strict=True):
        path = out_dir / f"{mesh.stem}_yaw{yaw:+g}_pitch{p:+g}.png"
        if path.resolve() == mesh.resolve():
            raise OutputError(f"refusing to overwrite the input {mesh}")
        written.append(str(save_image(path, image)))
    if turntable is not None:
        if turntable.resolve() == mesh.resolve():
            raise OutputError(f"refusing to overwrite the input {mesh}")
        frames_rgb = render_views(textured, turntable_views(frames, pitch=pitch), size=size, shading=shading, device=dev)
        _write_animation(turntable, frames_rgb, fps=max(1, frames // 3))
        written.append(str(turntable))
    source = "texture" if textured.texture is not None else ("vertex colours" if textured.vertex_colors is not None
                                                           else "none (grey)")
    if json_out:
        emit_json({"mesh": str(mesh), "vertices": len(textured.vertices), "faces": len(textured.faces),
                   "colour_source": source, "views": [list(v) for v in parsed], "files": written})
    else:
        log(f"{len(textured.vertices)} vertices, {len(textured.faces)} faces, colour from {source}")
        for path in written:
            typer.echo(path)
