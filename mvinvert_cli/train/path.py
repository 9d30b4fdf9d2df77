"""The differentiable MvInvert path used for training (§3.2–3.3):

    T_coarse ──render views──▶ I_R^i ──encoder (ReStyle residuals, Eq. 2)──▶ w_i ──G (frozen, Eq. 3)──▶
    I_inv^i ──resample per vertex──▶ c_i ──Eq. 5 selection + screened Poisson (Eq. 6)──▶ T_refine
    ──re-render at the photo's pose──▶ Î (blended into the photo, Eq. 7–8, 11)
                ──K random renders (pose, expression, lighting)──▶ R_k (Eq. 9)
                ──UV bake──▶ UV texture (Eq. 10)

The refine part (views → inversion → resample → stitch) is :func:`mvinvert_cli.refine.refine`, the
same function the pipeline runs, here with ``differentiable=True``; the encoder inversion is
:func:`mvinvert_cli.invert.inverter.encoder_inversion`, the inference ``Inverter``'s own. Only the
encoder has trainable parameters; the view renders and all visibility scores are constants of the
data, and gradients reach the encoder through the generator, the bilinear resampling and the
custom-autograd Poisson solve (:func:`mvinvert_cli.texture.stitch.stitch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from ..invert.inverter import ENCODER_SIZE, InversionResult, encoder_inversion
from ..morphable.model import MorphableModel
from ..refine import RefineInputs, RefineSettings, refine
from ..render import camera as cam
from ..render.bake import UVLayout, bake, uv_layout
from ..render.lighting import shade
from ..render.rasterize import interpolate
from ..render.renderer import Renderer
from ..texture.poisson import PoissonSolver
from ..texture.sample import sample_vertices
from ..texture.visibility import vertex_scores
from .losses import blend_face

FIVE_POINTS = ((36, 39), (42, 45), (30,), (48,), (54,))
"""iBUG-68 ids averaged into the 5 points [eyeL, eyeR, nose, mouthL, mouthR] (Deep3DFaceRecon)."""


@dataclass
class PathOutputs:
    """One forward pass of :class:`InversionPath` (B photos, N views, K identity renders).

    Attributes:
        photo: (B,3,S,S) the prepared photo crops I in [0,1].
        mask: (B,1,S,S) M of Eq. 7: face-parsing mask ∧ coverage of the re-render.
        blended: (B,3,S,S) Î pasted onto I (Eq. 7, 8, 11).
        identity_renders: (B,K,3,S,S) R_k of Eq. 9.
        identity_points5: (B,K,5,2) their 5 landmarks in px (for the ArcFace crop).
        uv_texture: (B,3,T,T) T_refine baked into UV space (Eq. 10).
        views: (B,N,3,H,H) coarse renders I_R^i (H = ``refine.view_size``); view_landmarks: (B,N,68,2) their
            projected landmarks (px); inverted: (B,N,3,H,H) I_inv^i.
        refined: (B,V,3) T_refine per vertex.
        notes: degraded cases reported by the stitch.
    """

    photo: Tensor
    mask: Tensor
    blended: Tensor
    identity_renders: Tensor
    identity_points5: Tensor | None
    uv_texture: Tensor
    views: Tensor
    view_landmarks: Tensor
    inverted: Tensor
    refined: Tensor
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathSettings:
    """Sizes and constants of the differentiable path.

    Attributes:
        refine: the refine stage's :class:`~mvinvert_cli.refine.RefineSettings` (views, view size
            and background, Eq. 4 thresholds, λ): the inference pipeline's, so the encoder is trained
            on the views it will invert.
        render_size: S, side of the photo crop, its re-render and the identity renders (224 =
            Deep3DFaceRecon).
        encoder_size: side of the FFHQ-aligned crops fed to the encoder (256 for ReStyle).
        generator_stop: resolution the generator stops at during training (its skip-RGB image at
            that scale, a fraction of the 1024² cost); None = full size, exactly as the inference
            ``Inverter`` (which pools the 1024² output) — 256 differs from it only by that pooling.
        iterations: ReStyle residual passes per view during training; the passes before the last
            run without gradient (ReStyle's own training detaches them too).
        texture_size: T, side of the baked UV texture (Eq. 10).
        identity_renders: K of Eq. 9.
        max_yaw / max_pitch: range (degrees) of the random identity-render poses.
        expression_scale: std of the random expression coefficients (units of σ).
        light_scale: std of the random perturbation of the SH coefficients.
        min_irradiance: floor of the fitted irradiance when T_refine is de-lit for relighting.
    """

    refine: RefineSettings = field(default_factory=RefineSettings)
    render_size: int = cam.IMAGE_SIZE
    encoder_size: int = ENCODER_SIZE
    generator_stop: int | None = 256
    iterations: int = 1
    texture_size: int = 256
    identity_renders: int = 2
    max_yaw: float = 45.0
    max_pitch: float = 20.0
    expression_scale: float = 0.5
    light_scale: float = 0.1
    min_irradiance: float = 0.05

    @property
    def views(self) -> tuple[tuple[float, float], ...]:
        """The synthetic views (yaw, pitch) of :attr:`refine`."""
        return self.refine.views

    def to_opts(self) -> dict[str, Any]:
        """Plain dict for a checkpoint's ``opts["train_path"]`` (views as lists)."""
        opts = asdict(self)
        opts["refine"]["views"] = [list(v) for v in self.refine.views]
        return opts

    def updated(self, opts: Mapping[str, Any]) -> PathSettings:
        """These settings with the entries stored by :meth:`to_opts` (unknown keys ignored; older
        checkpoints kept the refine entries at the top level)."""
        names = {f.name for f in fields(RefineSettings)}
        refine_opts = dict(opts.get("refine") or {k: v for k, v in opts.items() if k in names})
        if "views" in refine_opts:
            refine_opts["views"] = tuple((float(y), float(p)) for y, p in refine_opts["views"])
        refined = replace(self.refine, **{k: v for k, v in refine_opts.items() if k in names})
        own = {f.name for f in fields(self)} - {"refine"}
        return replace(self, refine=refined, **{k: v for k, v in opts.items() if k in own})


# ----------------------------------------------------------------------------- helpers

def five_points(landmarks: Tensor) -> Tensor:
    """(..., 68, 2) iBUG landmarks → (..., 5, 2) [eyeL, eyeR, nose, mouthL, mouthR]."""
    return torch.stack([landmarks[..., list(ids), :].mean(dim=-2) for ids in FIVE_POINTS], dim=-2)


def relight(colors: Tensor, normals_fit: Tensor, gamma_fit: Tensor, normals: Tensor, gamma: Tensor,
            floor: float) -> Tensor:
    """Colours seen under the fitted SH lighting, re-shaded for new normals and lighting.

    T_refine holds lit colours (sampled from photos); dividing by the fitted irradiance
    (``lighting.shade`` of a white albedo, floored at ``floor``) estimates the albedo, which is then
    shaded with the new normals and SH coefficients. All (B,V,3); gamma (B,27).
    """
    white = torch.ones_like(colors)
    albedo = colors / shade(white, normals_fit, gamma_fit).clamp_min(floor)
    return shade(albedo, normals, gamma)


# ----------------------------------------------------------------------------- the path

class InversionPath(nn.Module):
    """renders → encoder → frozen generator → resample → Poisson stitch → re-render (differentiable).

    The refine part is the inference pipeline's own :func:`~mvinvert_cli.refine.refine` (views
    centred at the fitted depth, unlit on grey, T_uv and Eq. 4 scores of the photo, stitch anchored
    to T_uv with T_coarse as fallback), run differentiably, so the encoder is trained on what it
    will see.

    Args:
        model: the morphable model the photos were fitted with (topology, UVs, expression basis).
        encoder: ReStyle residual encoder (``invert.encoder.BackboneEncoder``), (B,6,s,s) in [−1,1]
            → Δ (B,L,D); the only trained part.
        decoder: StyleGAN2 generator (``invert.stylegan2.Generator``), w+ (B,L,D) → (B,3,R,R) in
            [−1,1]; frozen, fixed noise.
        latent_avg: (L,D) w̄; the first ReStyle pass starts from G(w̄).
        settings: :class:`PathSettings` (λ of Eq. 6 in ``settings.refine``).

    Batch fields read by :meth:`forward` (as ``mvinvert train`` prepares them, see
    :func:`mvinvert_cli.train.prepare.prepare_photo`): ``photo`` (B,3,S,S) crop in [0,1], ``mask``
    (B,1,S,S) face mask, ``vertices`` (B,V,3) fitted model-space shape, ``angles`` (B,3),
    ``translation`` (B,3), ``gamma`` (B,27), ``coarse`` (B,V,3) T_coarse; optionally ``t_uv``
    (B,V,3) and ``photo_scores`` (B,V) (else sampled from the crop).
    """

    def __init__(self, model: MorphableModel, encoder: nn.Module, decoder: nn.Module, latent_avg: Tensor,
                 settings: PathSettings = PathSettings()) -> None:
        super().__init__()
        self.model = model
        self.encoder = encoder
        self.decoder = decoder.eval().requires_grad_(False)
        self.register_buffer("latent_avg", latent_avg.detach().clone())
        self.settings = settings
        self.renderer = Renderer(size=settings.render_size)
        self.solver = PoissonSolver(model.mean_shape.detach().cpu(), model.triangles.cpu(), settings.refine.lam)
        self._uv_layout: UVLayout | None = None

    def _apply(self, fn, recurse=True):  # keep the (non-module) morphable model on the path's device
        super()._apply(fn, recurse)
        self.model = self.model.to(self.latent_avg.device)
        return self

    def train(self, mode: bool = True) -> InversionPath:  # the generator never leaves eval mode
        super().train(mode)
        self.decoder.eval()
        return self

    # ------------------------------------------------------------------ geometry and UV
    def pose(self, verts: Tensor, angles: Tensor, translation: Tensor) -> tuple[Tensor, Tensor]:
        """Model-space (B,V,3) → world vertices and pose-rotated unit normals (B,V,3)."""
        world = cam.transform(verts, angles, translation)
        normals = cam.transform(self.model.normals(verts), angles, torch.zeros_like(translation))
        return world, normals

    def bake_uv(self, colors: Tensor) -> Tensor:
        """(B,V,3) per-vertex colours → (B,3,T,T) seam-padded UV textures (``render.bake``)."""
        faces = self.model.triangles
        if self._uv_layout is None or self._uv_layout.mask.device != colors.device:
            self._uv_layout = uv_layout(self.model.uvs, faces, self.settings.texture_size)
        baked = [bake(c, faces, self._uv_layout).texture for c in colors]
        return torch.stack(baked).permute(0, 3, 1, 2)

    # ------------------------------------------------------------------ inversion (Eq. 2–3)
    def _stop(self) -> int | None:
        stop, size = self.settings.generator_stop, getattr(self.decoder, "size", None)
        return None if stop is None or size is None or stop >= size else stop

    def invert_views(self, images: Tensor, landmarks: Tensor) -> InversionResult:
        """The inference inversion (:func:`~mvinvert_cli.invert.inverter.encoder_inversion`) with the
        trained encoder: (M,3,H,W) views in [0,1] and their (M,68,2) projected landmarks → I_inv
        (M,3,H,W) in the render frame (Eq. 2–3). Only the last residual pass keeps the autograd
        graph (ReStyle trains every pass on its own detached input as well)."""
        s = self.settings
        return encoder_inversion(self.encoder, self.decoder, self.latent_avg, images, landmarks, s.encoder_size,
                                 max(s.iterations, 1), self._stop(), backend="restyle (training)",
                                 last_pass_grad=True)

    def invert(self, images: Tensor, landmarks: Tensor) -> Tensor:
        """:meth:`invert_views`' images."""
        return self.invert_views(images, landmarks).images

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Mapping[str, Tensor], gen: torch.Generator | None = None) -> PathOutputs:
        """The full differentiable path on a prepared batch (see the class docstring for fields)."""
        s = self.settings
        photo, coarse, verts = batch["photo"], batch["coarse"], batch["vertices"]
        faces = self.model.triangles
        world, normals = self.pose(verts, batch["angles"], batch["translation"])

        # reference photo at the fitted pose: T_uv and Eq. 4 scores (T = 50 px), cached or from the crop
        with torch.no_grad():
            fragments, screen, _ = self.renderer.rasterize(world, faces)
            if "t_uv" in batch and "photo_scores" in batch:
                t_uv, photo_scores = batch["t_uv"], batch["photo_scores"]
            else:
                on_photo = sample_vertices(photo, screen, faces, fragments=fragments)
                t_uv = on_photo.colors
                threshold = s.refine.threshold_at(s.refine.vis_threshold_photo, s.render_size)
                photo_scores = vertex_scores(normals, world, on_photo.visible, on_photo.boundary_distance, threshold)

        # §3.2 (Eq. 2–6): views of T_coarse → inversion → resample → stitch, as the pipeline runs it
        refined = refine(self.model, self.solver, self.invert_views,
                         RefineInputs(verts, batch["translation"], t_uv, photo_scores, coarse), s.refine,
                         differentiable=True)

        # Eq. 7–8, 11: re-render at the photo's pose (its fragments), blend into the photo
        render = interpolate(fragments, faces, refined.colors).permute(0, 3, 1, 2)
        mask = batch["mask"] * fragments.mask[:, None].to(refined.colors.dtype)
        blended = blend_face(render, photo, mask)
        id_renders, id_points = self.identity_renders(verts, refined.colors, normals, batch, gen)
        return PathOutputs(photo, mask, blended, id_renders, id_points, self.bake_uv(refined.colors),
                           refined.view_renders, refined.view_landmarks, refined.inverted, refined.colors,
                           refined.notes)

    def identity_renders(self, verts: Tensor, refined: Tensor, normals_fit: Tensor, batch: Mapping[str, Tensor],
                         gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Eq. 9's K renders of T_refine per photo under random pose, expression and lighting.

        Yaw and pitch are uniform in ±``max_yaw`` / ±``max_pitch`` (face centred like the synthetic
        views), a random expression N(0, ``expression_scale``²) in the model's expression basis is
        added to the fitted shape (none for a model without one), and the fitted SH coefficients
        get an N(0, ``light_scale``²) perturbation (:func:`relight`). Draws come from ``gen`` (the
        step's generator) so a resumed run repeats them.

        Returns:
            renders (B,K,3,S,S) and their 5 landmarks (B,K,5,2) in px.
        """
        s = self.settings
        b, k = refined.shape[0], s.identity_renders
        device, dtype = refined.device, refined.dtype
        cpu = torch.device("cpu") if gen is None else gen.device
        uniform = torch.rand(b * k, 2, generator=gen, device=cpu).to(device, dtype) * 2 - 1
        yaw, pitch = uniform[:, 0] * s.max_yaw, uniform[:, 1] * s.max_pitch
        angles = torch.deg2rad(torch.stack([pitch, yaw, torch.zeros_like(yaw)], dim=-1))
        translation = torch.zeros(b * k, 3, device=device, dtype=dtype)
        translation[:, 2] = batch["translation"][:, 2].repeat_interleave(k)
        verts_k = verts.repeat_interleave(k, dim=0)
        if self.model.n_exp:
            exp = torch.randn(b * k, self.model.n_exp, generator=gen, device=cpu).to(device, dtype)
            verts_k = verts_k + torch.einsum("vck,bk->bvc", self.model.exp_base, exp * s.expression_scale)
        gamma_fit = batch["gamma"].repeat_interleave(k, dim=0)
        noise = torch.randn(b * k, gamma_fit.shape[-1], generator=gen, device=cpu).to(device, dtype)
        world, normals = self.pose(verts_k, angles, translation)
        colors = relight(refined.repeat_interleave(k, dim=0), normals_fit.repeat_interleave(k, dim=0), gamma_fit,
                         normals, gamma_fit + noise * s.light_scale, s.min_irradiance)
        rendering = self.renderer.render(world, self.model.triangles, colors)
        points = five_points(self.model.landmarks(rendering.screen[..., :2]))
        size = s.render_size
        return rendering.image.view(b, k, 3, size, size), points.view(b, k, 5, 2)
