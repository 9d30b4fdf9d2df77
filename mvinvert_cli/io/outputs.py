"""Write a recovery to its output folder: meshes, textures, renders, preview contact sheet, result.json.

:func:`write_recovery` assembles everything from a :class:`~mvinvert_cli.records.Recovery` (renders,
contact-sheet panels, the result.json document), :func:`write_outputs` writes the files (PNGs encoded
in parallel, the texture encoded once for texture.png and mesh.glb) and result.json comes last. Called
inside :func:`~mvinvert_cli.io.atomic.atomic_dir`, so the folder appears complete or not at all.
Layout (DESIGN.md §1): ``mesh.obj`` + ``mesh.mtl`` + ``texture.png``, ``mesh.ply``, ``mesh.glb``,
``coarse_texture.png``, ``renders/<name>.png``, ``preview.png``, ``result.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .. import __version__
from ..records import Recovery
from ..render.renderer import Renderer
from ..viewer import render_views
from ..weights import file_sha256
from .atomic import atomic_write_bytes, atomic_write_text
from .images import to_uint8
from .meshes import TexturedMesh, write_glb, write_obj, write_ply
from .png import encode_pngs

PANEL = 256
PREVIEW_YAWS = (-45.0, 0.0, 45.0)  # novel views of renders/ and the preview: 512², 1× sampling (2.5×
# cheaper than 2× supersampling, the write stage's largest cost; `mvinvert render` keeps ssaa 2)
OVERLAY_SIZE = 448
RESULT_SCHEMA = "mvinvert/result-1"


def _panel(title: str, rgb: np.ndarray, size: int = PANEL) -> Image.Image:
    """One captioned tile of the contact sheet (image letterboxed into size × size)."""
    img = Image.fromarray(to_uint8(rgb))
    img.thumbnail((size, size), Image.LANCZOS)
    tile = Image.new("RGB", (size, size + 22), (24, 24, 24))
    tile.paste(img, ((size - img.width) // 2, 22 + (size - img.height) // 2))
    draw = ImageDraw.Draw(tile)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    draw.text((6, 3), title, fill=(235, 235, 235), font=font)
    return tile


def contact_sheet(panels: Sequence[tuple[str, np.ndarray]], columns: int = 4) -> np.ndarray:
    """Tile captioned panels into one RGB image (float [0, 1])."""
    tiles = [_panel(title, image) for title, image in panels]
    rows = (len(tiles) + columns - 1) // columns
    width, height = tiles[0].size
    sheet = Image.new("RGB", (columns * width, rows * height), (12, 12, 12))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * width, (i // columns) * height))
    return np.asarray(sheet, dtype=np.float32) / 255.0


def write_outputs(
    out_dir: Path,
    mesh: TexturedMesh,
    coarse_texture: np.ndarray,
    renders: Mapping[str, np.ndarray],
    panels: Sequence[tuple[str, np.ndarray]],
) -> dict[str, str]:
    """Write every output file but result.json into ``out_dir``; return {role: relative path}.

    All PNGs (textures, renders, preview) are encoded at once on a few threads (``io.png``); the
    texture's bytes go to texture.png and into mesh.glb, and a coarse texture that is the final one
    (no refinement) is encoded once.
    """
    out_dir = Path(out_dir)
    images = {"texture.png": mesh.texture, "coarse_texture.png": coarse_texture, "preview.png": contact_sheet(panels)}
    images.update({f"renders/{name}.png": image for name, image in renders.items()})
    encoded = encode_pngs(images)
    texture_png = encoded.pop("texture.png")
    write_obj(out_dir / "mesh.obj", mesh, texture_png=texture_png)
    outputs = {"mesh_obj": "mesh.obj", "mesh_mtl": "mesh.mtl", "texture": "texture.png"}
    write_ply(out_dir / "mesh.ply", mesh)
    outputs["mesh_ply"] = "mesh.ply"
    write_glb(out_dir / "mesh.glb", mesh, texture_png=texture_png)
    outputs["mesh_glb"] = "mesh.glb"
    (out_dir / "renders").mkdir(exist_ok=True)
    for rel, data in encoded.items():
        atomic_write_bytes(out_dir / rel, data)
    outputs["coarse_texture"] = "coarse_texture.png"
    outputs.update({f"render_{name}": f"renders/{name}.png" for name in renders})
    outputs["preview"] = "preview.png"
    return outputs


def jsonable(value: Any) -> Any:
    """``json.dumps`` default: arrays and numpy scalars as numbers, paths and anything else as text."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ---------------------------------------------------------------------- assembly of one recovery

def recovery_mesh(recovery: Recovery) -> TexturedMesh:
    """The output mesh: model-space vertices (front = +z, up = +y), UVs, final texture and colours."""
    return TexturedMesh(
        vertices=recovery.fit.vertices.detach().cpu().numpy(), faces=recovery.triangles.cpu().numpy(),
        uvs=recovery.uvs.detach().cpu().numpy(), texture=recovery.textures.texture,
        vertex_colors=recovery.colors.detach().cpu().numpy(),
    )


def fit_overlay(recovery: Recovery, size: int = OVERLAY_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(render of the final face in the photo pose on white, crop with that render blended 50 % and
    the target (green) and fitted (red) landmarks), both (size, size, 3)."""
    fit = recovery.fit
    rendering = Renderer(size=size, background=1.0).render(fit.world_vertices[None], recovery.triangles,
                                                          recovery.colors[None])
    render, mask = rendering.image[0].permute(1, 2, 0), rendering.alpha[0, 0].bool()
    crop = torch.from_numpy(np.ascontiguousarray(recovery.observation.crop.transpose(2, 0, 1)))[None]
    crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    crop = crop.to(render.device)
    blend = torch.where(mask[..., None], 0.5 * render + 0.5 * crop, crop).cpu().numpy().copy()
    scale = size / 224.0
    for points, colour in ((fit.target_landmarks, (0.1, 1.0, 0.2)), (fit.landmarks_2d, (1.0, 0.2, 0.1))):
        for x, y in points.detach().cpu().numpy() * scale:
            i, j = int(y), int(x)
            blend[max(0, i - 1):i + 2, max(0, j - 1):j + 2] = colour
    return render.clamp(0, 1).cpu().numpy(), blend


def _view_tag(view: tuple[float, float]) -> str:
    return f"yaw{view[0]:+g}_pitch{view[1]:+g}"


def _image(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy()


def renders_and_panels(recovery: Recovery, device: torch.device) -> tuple[dict[str, np.ndarray], list]:
    """``renders/`` images by name and the preview's (title, image) panels."""
    render, overlay = fit_overlay(recovery)
    renders: dict[str, np.ndarray] = {"input_pose": render, "overlay": overlay}
    novel = render_views(recovery_mesh(recovery), [(y, 0.0) for y in PREVIEW_YAWS], size=512, shading=0.15,
                         ssaa=1, device=device)
    for yaw, image in zip(PREVIEW_YAWS, novel, strict=True):
        renders[f"final_{_view_tag((yaw, 0.0))}"] = image
    refinement = recovery.refinement
    if refinement is not None:
        for view, coarse, inverted in zip(recovery.views, refinement.view_renders, refinement.inverted, strict=True):
            renders[f"coarse_{_view_tag(view)}"] = _image(coarse)
            renders[f"inverted_{_view_tag(view)}"] = _image(inverted)
    panels = [("input", recovery.photo.rgb), ("fit overlay", overlay),
              ("coarse UV", recovery.textures.coarse_texture), ("final UV", recovery.textures.texture)]
    panels += [(f"novel yaw {yaw:+g}", image) for yaw, image in zip(PREVIEW_YAWS, novel, strict=True)]
    if refinement is not None:
        tag = _view_tag(recovery.views[1 % len(recovery.views)])
        panels.append((f"inverted {tag}", renders[f"inverted_{tag}"]))
    else:
        panels.append(("fit render", render))
    return renders, panels


def result_document(recovery: Recovery, provenance: Mapping[str, Any], source: Path,
                    faces_found: int) -> dict[str, Any]:
    """The result.json body (schema :data:`RESULT_SCHEMA`; outputs are added by the writer).

    ``provenance`` is :meth:`Recoverer.provenance`: device, settings, model/solver backends, load times.
    """
    obs, fit, mask = recovery.observation, recovery.fit, recovery.textures.mask
    inside = recovery.textures.texture[mask]
    face = obs.summary()
    face.pop("dense478", None)
    refinement = recovery.refinement
    return {
        "schema": RESULT_SCHEMA,
        "mvinvert_version": __version__,
        "status": "ok",
        "input": {"path": str(source), "sha256": file_sha256(source), "size": list(recovery.photo.original_size),
                  "used_size": list(recovery.photo.size), "notes": list(recovery.photo.notes)},
        "device": provenance["device"],
        "settings": provenance["settings"],
        "faces_found": faces_found,
        "face": face,
        "backends": {"align": obs.aligner, "parse": obs.parser, "model": provenance["model"],
                     "fit": fit.backend, "fit_init": fit.init,
                     "invert": refinement.backend if refinement is not None else None,
                     "poisson": provenance["poisson"], "raster": "torch"},
        "degraded": list(recovery.degraded),
        "model": recovery.model_summary,
        "fit": fit.summary(),
        "texture": {
            "size": provenance["settings"]["texture_size"],
            "island_texels": int(mask.sum()),
            "filled_fraction": float(np.isfinite(inside).all(-1).mean()) if inside.size else 0.0,
            "photo_seen_vertices": round(float((recovery.samples.coarse_scores > 0).float().mean()), 4),
            "refined": refinement is not None,
            "stitch_notes": list(refinement.notes) if refinement is not None else [],
        },
        "stages": [r.to_json() for r in recovery.stages],
        "load_seconds": dict(provenance["load_seconds"]),
    }


def write_recovery(stage_dir: Path, recovery: Recovery, provenance: Mapping[str, Any], source: Path,
                   faces_found: int, timings: dict[str, float]) -> dict[str, Any]:
    """Write one recovery into ``stage_dir`` (already a staging folder); return result.json's body.

    ``timings["write"]`` covers the renders, the preview and every file but result.json itself.
    """
    start = time.perf_counter()
    renders, panels = renders_and_panels(recovery, torch.device(provenance["device"]))
    document = result_document(recovery, provenance, source, faces_found)
    outputs = write_outputs(stage_dir, recovery_mesh(recovery), recovery.textures.coarse_texture, renders, panels)
    timings = {**timings, **{r.name: round(r.seconds, 4) for r in recovery.stages}}
    timings["write"] = round(time.perf_counter() - start, 4)
    timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 4)
    document["timings"] = timings
    document["outputs"] = {**outputs, "result": "result.json"}
    atomic_write_text(stage_dir / "result.json", json.dumps(document, indent=2, default=jsonable) + "\n")
    return document
