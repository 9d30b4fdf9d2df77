"""The recovery pipeline (DESIGN.md §1): a :class:`Recoverer` loads every model once and runs

    align → parse → fit → sample T_uv → T_coarse → [render views → invert → resample → stitch] → bake

on each photo, one call per stage, each returning a frozen record (``records``); the result is a
:class:`~mvinvert_cli.records.Recovery`. :func:`recover_to_directory` writes it atomically.

Texture colours are "photo colours" throughout (the photo's own lighting baked in, as in MvInvert):
T_uv is sampled from the full-resolution photo, T_pca is lit by the fitted SH lighting before it fills
the holes (§3.1), the synthetic views render T_coarse unlit, and T_refine stitches the inverted views
(Eq. 5–6) anchored to the photo (λ). The stage maths lives in the stage packages (align/, parse/,
morphable/, texture/, invert/); output assembly in io/outputs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .align import Aligner
from .align.observation import Observation
from .config import Settings, resolve_device
from .errors import InputError, NoFaceError, OutputError
from .invert.inverter import Inverter
from .invert.optimize import OptimizeSettings
from .io.atomic import atomic_dir, atomic_write_text
from .io.images import Photo, load_image
from .io.outputs import write_recovery
from .morphable.fit import FitResult, Fitter
from .morphable.loading import load_face_model
from .parse import FaceParser
from .records import ProgressCallback, Recovery, Refinement, StageLog, UVTextures
from .render.bake import uv_layout
from .render.camera import Camera, transform
from .render.rasterize import interpolate, rasterize, select_backend
from .texture.coarse import complete_coarse
from .texture.detail import bake_with_detail, photo_detail
from .texture.photo import photo_tensor, sample_photo
from .texture.poisson import PoissonSolver
from .texture.sample import sample_vertices
from .texture.stitch import stitch
from .texture.visibility import vertex_scores
from .weights import locate

REFINE_STAGES = ("render_views", "invert", "resample", "stitch")
VIEW_RENDER_SIZE = 512  # side of the synthetic views handed to the inverter
VIEW_BACKGROUND = 0.5  # grey behind the rendered face in the synthetic views


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
        views = tuple(tuple(map(float, v)) for v in self.settings.views)
        refinement = None
        if self.inverter is None:
            for name in REFINE_STAGES:
                log.skip(name, self.refine_note)
        else:
            refinement = self.refine(fit, samples.t_uv, samples.photo_scores, coarse.t_coarse, list(views), log)
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
            textures=UVTextures(texture, coarse_texture, mask), views=views, stages=tuple(log.records),
            degraded=tuple(degraded), model_summary=self.model.summary(), triangles=self.model.triangles,
            uvs=self.model.uvs,
        )

    def refine(self, fit: FitResult, t_uv: torch.Tensor, photo_scores: torch.Tensor, t_coarse: torch.Tensor,
               views: list[tuple[float, float]], log: StageLog | None = None) -> Refinement:
        """§3.2: render T_coarse from ``views`` (I_R^i), invert each (Eq. 2–3), re-sample T_ref^i with
        its own Eq. 4 scores, and stitch with the photo (Eq. 5–6). Needs an inverter."""

        if self.inverter is None:
            raise RuntimeError("refine needs an inverter (generator weights)")
        log = log if log is not None else StageLog()
        with log.stage("render_views") as st:
            screen, renders, frags, world, normals = self._render_views(fit, t_coarse, views)
            st.note = f"{len(views)} views at {VIEW_RENDER_SIZE}²"
        with log.stage("invert") as st:
            result = self.inverter.invert(renders, screen[:, self.model.landmark_ids, :2])
            inverted = result.images.clamp(0, 1)
            st.backend = result.backend
        with log.stage("resample"):
            view_colors, view_scores = self._resample_views(inverted, screen, frags, world, normals)
        with log.stage("stitch", self.solver.backend) as st:
            stitched = stitch(self.solver, t_uv, photo_scores, view_colors, view_scores, fallback=t_coarse)
            st.note = "; ".join(stitched.notes)
        return Refinement(stitched.colors.clamp(0, 1), renders, inverted, result.backend, stitched.notes)

    def _view_geometry(self, fit: FitResult, views: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor, Any]:

        n = len(views)
        angles = torch.tensor([[math.radians(p), math.radians(y), 0.0] for y, p in views], device=self.device)
        translation = torch.zeros(n, 3, device=self.device)
        translation[:, 2] = fit.translation[2]
        verts = fit.vertices[None].expand(n, -1, -1)
        world = transform(verts, angles, translation)
        normals = transform(fit.normals[None].expand(n, -1, -1), angles, torch.zeros_like(translation))
        return world, normals, Camera().resized(VIEW_RENDER_SIZE)

    def _render_views(self, fit: FitResult, colors: torch.Tensor, views: list[tuple[float, float]]):
        """I_R^i: T_coarse rendered unlit from each synthetic view (grey background)."""

        world, normals, camera = self._view_geometry(fit, views)
        screen = camera.project(world)
        frags = rasterize(screen, self.model.triangles, (VIEW_RENDER_SIZE, VIEW_RENDER_SIZE), perspective_correct=True,
                          backend=select_backend(self.device))
        colour = interpolate(frags, self.model.triangles, colors[None].expand(len(views), -1, -1))
        image = torch.where(frags.mask[..., None], colour, torch.full_like(colour, VIEW_BACKGROUND))
        return screen, image.permute(0, 3, 1, 2).contiguous(), frags, world, normals

    def _resample_views(self, inverted: torch.Tensor, screen: torch.Tensor, frags: Any, world: torch.Tensor,
                        normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T_ref^i: colours of each inverted view at its vertices + Eq. 4 scores (T = view threshold)."""

        sampled = sample_vertices(inverted, screen, self.model.triangles, fragments=frags)
        distance = sampled.boundary_distance * (224.0 / VIEW_RENDER_SIZE)
        scores = vertex_scores(normals, world, sampled.visible, distance, self.settings.vis_threshold_view)
        return sampled.colors, scores


def _check_output(source: Path, out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} exists and is not a folder")
    if out_dir.exists() and not force:
        raise OutputError(f"output {out_dir} already exists (use --force to overwrite)")
    try:
        src, dst = source.resolve(), out_dir.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise InputError(f"{source}: cannot resolve path ({type(exc).__name__})") from exc
    if src == dst or dst in src.parents:
        raise OutputError(f"output {out_dir} contains the input {source}; choose another -o folder")


def recover_to_directory(recoverer: Recoverer, source: str | Path, out_dir: str | Path, force: bool = False,
                         all_faces: bool = False, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Load ``source``, recover its face (or every face), and write ``out_dir`` atomically.

    Raises:
        InputError / NoFaceError / WeightsError / OutputError: with a one-line message.
    """
    source, out_dir = Path(source), Path(out_dir)
    _check_output(source, out_dir, force)
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
            return _write(stage, recovery, recoverer, source, 1 + recovery.observation.index, timings, progress)
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
