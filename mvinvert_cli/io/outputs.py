"""Write a recovery to its output folder: meshes, textures, renders, preview contact sheet, result.json.

Called inside :func:`~mvinvert_cli.io.atomic.atomic_dir`, so the folder appears complete or not at all.
Layout (DESIGN.md §1): ``mesh.obj`` + ``mesh.mtl`` + ``texture.png``, ``mesh.ply``, ``mesh.glb``,
``coarse_texture.png``, ``renders/<name>.png``, ``preview.png``, ``result.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_write_text
from .images import save_image, to_uint8
from .meshes import TexturedMesh, write_glb, write_obj, write_ply

PANEL = 256


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
    result: dict[str, Any],
) -> dict[str, str]:
    """Write every output file into ``out_dir``; return {role: relative path} (also stored in result.json)."""
    out_dir = Path(out_dir)
    outputs: dict[str, str] = {}
    write_obj(out_dir / "mesh.obj", mesh)
    outputs.update(mesh_obj="mesh.obj", mesh_mtl="mesh.mtl", texture="texture.png")
    write_ply(out_dir / "mesh.ply", mesh)
    outputs["mesh_ply"] = "mesh.ply"
    write_glb(out_dir / "mesh.glb", mesh)
    outputs["mesh_glb"] = "mesh.glb"
    save_image(out_dir / "coarse_texture.png", coarse_texture)
    outputs["coarse_texture"] = "coarse_texture.png"
    (out_dir / "renders").mkdir(exist_ok=True)
    for name, image in renders.items():
        rel = f"renders/{name}.png"
        save_image(out_dir / rel, image)
        outputs[f"render_{name}"] = rel
    save_image(out_dir / "preview.png", contact_sheet(panels))
    outputs["preview"] = "preview.png"
    result = {**result, "outputs": {**outputs, "result": "result.json"}}
    atomic_write_text(out_dir / "result.json", json.dumps(result, indent=2, default=_jsonable) + "\n")
    result_outputs = result["outputs"]
    return result_outputs


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)
