"""Write a multi-photo recovery: the single-photo layout (``io.outputs``) plus every input's record.

The files are those of :func:`~mvinvert_cli.io.outputs.write_recovery` for the reference photo's
:class:`~mvinvert_cli.records.Recovery` (which carries the stitched texture), plus
``renders/sources_uv.png`` (the UV map coloured by source photo). result.json gains ``inputs`` (per
photo: path, sha256, status and reason, pose, landmark error, gain, share of the final texture's
triangles) and ``multiview`` (photos used, fill share, notes); the preview shows every input photo in
its palette colour next to the source map.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..records_multi import USED, MultiRecovery
from ..texture.multiview import SOURCE_PALETTE
from ..weights import file_sha256
from .atomic import atomic_write_text
from .outputs import jsonable, recovery_mesh, renders_and_panels, result_document, write_outputs

SCHEMA = "mvinvert/result-multi-photo-1"
COLOUR_NAMES = ("red", "blue", "green", "yellow", "purple", "cyan", "pink", "brown")


def _framed(rgb: np.ndarray, colour: tuple[float, float, float], width: int = 12) -> np.ndarray:
    """The photo with a border of its source colour (so the preview ties photos to the source map)."""
    out = np.array(rgb, dtype=np.float32, copy=True)
    border = max(2, int(width * max(out.shape[:2]) / 512))
    out[:border], out[-border:], out[:, :border], out[:, -border:] = colour, colour, colour, colour
    return out


def write_multi_recovery(stage_dir: Path, multi: MultiRecovery, provenance: Mapping[str, Any],
                         timings: dict[str, float]) -> dict[str, Any]:
    """Write ``multi`` into ``stage_dir`` (a staging folder); return result.json's body."""
    start = time.perf_counter()
    recovery = multi.recovery
    renders, panels = renders_and_panels(recovery, torch.device(provenance["device"]))
    renders["sources_uv"] = multi.source_map
    used = [p for p in multi.inputs if p.status == USED]
    thumbs = [(f"{'ref ' if i == 0 else ''}{p.path.name[:16]} {COLOUR_NAMES[i % 8]} {p.triangle_share:.0%}",
               _framed(image, SOURCE_PALETTE[i % len(SOURCE_PALETTE)]))
              for i, (p, image) in enumerate(zip(used, (photo.rgb for photo in multi.photos), strict=True))]
    rest = [(title, image) for title, image in panels if title != "input"]
    panels = [*thumbs, (f"sources UV (grey: fill {multi.fill_share:.0%})", multi.source_map), *rest]
    reference = used[0].path
    document = result_document(recovery, provenance, reference, faces_found=1)
    document["schema"] = SCHEMA
    document["inputs"] = [{**p.to_json(), "sha256": file_sha256(p.path) if p.path.is_file() else None}
                          for p in multi.inputs]
    document["multiview"] = {"photos": len(multi.inputs), "used": len(used), "reference": str(reference),
                             "fill_share": multi.fill_share, "identity_backend": provenance.get("identity"),
                             "notes": list(multi.notes)}
    timings = {**timings, **{r.name: round(r.seconds, 4) for r in recovery.stages}}
    timings["write"] = round(time.perf_counter() - start, 4)
    timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 4)
    document["timings"] = timings
    outputs = write_outputs(stage_dir, recovery_mesh(recovery), recovery.textures.coarse_texture, renders, panels)
    document["outputs"] = {**outputs, "result": "result.json"}
    atomic_write_text(stage_dir / "result.json", json.dumps(document, indent=2, default=jsonable) + "\n")
    return document
