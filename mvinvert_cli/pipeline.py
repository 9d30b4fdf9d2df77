"""The recovery pipeline (DESIGN.md §1): a :class:`Recoverer` loads every model once and runs

    align → parse → fit → sample T_uv → T_coarse → [render views → invert → resample → stitch] → bake

on each photo, one call per stage, each returning a frozen record (``records``); the result is a
:class:`~mvinvert_cli.records.Recovery`. :func:`recover_to_directory` writes it atomically.

Texture colours are "photo colours" throughout (the photo's own lighting baked in, as in MvInvert):
T_uv is sampled from the full-resolution photo, T_pca is lit by the fitted SH lighting before it fills
the holes (§3.1), the synthetic views render T_coarse unlit, and T_refine stitches the inverted views
(Eq. 5–6) anchored to the photo (λ). The stage maths lives in the stage packages (align/, parse/,
morphable/, texture/, invert/) and in ``refine`` (the refine stage, shared with eval and training);
output assembly in io/outputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .align import Aligner
from .align.observation import Observation
from .config import Settings, resolve_device
from .errors import NoFaceError
from .invert.inverter import Inverter
from .invert.optimize import OptimizeSettings
from .io.atomic import atomic_dir, atomic_write_text
from .io.images import Photo, load_image
from .io.outputs import write_recovery
from .io.paths import check_output_dir
from .morphable.fit import Fitter
from .morphable.loading import load_face_model
from .parse import FaceParser
from .records import ProgressCallback, Recovery, StageLog, UVTextures
from .refine import REFINE_STEPS, RefineInputs, refine, refine_settings
from .render.bake import uv_layout
from .render.camera import Camera
from .texture.coarse import complete_coarse
from .texture.detail import bake_with_detail, photo_detail
from .texture.photo import photo_tensor, sample_photo
from .texture.poisson import PoissonSolver
from .weights import locate


class Recoverer:
    """Holds every loaded model (aligner, parser, morphable model + fitter, Poisson solver, UV
    layout, inverter) and recovers photos with them; build one per process and reuse it.

    Raises (from the constructor):
        UsageError: bad device or backend names. WeightsError: a present weights file is unusable.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.device = resolve_device(self.settings.device)
        trust = self.settings.trust_pickle
        self.degraded: list[str] = []
        self.load_seconds: dict[str, float] = {}

        start = time.perf_counter()
        self.aligner = Aligner(self.settings.aligner, device=self.device, trust_pickle=trust)
        self.parser = FaceParser(self.settings.parser, device=self.device, trust_pickle=trust)
        self.degraded += self.aligner.notes + self.parser.notes
        self.load_seconds["align+parse"] = time.perf_counter() - start

        start = time.perf_counter()
        face_model = load_face_model(device=self.device, trust_pickle=trust)
        self.model = face_model.model
        self.degraded += [f"3DMM: {note}" for note in face_model.degraded]
        if self.model.embed_ids is not None and self.aligner.backend != "mediapipe":
            self.aligner = Aligner("mediapipe", device=self.device)
            self.degraded.append("align: the default face model needs MediaPipe's dense points; using MediaPipe")
        self.fitter = Fitter(self.model, self.settings, regressor=face_model.regressor)
        self.solver = PoissonSolver(self.model.mean_shape.detach().cpu(), self.model.triangles.cpu(),
                                    lam=self.settings.stitch_lambda)
        self.uv_layout = uv_layout(self.model.uvs, self.model.triangles, self.settings.texture_size)
        self.refine_settings = refine_settings(self.settings)
        self.load_seconds["model+solver"] = time.perf_counter() - start

        start = time.perf_counter()
        self.inverter, self.refine_note = self._load_inverter()
        if self.refine_note:
            self.degraded.append(self.refine_note)
        self.load_seconds["inverter"] = time.perf_counter() - start

    def _load_inverter(self) -> tuple[Inverter | None, str]:
        if not self.settings.refine:
            return None, "refine skipped: --no-refine"
        s = self.settings
        options = dict(iterations=s.invert_iterations, optimize=OptimizeSettings(steps=s.optimize_steps))
        if s.encoder:
            inverter = Inverter.from_paths(locate("stylegan2"), s.encoder, self.device, s.trust_pickle, **options)
        else:
            inverter = Inverter.from_weights(self.device, trust_pickle=s.trust_pickle, **options)
        if inverter is None:
            return None, "refine skipped: no generator weights (stylegan2-ffhq-config-f.pt or a ReStyle checkpoint)"
        self.degraded += [f"invert: {n}" for n in inverter.notes if "no ReStyle encoder" in n]
        return inverter, ""

    def provenance(self) -> dict[str, Any]:
        """What result.json records about this process: device, settings, model and solver, load times."""
        return {"device": str(self.device), "settings": self.settings.to_dict(), "model": self.model.name,
                "poisson": self.solver.backend, "load_seconds": {k: round(v, 3) for k, v in self.load_seconds.items()}}

    # ------------------------------------------------------------------ stages
    def detect(self, photo: Photo) -> list[Observation]:
        return self.aligner.detect(photo)

    def recover(self, photo: Photo, face_index: int | None = None, observation: Observation | None = None,
                progress: ProgressCallback | None = None) -> Recovery:
        """Run every stage on one face of ``photo`` (``face_index`` defaults to the settings').

        ``progress(stage, event)`` is told "start" and "done" of each stage as it runs.
        """
        torch.manual_seed(self.settings.seed)
        log = StageLog(progress)
        degraded = list(self.degraded)
        index = self.settings.face_index if face_index is None else face_index
        with log.stage("align", self.aligner.backend) as st:
            obs = observation if observation is not None else self.aligner.align(photo, face_index=index)
            st.backend = obs.aligner
        with log.stage("parse", self.parser.backend) as st:
            obs = self.parser.parse(obs)
            if self.parser.backend != "bisenet":
                st.status, st.note = "degraded", "landmark polygons + skin model (no BiSeNet weights)"
        with log.stage("fit") as st:
            fit = self.fitter.fit(obs)
            st.backend = f"{fit.model_name} / {fit.backend} / init {fit.init}"
            st.note = f"landmark error {fit.losses.get('landmark_px', float('nan')):.2f} px"
            degraded += [f"fit: {n}" for n in fit.notes]
        with log.stage("sample") as st:
            samples = sample_photo(photo, obs, fit.world_vertices[None], fit.world_normals[None],
                                   self.model.triangles, Camera().resized(self.settings.render_size),
                                   self.settings.vis_threshold_photo, self.settings.vis_threshold_view)
            st.note = f"{float((samples.coarse_scores > 0).float().mean()):.0%} of vertices seen by the photo"
        with log.stage("coarse", self.solver.backend) as st:
            coarse = complete_coarse(self.solver, samples.t_uv, samples.coarse_scores, fit.t_pca,
                                     fit.world_normals, fit.gamma)
            st.note = "; ".join(coarse.notes)
        refinement = None
        if self.inverter is None:
            for name in REFINE_STEPS:
                log.skip(name, self.refine_note)
        else:
            refined = refine(self.model, self.solver, self.inverter.invert,
                             RefineInputs.one(fit.vertices, fit.translation, samples.t_uv, samples.photo_scores,
                                              coarse.t_coarse), self.refine_settings, progress=log.progress)
            log.records += refined.stages
            refinement = refined.face(0)
        with log.stage("bake") as st:
            faces = self.model.triangles
            detail = photo_detail(photo_tensor(photo, self.device), samples.photo_screen, samples.t_uv,
                                  samples.coarse_scores, faces, self.uv_layout)
            final = refinement.colors if refinement is not None else coarse.t_coarse
            texture, mask = bake_with_detail(final, faces, self.uv_layout, detail)
            coarse_texture = texture if refinement is None else bake_with_detail(
                coarse.t_coarse, faces, self.uv_layout, detail)[0]
            st.note = f"{self.settings.texture_size}² UV, photo detail where seen"
        return Recovery(
            photo=photo, observation=obs, fit=fit, samples=samples, coarse=coarse, refinement=refinement,
            textures=UVTextures(texture, coarse_texture, mask), views=self.refine_settings.views,
            stages=tuple(log.records), degraded=tuple(degraded), model_summary=self.model.summary(), triangles=self.model.triangles,
            uvs=self.model.uvs,
        )


def recover_to_directory(recoverer: Recoverer, source: str | Path, out_dir: str | Path, force: bool = False,
                         all_faces: bool = False, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Load ``source``, recover its face (or every face), and write ``out_dir`` atomically.

    Raises:
        InputError / NoFaceError / WeightsError / OutputError: with a one-line message.
    """
    source, out_dir = Path(source), Path(out_dir)
    check_output_dir(out_dir, force, [source])
    start = time.perf_counter()
    photo = load_image(source)
    timings = {"load_image": round(time.perf_counter() - start, 4)}
    if all_faces:
        start = time.perf_counter()
        observations = recoverer.detect(photo)
        timings["detect"] = round(time.perf_counter() - start, 4)
        if not observations:
            raise NoFaceError(f"{source}: no face found")
    with atomic_dir(out_dir, overwrite=force) as stage:
        if not all_faces:
            recovery = recoverer.recover(photo, progress=progress)
            return _write(stage, recovery, recoverer, source, recovery.observation.faces_found, timings, progress)
        documents = []
        for obs in observations:
            (stage / f"face_{obs.index}").mkdir()
            recovery = recoverer.recover(photo, observation=obs, progress=progress)
            documents.append(_write(stage / f"face_{obs.index}", recovery, recoverer, source, len(observations),
                                    timings, progress))
        summary = {"schema": "mvinvert/result-multi-1", "mvinvert_version": __version__, "status": "ok",
                   "input": {"path": str(source)}, "faces": len(documents),
                   "timings": {"total": round(sum(d["timings"]["total"] for d in documents), 4)},
                   "outputs": {f"face_{i}": f"face_{i}/result.json" for i in range(len(documents))}}
        atomic_write_text(stage / "result.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _write(stage: Path, recovery: Recovery, recoverer: Recoverer, source: Path, faces_found: int,
           timings: dict[str, float], progress: ProgressCallback | None) -> dict[str, Any]:
    if progress is not None:
        progress("write", "start")
    document = write_recovery(stage, recovery, recoverer.provenance(), source, faces_found, timings)
    if progress is not None:
        progress("write", "done")
    return document
