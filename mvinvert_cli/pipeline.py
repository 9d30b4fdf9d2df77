"""The recovery pipeline (DESIGN.md §1): a :class:`Recoverer` loads every model once and runs

    align → parse → fit → sample T_uv → T_coarse → render views → invert → resample → stitch → bake

on each photo, returning a :class:`Recovery`; :func:`recover_to_directory` writes it atomically.

Texture colours are "photo colours" throughout (the photo's own lighting baked in, as in MvInvert):
T_uv is sampled from the full-resolution photo, T_pca is lit by the fitted SH lighting before it fills
the holes (§3.1), the synthetic views render T_coarse unlit, and T_refine stitches the inverted views
(Eq. 5–6) anchored to the photo (λ). The per-vertex result is baked into the UV texture, and where the
photo sees the surface, texel-level photo detail (photo texels − baked T_uv) is added back so the
texture keeps the photo's resolution rather than the mesh's.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .align.observation import Observation
from .config import Settings, resolve_device
from .errors import OutputError
from .io.images import Photo, load_image
from .io.meshes import TexturedMesh
from .weights import file_sha256

VIEW_RENDER_SIZE = 512  # side of the synthetic views handed to the inverter
VIEW_BACKGROUND = 0.5  # grey behind the rendered face in the synthetic views
COARSE_MIN_FACING = 0.2  # n·d below this counts as too oblique for T_uv (grazing, stretched samples)
DETAIL_GAIN = 2.0  # texel detail weight = clamp(gain · interpolated photo score, 0, 1)
PREVIEW_YAWS = (-45.0, 0.0, 45.0)


@dataclass
class StageRecord:
    """One stage of one run, for result.json."""

    name: str
    seconds: float = 0.0
    backend: str = ""
    status: str = "ok"  # ok | degraded | skipped
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class StageLog:
    """Per-stage timing and backend bookkeeping."""

    records: list[StageRecord] = field(default_factory=list)

    @contextlib.contextmanager
    def stage(self, name: str, backend: str = "") -> Iterator[StageRecord]:
        record = StageRecord(name, backend=backend)
        start = time.perf_counter()
        try:
            yield record
        finally:
            record.seconds = time.perf_counter() - start
            self.records.append(record)

    def skip(self, name: str, note: str) -> None:
        self.records.append(StageRecord(name, status="skipped", note=note))

    def timings(self) -> dict[str, float]:
        return {r.name: round(r.seconds, 4) for r in self.records}


@dataclass
class Recovery:
    """Everything one run produced (tensors on the Recoverer's device unless noted).

    Attributes:
        photo / observation / fit: the inputs and fitted face.
        t_uv: (V, 3) photo colours per vertex; photo_scores: (V,) Eq. 4 scores (T = photo threshold).
        coarse_scores: (V,) the looser visibility used for T_coarse and the texel detail.
        t_pca: (V, 3) the statistical texture, lit like the photo.
        t_coarse: (V, 3) §3.1; t_refine: (V, 3) Eq. 6 result, or None when refinement was skipped.
        views: [(yaw, pitch)] of the synthetic views; view_renders (N, 3, S, S) coarse renders;
        inverted: (N, 3, S, S) GAN-inversion outputs in the render frame, or None.
        texture / coarse_texture: (S, S, 3) numpy UV textures; texture_mask: (S, S) bool islands.
        stages: per-stage records; degraded: human-readable degradations (also on stderr).
        triangles: (F, 3) long and uvs: (V, 2) of the model topology.
    """

    photo: Photo
    observation: Observation
    fit: Any
    t_uv: torch.Tensor
    photo_scores: torch.Tensor
    coarse_scores: torch.Tensor
    t_pca: torch.Tensor
    t_coarse: torch.Tensor
    t_refine: torch.Tensor | None
    views: list[tuple[float, float]]
    view_renders: torch.Tensor | None
    inverted: torch.Tensor | None
    texture: np.ndarray
    coarse_texture: np.ndarray
    texture_mask: np.ndarray
    stages: list[StageRecord]
    degraded: list[str]
    model_summary: dict[str, Any]
    triangles: torch.Tensor
    uvs: torch.Tensor
    invert_backend: str | None = None
    stitch_notes: tuple[str, ...] = ()

    @property
    def colors(self) -> torch.Tensor:
        """(V, 3) final per-vertex colours: T_refine if refinement ran, else T_coarse."""
        return self.t_refine if self.t_refine is not None else self.t_coarse


@dataclass
class Refinement:
    """Output of :meth:`Recoverer.refine`: T_refine (V, 3), the coarse view renders and their GAN
    inversions (N, 3, S, S), the inversion backend and the stitch's notes."""

    colors: torch.Tensor
    view_renders: torch.Tensor
    inverted: torch.Tensor
    backend: str
    notes: tuple[str, ...]


class Recoverer:
    """Holds every loaded model (aligner, parser, morphable model + fitter, Poisson solver, UV
    layout, inverter) and recovers photos with them; build one per process and reuse it.

    Raises (from the constructor):
        UsageError: bad device or backend names. WeightsError: a present weights file is unusable.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        from .align import Aligner
        from .morphable.bfm import bfm_available, load_bfm
        from .morphable.default import load_default_model
        from .morphable.fit import Fitter
        from .parse import FaceParser
        from .render.bake import uv_layout
        from .texture.poisson import PoissonSolver
        from .weights import locate

        self.settings = settings or Settings()
        self.device = resolve_device(self.settings.device)
        trust = bool(self.settings.extra.get("trust_pickle", False))
        self.degraded: list[str] = []
        self.load_seconds: dict[str, float] = {}

        start = time.perf_counter()
        self.aligner = Aligner(self.settings.aligner, device=self.device, trust_pickle=trust)
        self.degraded += self.aligner.notes
        self.parser = FaceParser(self.settings.parser, device=self.device, trust_pickle=trust)
        self.degraded += self.parser.notes
        self.load_seconds["align+parse"] = time.perf_counter() - start

        start = time.perf_counter()
        if bfm_available():
            self.model = load_bfm(device=self.device)
        else:
            self.model = load_default_model(device=self.device)
            self.degraded.append("3DMM: BFM 2009 not found; embedded MediaPipe canonical mesh (no PCA shape/albedo)")
        if self.model.embed_ids is not None and self.aligner.backend != "mediapipe":
            from .align import Aligner as _Aligner

            self.aligner = _Aligner("mediapipe", device=self.device)
            self.degraded.append("align: the default face model needs MediaPipe's dense points; using MediaPipe")
        regressor = None
        if self.model.embed_ids is None and locate("deep3d") is not None and \
                (self.model.n_id, self.model.n_exp, self.model.n_tex) == (80, 64, 80):
            from .morphable.regressor import load_regressor

            regressor = load_regressor(device=self.device, trust_pickle=trust)
        self.fitter = Fitter(self.model, self.settings, regressor=regressor)
        self.solver = PoissonSolver(self.model.mean_shape.detach().cpu(), self.model.triangles.cpu(),
                                    lam=self.settings.stitch_lambda)
        self.uv_layout = uv_layout(self.model.uvs, self.model.triangles, self.settings.texture_size)
        self.load_seconds["model+solver"] = time.perf_counter() - start

        start = time.perf_counter()
        self.inverter, self.refine_note = self._load_inverter(trust)
        if self.refine_note:
            self.degraded.append(self.refine_note)
        self.load_seconds["inverter"] = time.perf_counter() - start

    def _load_inverter(self, trust: bool) -> tuple[Any, str]:
        if not self.settings.refine:
            return None, "refine skipped: --no-refine"
        from .invert.inverter import Inverter
        from .invert.optimize import OptimizeSettings
        from .weights import locate

        options = dict(iterations=self.settings.invert_iterations,
                       optimize=OptimizeSettings(steps=self.settings.optimize_steps))
        encoder = self.settings.extra.get("encoder")
        if encoder:
            inverter = Inverter.from_paths(locate("stylegan2"), encoder, self.device, trust, **options)
        else:
            inverter = Inverter.from_weights(self.device, trust_pickle=trust, **options)
        if inverter is None:
            return None, "refine skipped: no generator weights (stylegan2-ffhq-config-f.pt or a ReStyle checkpoint)"
        self.degraded += [f"invert: {n}" for n in inverter.notes if "no ReStyle encoder" in n]
        return inverter, ""

    # ------------------------------------------------------------------ stages
    def detect(self, photo: Photo) -> list[Observation]:
        return self.aligner.detect(photo)

    def recover(self, photo: Photo, face_index: int | None = None, observation: Observation | None = None) -> Recovery:
        """Run every stage on one face of ``photo`` (``face_index`` defaults to the settings')."""
        from .render.camera import Camera
        from .texture.coarse import coarse_texture

        torch.manual_seed(self.settings.seed)
        log = StageLog()
        degraded = list(self.degraded)
        index = self.settings.face_index if face_index is None else face_index
        with log.stage("align", self.aligner.backend) as st:
            obs = observation if observation is not None else self.aligner.align(photo, face_index=index)
            st.backend = obs.aligner
        with log.stage("parse", self.parser.backend) as st:
            obs = self.parser.parse(obs)
            if self.parser.backend != "bisenet":
                st.status = "degraded"
                st.note = "landmark polygons + skin model (no BiSeNet weights)"
        with log.stage("fit") as st:
            fit = self.fitter.fit(obs)
            st.backend = f"{fit.model_name} / {fit.backend} / init {fit.init}"
            st.note = f"landmark error {fit.losses.get('landmark_px', float('nan')):.2f} px"
            degraded += [f"fit: {n}" for n in fit.notes]

        camera = Camera().resized(self.settings.render_size)
        world = fit.world_vertices[None]  # (1, V, 3)
        world_normals = fit.world_normals[None]
        with log.stage("sample") as st:
            t_uv, photo_scores, coarse_scores, photo_screen = self._sample_photo(photo, obs, world, world_normals, camera)
            st.note = f"{float((coarse_scores > 0).float().mean()):.0%} of vertices seen by the photo"
        with log.stage("coarse", self.solver.backend) as st:
            t_pca = lit_statistical_texture(fit.t_pca, world_normals[0], fit.gamma, coarse_scores > 0)
            coarse = coarse_texture(self.solver, t_uv, coarse_scores, t_pca)
            t_coarse = coarse.colors.clamp(0, 1)
            st.note = "; ".join(coarse.notes)

        views = [tuple(map(float, v)) for v in self.settings.views]
        view_renders = inverted = t_refine = None
        stitch_notes: tuple[str, ...] = ()
        invert_backend = None
        if self.inverter is None:
            for name in ("render_views", "invert", "resample", "stitch"):
                log.skip(name, self.refine_note)
        else:
            refined = self.refine(fit, t_uv, photo_scores, t_coarse, views, log)
            view_renders, inverted, t_refine = refined.view_renders, refined.inverted, refined.colors
            stitch_notes, invert_backend = refined.notes, refined.backend
        with log.stage("bake") as st:
            final = t_refine if t_refine is not None else t_coarse
            texture, mask = self._bake_with_detail(final, t_uv, coarse_scores, photo, photo_screen)
            coarse_tex, _ = self._bake_with_detail(t_coarse, t_uv, coarse_scores, photo, photo_screen)
            st.note = f"{self.settings.texture_size}² UV, photo detail where seen"
        return Recovery(
            photo=photo, observation=obs, fit=fit, t_uv=t_uv, photo_scores=photo_scores, coarse_scores=coarse_scores,
            t_pca=t_pca, t_coarse=t_coarse, t_refine=t_refine, views=views, view_renders=view_renders,
            inverted=inverted, texture=texture, coarse_texture=coarse_tex, texture_mask=mask, stages=log.records,
            degraded=degraded, model_summary=self.model.summary(), triangles=self.model.triangles,
            uvs=self.model.uvs, invert_backend=invert_backend,
            stitch_notes=stitch_notes,
        )

    def refine(self, fit: Any, t_uv: torch.Tensor, photo_scores: torch.Tensor, t_coarse: torch.Tensor,
               views: list[tuple[float, float]], log: StageLog | None = None) -> Refinement:
        """§3.2: render T_coarse from ``views`` (I_R^i), invert each (Eq. 2–3), re-sample T_ref^i with
        its own Eq. 4 scores, and stitch with the photo (Eq. 5–6). Needs an inverter."""
        from .texture.stitch import stitch

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

    def _sample_photo(self, photo: Photo, obs: Observation, world: torch.Tensor, world_normals: torch.Tensor,
                      camera: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """T_uv from the full-resolution photo + Eq. 4 scores from the fitting crop's z-buffer."""
        from .texture.sample import sample_image, sample_vertices
        from .texture.visibility import facing, vertex_scores

        size = self.settings.render_size
        crop_screen = camera.project(world)  # (1, V, 3) in crop pixels
        crop = obs.crop_tensor(self.device)
        sampled = sample_vertices(crop, crop_screen, self.model.triangles)
        visible, distance = sampled.visible, sampled.boundary_distance * (224.0 / size)
        photo_scores = vertex_scores(world_normals, world, visible, distance, self.settings.vis_threshold_photo)
        loose = vertex_scores(world_normals, world, visible, distance, self.settings.vis_threshold_view)
        loose = torch.where(facing(world_normals, world) >= COARSE_MIN_FACING, loose, torch.zeros_like(loose))
        # crop pixels → photo pixels through the inverse of the 5-point similarity
        matrix = torch.as_tensor(np.asarray(obs.crop_matrix, dtype=np.float64), device=self.device)
        inverse = torch.linalg.inv(torch.cat([matrix, matrix.new_tensor([[0.0, 0.0, 1.0]])]))[:2]
        xy = crop_screen[..., :2].double() @ inverse[:, :2].T + inverse[:, 2]
        photo_screen = torch.cat([xy.float(), crop_screen[..., 2:]], dim=-1)
        image = torch.from_numpy(np.ascontiguousarray(photo.rgb.transpose(2, 0, 1)))[None].to(self.device)
        t_uv = sample_image(image, photo_screen[..., :2])[0]
        if obs.face_mask is not None:
            mask = torch.from_numpy(obs.face_mask.astype(np.float32))[None, None].to(self.device)
            on_face = sample_image(mask, photo_screen[..., :2])[0, :, 0] > 0.5
            photo_scores = photo_scores * on_face
            loose = loose * on_face
        return t_uv, photo_scores[0], loose[0], photo_screen

    def _view_geometry(self, fit: Any, views: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        from .render.camera import Camera, transform

        n = len(views)
        angles = torch.tensor([[math.radians(p), math.radians(y), 0.0] for y, p in views], device=self.device)
        translation = torch.zeros(n, 3, device=self.device)
        translation[:, 2] = fit.translation[2]
        verts = fit.vertices[None].expand(n, -1, -1)
        world = transform(verts, angles, translation)
        normals = transform(fit.normals[None].expand(n, -1, -1), angles, torch.zeros_like(translation))
        return world, normals, Camera().resized(VIEW_RENDER_SIZE)

    def _render_views(self, fit: Any, colors: torch.Tensor, views: list[tuple[float, float]]):
        """I_R^i: T_coarse rendered unlit from each synthetic view (grey background)."""
        from .render.rasterize import interpolate, rasterize, select_backend

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
        from .texture.sample import sample_vertices
        from .texture.visibility import vertex_scores

        sampled = sample_vertices(inverted, screen, self.model.triangles, fragments=frags)
        distance = sampled.boundary_distance * (224.0 / VIEW_RENDER_SIZE)
        scores = vertex_scores(normals, world, sampled.visible, distance, self.settings.vis_threshold_view)
        return sampled.colors, scores

    def _bake_with_detail(self, colors: torch.Tensor, t_uv: torch.Tensor, scores: torch.Tensor, photo: Photo,
                          photo_screen: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Bake per-vertex colours to UV and add texel-level photo detail where the photo sees the face."""
        from .render.bake import bake, pad_islands
        from .texture.sample import sample_uv_texture

        faces = self.model.triangles
        base = bake(colors, faces, self.uv_layout)
        base_uv = bake(t_uv, faces, self.uv_layout)
        image = torch.from_numpy(np.ascontiguousarray(photo.rgb.transpose(2, 0, 1)))[None].to(self.device)
        texels, weight = sample_uv_texture(image, photo_screen, faces, self.uv_layout, scores[None])
        weight = (weight[0] * DETAIL_GAIN).clamp(0, 1)[..., None]
        texture = base.texture + weight * (texels[0] - base_uv.texture)
        texture = pad_islands(texture.clamp(0, 1), self.uv_layout.nearest)
        return texture.cpu().numpy(), base.mask.cpu().numpy()


def lit_statistical_texture(albedo: torch.Tensor, world_normals: torch.Tensor, gamma: torch.Tensor,
                            seen: torch.Tensor) -> torch.Tensor:
    """T_pca lit like the photo, for filling the holes of T_uv (§3.1).

    The SH light (FORMATS.md §1g) is fitted to the visible side only; extrapolated to normals the photo
    never saw (grazing and turned-away surfaces) its second-order terms can brighten or darken them
    far beyond anything observed. The irradiance is therefore clamped per channel to the interquartile
    range it has over the seen vertices: hidden parts keep a plausible shading pattern at the photo's
    exposure.

    Args:
        albedo: (V, 3) T_pca in [0, 1]; world_normals: (V, 3); gamma: (27,); seen: (V,) bool.

    Returns:
        (V, 3) colours in [0, 1].
    """
    from .render import lighting

    irradiance = lighting.shade(torch.ones_like(albedo)[None], world_normals[None], gamma[None])[0]
    if int(seen.sum()) >= 8:
        low = irradiance[seen].quantile(0.25, dim=0)
        high = irradiance[seen].quantile(0.75, dim=0)
        irradiance = torch.maximum(torch.minimum(irradiance, high), low)
    return (albedo * irradiance).clamp(0, 1)


# ---------------------------------------------------------------------- outputs

def _to_numpy_image(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy()


def _overlay(recovery: Recovery, colors: torch.Tensor, size: int = 448) -> tuple[np.ndarray, np.ndarray]:
    """(render of the final face in the photo pose, crop with that render blended + landmarks)."""
    from .render.camera import Camera
    from .render.rasterize import interpolate, rasterize

    fit = recovery.fit
    camera = Camera().resized(size)
    screen = camera.project(fit.world_vertices[None])
    triangles = recovery.triangles
    frags = rasterize(screen, triangles, (size, size), perspective_correct=True)
    colour = interpolate(frags, triangles, colors[None])[0]
    mask = frags.mask[0]
    crop = torch.from_numpy(np.ascontiguousarray(recovery.observation.crop.transpose(2, 0, 1)))[None]
    crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    crop = crop.to(colour.device)
    render = torch.where(mask[..., None], colour, torch.ones_like(colour)).cpu().numpy()
    blend = torch.where(mask[..., None], 0.5 * colour + 0.5 * crop, crop).cpu().numpy().copy()
    scale = size / 224.0
    for x, y in (fit.target_landmarks.detach().cpu().numpy() * scale):
        i, j = int(y), int(x)
        blend[max(0, i - 1):i + 2, max(0, j - 1):j + 2] = (0.1, 1.0, 0.2)
    for x, y in (fit.landmarks_2d.detach().cpu().numpy() * scale):
        i, j = int(y), int(x)
        blend[max(0, i - 1):i + 2, max(0, j - 1):j + 2] = (1.0, 0.2, 0.1)
    return render, blend


def recovery_mesh(recovery: Recovery) -> TexturedMesh:
    """The output mesh: model-space vertices (front = +z, up = +y), UVs, final texture and colours."""
    return TexturedMesh(
        vertices=recovery.fit.vertices.detach().cpu().numpy(), faces=recovery.triangles.cpu().numpy(),
        uvs=recovery.uvs.detach().cpu().numpy(), texture=recovery.texture,
        vertex_colors=recovery.colors.detach().cpu().numpy(),
    )


def _view_tag(view: tuple[float, float]) -> str:
    return f"yaw{view[0]:+g}_pitch{view[1]:+g}"


def _renders_and_panels(recovery: Recovery, device: torch.device) -> tuple[dict[str, np.ndarray], list]:
    from .viewer import render_views

    mesh = recovery_mesh(recovery)
    render, overlay = _overlay(recovery, recovery.colors)
    renders: dict[str, np.ndarray] = {"input_pose": render, "overlay": overlay}
    novel = render_views(mesh, [(y, 0.0) for y in PREVIEW_YAWS], size=512, shading=0.15, device=device)
    for yaw, image in zip(PREVIEW_YAWS, novel, strict=True):
        renders[f"final_{_view_tag((yaw, 0.0))}"] = image
    if recovery.view_renders is not None:
        for view, image in zip(recovery.views, recovery.view_renders, strict=True):
            renders[f"coarse_{_view_tag(view)}"] = _to_numpy_image(image)
    if recovery.inverted is not None:
        for view, image in zip(recovery.views, recovery.inverted, strict=True):
            renders[f"inverted_{_view_tag(view)}"] = _to_numpy_image(image)
    panels = [("input", recovery.photo.rgb), ("fit overlay", overlay), ("coarse UV", recovery.coarse_texture),
              ("final UV", recovery.texture)]
    panels += [(f"novel yaw {yaw:+g}", image) for yaw, image in zip(PREVIEW_YAWS, novel, strict=True)]
    if recovery.inverted is not None:
        panels.append((f"inverted {_view_tag(recovery.views[1 % len(recovery.views)])}",
                       renders[f"inverted_{_view_tag(recovery.views[1 % len(recovery.views)])}"]))
    else:
        panels.append(("fit render", render))
    return renders, panels


def result_document(recovery: Recovery, recoverer: Recoverer, source: Path, faces_found: int) -> dict[str, Any]:
    """The result.json body (outputs are added by the writer)."""
    obs, fit, mask = recovery.observation, recovery.fit, recovery.texture_mask
    inside = recovery.texture[mask]
    face = obs.summary()
    face.pop("dense478", None)
    return {
        "schema": "mvinvert/result-1",
        "mvinvert_version": __version__,
        "status": "ok",
        "input": {"path": str(source), "sha256": file_sha256(source), "size": list(recovery.photo.original_size),
                  "used_size": list(recovery.photo.size), "notes": list(recovery.photo.notes)},
        "device": str(recoverer.device),
        "settings": recoverer.settings.to_dict(),
        "faces_found": faces_found,
        "face": face,
        "backends": {"align": obs.aligner, "parse": obs.parser, "model": recoverer.model.name,
                     "fit": fit.backend, "fit_init": fit.init, "invert": recovery.invert_backend,
                     "poisson": recoverer.solver.backend, "raster": "torch"},
        "degraded": recovery.degraded,
        "model": recovery.model_summary,
        "fit": fit.summary(),
        "texture": {
            "size": recoverer.settings.texture_size,
            "island_texels": int(mask.sum()),
            "filled_fraction": float(np.isfinite(inside).all(-1).mean()) if inside.size else 0.0,
            "photo_seen_vertices": round(float((recovery.coarse_scores > 0).float().mean()), 4),
            "refined": recovery.t_refine is not None,
            "stitch_notes": list(recovery.stitch_notes),
        },
        "stages": [r.to_json() for r in recovery.stages],
        "load_seconds": {k: round(v, 3) for k, v in recoverer.load_seconds.items()},
    }


def _check_output(source: Path, out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output {out_dir} exists and is not a folder")
    if out_dir.exists() and not force:
        raise OutputError(f"output {out_dir} already exists (use --force to overwrite)")
    try:
        src, dst = source.resolve(), out_dir.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        from .errors import InputError

        raise InputError(f"{source}: cannot resolve path ({type(exc).__name__})") from exc
    if src == dst or dst in src.parents:
        raise OutputError(f"output {out_dir} contains the input {source}; choose another -o folder")


def write_recovery(stage_dir: Path, recovery: Recovery, recoverer: Recoverer, source: Path,
                   faces_found: int, timings: dict[str, float]) -> dict[str, Any]:
    """Write one recovery into ``stage_dir`` (already a staging folder); return result.json's body."""
    from .io.outputs import write_outputs

    start = time.perf_counter()
    renders, panels = _renders_and_panels(recovery, recoverer.device)
    document = result_document(recovery, recoverer, source, faces_found)
    timings = {**timings, **{r.name: round(r.seconds, 4) for r in recovery.stages}}
    timings["write"] = round(time.perf_counter() - start, 4)
    timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 4)
    document["timings"] = timings
    outputs = write_outputs(stage_dir, recovery_mesh(recovery), recovery.coarse_texture, renders, panels, document)
    document["outputs"] = outputs
    return document


def recover_to_directory(recoverer: Recoverer, source: str | Path, out_dir: str | Path, force: bool = False,
                         all_faces: bool = False) -> dict[str, Any]:
    """Load ``source``, recover its face (or every face), and write ``out_dir`` atomically.

    Raises:
        InputError / NoFaceError / WeightsError / OutputError: with a one-line message.
    """
    from .io.atomic import atomic_dir, atomic_write_text

    source, out_dir = Path(source), Path(out_dir)
    _check_output(source, out_dir, force)
    start = time.perf_counter()
    photo = load_image(source)
    load_time = time.perf_counter() - start
    if not all_faces:
        recovery = recoverer.recover(photo)
        with atomic_dir(out_dir, overwrite=force) as stage:
            document = write_recovery(stage, recovery, recoverer, source, faces_found=1 + recovery.observation.index,
                                      timings={"load_image": round(load_time, 4)})
        return document
    start = time.perf_counter()
    observations = recoverer.detect(photo)
    detect_time = round(time.perf_counter() - start, 4)
    if not observations:
        from .errors import NoFaceError

        raise NoFaceError(f"{source}: no face found")
    documents = []
    with atomic_dir(out_dir, overwrite=force) as stage:
        for obs in observations:
            recovery = recoverer.recover(photo, observation=obs)
            sub = stage / f"face_{obs.index}"
            sub.mkdir()
            documents.append(write_recovery(sub, recovery, recoverer, source, len(observations),
                                            {"load_image": round(load_time, 4), "detect": detect_time}))
        summary = {"schema": "mvinvert/result-multi-1", "mvinvert_version": __version__, "status": "ok",
                   "input": {"path": str(source)}, "faces": len(documents),
                   "timings": {"total": round(sum(d["timings"]["total"] for d in documents), 4)},
                   "outputs": {f"face_{i}": f"face_{i}/result.json" for i in range(len(documents))}}
        atomic_write_text(stage / "result.json", json.dumps(summary, indent=2) + "\n")
    return summary

