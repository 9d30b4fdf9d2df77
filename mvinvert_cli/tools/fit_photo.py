"""Fit the face model to one photo and write the fit folder (``mvinvert fit``).

fit.npz holds the coefficients (Deep3DFaceRecon order id | exp | tex | angles | gamma | trans),
model-space and camera-space vertices, normals, T_pca and landmarks; fit.json the same in readable
form with backends, losses, timings and notes; overlay.png / overlay_textured.png the fitted shape
(grey albedo, fitted light) and T_pca over the 224² crop; mesh.obj / mesh.ply the model-space mesh
coloured by T_pca.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..align.aligner import Aligner, select_face
from ..config import Settings, resolve_device
from ..io.atomic import atomic_dir, atomic_open, atomic_write_text
from ..io.images import Photo, save_image
from ..io.meshes import TexturedMesh, write_obj, write_ply
from ..morphable import ModelChoice
from ..morphable.fit import Fitter, render_overlay
from ..morphable.loading import load_face_model
from ..parse.parser import FaceParser

OUTPUTS = ("fit.npz", "fit.json", "overlay.png", "overlay_textured.png", "mesh.obj", "mesh.mtl", "mesh.ply")


@dataclass(frozen=True)
class FitRun:
    """What :func:`fit_to_directory` did: the summary for ``--json``, and notes split by kind.

    ``loaded`` are the model/backend choices (informational), ``warnings`` the face's and the fit's
    own notes (retries, several faces, degraded fit terms).
    """

    summary: dict[str, Any]
    loaded: tuple[str, ...]
    warnings: tuple[str, ...]


def fit_to_directory(picture: Photo, out_dir: Path, model: ModelChoice = ModelChoice.auto, aligner: str = "auto",
                     parser: str = "auto", face_index: int = 0, device: str = "auto", trust_pickle: bool = False,
                     force: bool = False) -> FitRun:
    """Align, parse and fit face ``face_index`` of ``picture``; write :data:`OUTPUTS` into ``out_dir``.

    Raises:
        NoFaceError / WeightsError / UsageError / OutputError: with a one-line message.
    """
    dev = resolve_device(device)
    loaded = load_face_model(model, device=dev, trust_pickle=trust_pickle)
    face_model, notes = loaded.model, [*loaded.degraded, *loaded.notes]
    face_aligner = Aligner(aligner, device=dev, trust_pickle=trust_pickle)
    face_parser = FaceParser(parser, device=dev, trust_pickle=trust_pickle)
    notes += face_aligner.notes + face_parser.notes
    name = picture.path.name if picture.path is not None else "image"
    observation = face_parser.parse(select_face(face_aligner.detect(picture), face_index, name,
                                                face_aligner.backend))
    result = Fitter(face_model, Settings(device=str(dev)), regressor=loaded.regressor).fit(observation)

    crop = observation.crop_tensor(dev)
    overlay = render_overlay(face_model, result, crop, textured=False)[0].permute(1, 2, 0).cpu().numpy()
    textured = render_overlay(face_model, result, crop, textured=True)[0].permute(1, 2, 0).cpu().numpy()
    arrays = result.arrays()
    mesh = TexturedMesh(arrays["vertices"], face_model.triangles.cpu().numpy(), uvs=face_model.uvs.cpu().numpy(),
                        vertex_colors=np.nan_to_num(arrays["t_pca"], nan=0.5))
    warnings = (*observation.notes, *result.notes)
    record = {
        "photo": str(picture.path),
        "model": face_model.summary(),
        "fit": result.summary(),
        "face": {"index": observation.index, "faces_found": observation.faces_found,
                 "box": [round(float(v), 2) for v in observation.box],
                 "aligner": observation.aligner, "parser": observation.parser,
                 "crop_matrix": np.round(observation.crop_matrix, 6).tolist()},
        "notes": [*notes, *warnings],
    }
    with atomic_dir(out_dir, overwrite=force) as stage:
        with atomic_open(stage / "fit.npz", "wb") as handle:
            np.savez(handle, **arrays, crop_matrix=observation.crop_matrix, triangles=mesh.faces)
        atomic_write_text(stage / "fit.json", json.dumps(record, indent=1) + "\n")
        save_image(stage / "overlay.png", overlay)
        save_image(stage / "overlay_textured.png", textured)
        write_obj(stage / "mesh.obj", mesh)
        write_ply(stage / "mesh.ply", mesh)
    summary = {"outputs": {n: str(out_dir / n) for n in OUTPUTS}, "model": face_model.name,
               "faces_found": observation.faces_found, **result.summary()}
    return FitRun(summary, tuple(notes), warnings)
