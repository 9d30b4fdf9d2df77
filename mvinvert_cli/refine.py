"""The refine stage of MvInvert (§3.2), once for inference, evaluation and training:

    T_coarse ──render views (unlit, grey)──▶ I_R^i ──invert (Eq. 2–3)──▶ I_inv^i
             ──resample per vertex + Eq. 4 scores──▶ T_ref^i ──Eq. 5 selection + Eq. 6 solve──▶ T_refine

:func:`refine` runs it on B fitted faces at once. The pipeline's ``Recoverer`` and the evaluation
call it without gradients (``differentiable=False``); the training path
(:class:`~mvinvert_cli.train.path.InversionPath`) with ``differentiable=True``, so that the encoder
is trained on exactly what inference runs: the view renders and every visibility score are
constants of the data, and gradients reach the encoder through the generator (last ReStyle pass),
the bilinear resampling and the screened-Poisson stitch's custom backward.

The synthetic views are the fitted face centred on the optical axis at its fitted depth, turned to
each (yaw, pitch) of :class:`RefineSettings` (``render.renderer.view_pose``), rendered at
``view_size`` with the Deep3DFaceRecon camera scaled from 224 px.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .config import DEFAULT_VIEWS, Settings
from .invert.inverter import InversionResult
from .morphable.model import MorphableModel
from .records import ProgressCallback, Refinement, StageRecord
from .render.camera import IMAGE_SIZE, transform
from .render.renderer import Renderer, Rendering, view_pose
from .texture.poisson import PoissonSolver
from .texture.sample import sample_vertices
from .texture.stitch import stitch
from .texture.visibility import vertex_scores

VIEW_SIZE = 512
"""Side of the synthetic views handed to the inverter (px)."""
VIEW_BACKGROUND = 0.5
"""Grey behind the rendered face in the synthetic views."""
THRESHOLD_SIZE = IMAGE_SIZE
"""Image side (224 px, the fitting crop) at which the Eq. 4 silhouette thresholds are stated."""
REFINE_STEPS = ("render_views", "invert", "resample", "stitch")
"""The steps of :func:`refine`, each one stage record of a run."""

InvertViews = Callable[[Tensor, Tensor], InversionResult]
"""(M,3,H,W) view renders in [0,1] and their (M,68,2) projected landmarks → inverted views in the
render frame (``Inverter.invert``, or the training path's differentiable encoder inversion)."""


@dataclass(frozen=True)
class RefineSettings:
    """Constants of the refine stage.

    Attributes:
        views: (yaw, pitch) degrees of the synthetic views (DESIGN.md §4: 0, ±30, pitch −15).
        view_size: side of the view renders (px); view_background: their grey behind the face.
        vis_threshold_photo / vis_threshold_view: Eq. 4 silhouette thresholds T (px at 224) of the
            reference photo (50) and of the synthetic views (3); scale with the image side
            (:meth:`threshold_at`).
        lam: λ of Eq. 6 (the stitch's solver must be factorised with it).
    """

    views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS
    view_size: int = VIEW_SIZE
    view_background: float = VIEW_BACKGROUND
    vis_threshold_photo: float = 50.0
    vis_threshold_view: float = 3.0
    lam: float = 0.1

    @staticmethod
    def threshold_at(threshold: float, size: int) -> float:
        """An Eq. 4 threshold stated at 224 px, for an image of side ``size``."""
        return threshold * size / THRESHOLD_SIZE


def refine_settings(settings: Settings) -> RefineSettings:
    """The refine stage's settings of a run (views, thresholds, λ from ``settings``)."""
    return RefineSettings(views=tuple((float(y), float(p)) for y, p in settings.views), view_size=VIEW_SIZE,
                          view_background=VIEW_BACKGROUND, vis_threshold_photo=settings.vis_threshold_photo,
                          vis_threshold_view=settings.vis_threshold_view, lam=settings.stitch_lambda)


@dataclass(frozen=True)
class RefineInputs:
    """B fitted faces (one topology), all on one device.

    Attributes:
        vertices: (B,V,3) fitted model-space shapes.
        translation: (B,3) fitted translations (only the depth t_z places the views).
        t_uv: (B,V,3) photo colours per vertex; photo_scores: (B,V) their Eq. 4 scores (> 0 anchors
            the vertex in Eq. 6).
        t_coarse: (B,V,3) T_coarse (§3.1), rendered into the views and the stitch's fallback.
    """

    vertices: Tensor
    translation: Tensor
    t_uv: Tensor
    photo_scores: Tensor
    t_coarse: Tensor

    @classmethod
    def one(cls, vertices: Tensor, translation: Tensor, t_uv: Tensor, photo_scores: Tensor,
            t_coarse: Tensor) -> RefineInputs:
        """One face: (V,3), (3,), (V,3), (V,), (V,3)."""
        return cls(vertices[None], translation[None], t_uv[None], photo_scores[None], t_coarse[None])


@dataclass(frozen=True)
class RefineResult:
    """Output of :func:`refine` (B faces, N views, S = view side).

    Attributes:
        colors: (B,V,3) T_refine in [0,1] (Eq. 6, clamped like every output colour).
        view_renders: (B,N,3,S,S) I_R^i; view_landmarks: (B,N,68,2) their projected landmarks (px).
        inverted: (B,N,3,S,S) I_inv^i in the render frame.
        backend: the inversion backend; notes: the stitch's remarks (deduplicated over B).
        stages: one record per step (render_views, invert, resample, stitch), for result.json.
    """

    colors: Tensor
    view_renders: Tensor
    view_landmarks: Tensor
    inverted: Tensor
    backend: str
    notes: tuple[str, ...]
    stages: tuple[StageRecord, ...]

    def face(self, index: int = 0) -> Refinement:
        """The pipeline's per-face record of face ``index``."""
        return Refinement(self.colors[index], self.view_renders[index], self.inverted[index], self.backend,
                          self.notes)


def view_geometry(model: MorphableModel, vertices: Tensor, translation: Tensor,
                  views: Sequence[tuple[float, float]]) -> tuple[Tensor, Tensor]:
    """World vertices and rotated unit normals (B·N,V,3) of every synthetic view, photo-major.

    Each view is ``view_pose(yaw, pitch)`` with the face centred on the optical axis at its fitted
    depth (0, 0, t_z).
    """
    angles, shifts = [], []
    for depth in translation[:, 2]:
        centred = torch.zeros(3, dtype=vertices.dtype, device=vertices.device)
        centred[2] = depth
        for yaw, pitch in views:
            a, t = view_pose(yaw, pitch, translation=centred, device=vertices.device, dtype=vertices.dtype)
            angles.append(a)
            shifts.append(t)
    angles, shifts = torch.stack(angles), torch.stack(shifts)
    n = len(views)
    verts = vertices.repeat_interleave(n, dim=0)
    world = transform(verts, angles, shifts)
    normals = transform(model.normals(verts), angles, torch.zeros_like(shifts))
    return world, normals


def render_views(model: MorphableModel, world: Tensor, t_coarse: Tensor, settings: RefineSettings) -> Rendering:
    """I_R^i: T_coarse (B,V,3) rendered unlit into every view of ``world`` (B·N,V,3), grey behind."""
    renderer = Renderer(size=settings.view_size, background=settings.view_background)
    return renderer.render(world, model.triangles, t_coarse.repeat_interleave(len(settings.views), dim=0))


def resample_views(model: MorphableModel, inverted: Tensor, views: Rendering, world: Tensor, normals: Tensor,
                   settings: RefineSettings) -> tuple[Tensor, Tensor]:
    """T_ref^i: colours (B·N,V,3) of each inverted view at its vertices (differentiable) and their
    Eq. 4 scores (B·N,V) with T = the view threshold (constants)."""
    sampled = sample_vertices(inverted, views.screen, model.triangles, fragments=views.fragments)
    threshold = settings.threshold_at(settings.vis_threshold_view, settings.view_size)
    scores = vertex_scores(normals, world, sampled.visible, sampled.boundary_distance, threshold)
    return sampled.colors, scores.detach()


def refine(model: MorphableModel, solver: PoissonSolver, invert: InvertViews, inputs: RefineInputs,
           settings: RefineSettings, differentiable: bool = False,
           progress: ProgressCallback | None = None) -> RefineResult:
    """§3.2: render T_coarse from each view, invert, resample T_ref^i, stitch with the photo (Eq. 5–6).

    Args:
        model: the morphable model the faces were fitted with (topology, normals, landmark ids).
        solver: the topology's Poisson solver, factorised with ``settings.lam``.
        invert: the inversion (:data:`InvertViews`).
        inputs: :class:`RefineInputs`.
        settings: :class:`RefineSettings`.
        differentiable: keep the autograd graph from ``invert``'s output to T_refine (training);
            False runs everything without gradients (inference, evaluation).
        progress: told ``(step, "start")`` and ``(step, "done")`` around each of the four steps.

    Raises:
        ValueError: the solver was factorised with another λ.
    """
    if abs(solver.lam - settings.lam) > 1e-12:
        raise ValueError(f"the stitch solver has λ = {solver.lam}, the refine settings λ = {settings.lam}")
    with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
        return _refine(model, solver, invert, inputs, settings, progress)


@contextlib.contextmanager
def _step(name: str, stages: list[StageRecord], progress: ProgressCallback | None) -> Iterator[StageRecord]:
    record = StageRecord(name)
    if progress is not None:
        progress(name, "start")
    start = time.perf_counter()
    yield record
    record.seconds = time.perf_counter() - start
    stages.append(record)
    if progress is not None:
        progress(name, "done")


def _refine(model: MorphableModel, solver: PoissonSolver, invert: InvertViews, inputs: RefineInputs,
            settings: RefineSettings, progress: ProgressCallback | None) -> RefineResult:
    b, n, size = inputs.vertices.shape[0], len(settings.views), settings.view_size
    stages: list[StageRecord] = []
    with _step("render_views", stages, progress) as st, torch.no_grad():  # the views are data: no gradient
        world, normals = view_geometry(model, inputs.vertices, inputs.translation, settings.views)
        views = render_views(model, world, inputs.t_coarse, settings)
        landmarks = model.landmarks(views.screen[..., :2])  # (B·N,68,2)
        st.note = f"{n} views at {size}²"
    with _step("invert", stages, progress) as st:
        result = invert(views.image, landmarks)
        inverted = result.images.clamp(0, 1)
        st.backend = result.backend
    with _step("resample", stages, progress):
        view_colors, view_scores = resample_views(model, inverted, views, world, normals, settings)
    with _step("stitch", stages, progress) as st:
        refined, notes = [], []
        for i in range(b):
            stitched = stitch(solver, inputs.t_uv[i], inputs.photo_scores[i], view_colors[i * n:(i + 1) * n],
                              view_scores[i * n:(i + 1) * n], fallback=inputs.t_coarse[i])
            refined.append(stitched.colors.clamp(0, 1))
            notes += [note for note in stitched.notes if note not in notes]
        st.backend, st.note = solver.backend, "; ".join(notes)
    return RefineResult(torch.stack(refined), views.image.view(b, n, 3, size, size), landmarks.view(b, n, 68, 2),
                        inverted.view(b, n, 3, size, size), result.backend, tuple(notes), tuple(stages))
