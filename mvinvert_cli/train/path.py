"""The differentiable MvInvert path used for training (§3.2–3.3):

    T_coarse ──render views──▶ I_R^i ──encoder (ReStyle residuals, Eq. 2)──▶ w_i ──G (frozen, Eq. 3)──▶
    I_inv^i ──resample per vertex──▶ c_i ──Eq. 5 selection + screened Poisson (Eq. 6)──▶ T_refine
    ──re-render at the photo's pose──▶ Î (blended into the photo, Eq. 7–8, 11)
                ──K random renders (pose, expression, lighting)──▶ R_k (Eq. 9)
                ──UV bake──▶ UV texture (Eq. 10)

Only the encoder has trainable parameters; the view renders and all visibility scores are
constants of the data, and gradients reach the encoder through the generator, the bilinear
resampling and the custom-autograd Poisson solve (:func:`mvinvert_cli.texture.stitch.stitch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import DEFAULT_VIEWS
from ..invert.ffhq_align import align_views, unalign
from ..invert.restyle import average_image, pool_to, to_signed, to_unit
from ..morphable.model import MorphableModel
from ..render import camera as cam
from ..render.bake import UVLayout, bake, uv_layout
from ..render.lighting import shade
from ..render.rasterize import interpolate
from ..render.renderer import Renderer
from ..texture.poisson import PoissonSolver
from ..texture.sample import Sampled, sample_vertices
from ..texture.stitch import stitch
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
        views: (B,N,3,H,H) coarse renders I_R^i (H = view_size); view_landmarks: (B,N,68,2) their
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
        views: (yaw, pitch) degrees of the synthetic views (DESIGN.md §4: 0, ±30, pitch −15).
        render_size: S, side of the photo crop, its re-render and the identity renders (224 =
            Deep3DFaceRecon).
        view_size: side of the synthetic views handed to the encoder (the pipeline's
            ``VIEW_RENDER_SIZE``, 512); view_background: their grey behind the face.
        encoder_size: side of the FFHQ-aligned crops fed to the encoder (256 for ReStyle).
        generator_stop: resolution the generator stops at during training (its skip-RGB image at
            that scale, a fraction of the 1024² cost); None = full size, exactly as the inference
            ``Inverter`` (which pools the 1024² output) — 256 differs from it only by that pooling.
        iterations: ReStyle residual passes per view during training; the passes before the last
            run without gradient (ReStyle's own training detaches them too).
        vis_threshold_photo / vis_threshold_view: T of Eq. 4 in px at 224 (scaled with each render).
        texture_size: T, side of the baked UV texture (Eq. 10).
        identity_renders: K of Eq. 9.
        max_yaw / max_pitch: range (degrees) of the random identity-render poses.
        expression_scale: std of the random expression coefficients (units of σ).
        light_scale: std of the random perturbation of the SH coefficients.
        min_irradiance: floor of the fitted irradiance when T_refine is de-lit for relighting.
    """

    views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS
    render_size: int = 224
    view_size: int = 512
    view_background: float = 0.5
    encoder_size: int = 256
    generator_stop: int | None = 256
    iterations: int = 1
    vis_threshold_photo: float = 50.0
    vis_threshold_view: float = 3.0
    texture_size: int = 256
    identity_renders: int = 2
    max_yaw: float = 45.0
    max_pitch: float = 20.0
    expression_scale: float = 0.5
    light_scale: float = 0.1
    min_irradiance: float = 0.05

    def threshold_scale(self, size: int) -> float:
        """Eq. 4 thresholds are stated at 224 px; a render of side ``size`` scales them."""
        return size / cam.IMAGE_SIZE


# ----------------------------------------------------------------------------- helpers

def view_poses(views: Sequence[tuple[float, float]], translation: Tensor) -> tuple[Tensor, Tensor]:
    """Poses of the synthetic views, as the pipeline renders them: angles (pitch, yaw, 0) and the
    face centred on the optical axis at its fitted depth (0, 0, t_z).

    Args:
        views: N (yaw, pitch) in degrees.
        translation: (B,3) fitted translations.

    Returns:
        angles (B·N,3) radians and translations (B·N,3), photo-major (b, then view).
    """
    b, n = translation.shape[0], len(views)
    angles = torch.deg2rad(translation.new_tensor([[pitch, yaw, 0.0] for yaw, pitch in views])).repeat(b, 1)
    centred = torch.zeros_like(translation)
    centred[:, 2] = translation[:, 2]
    return angles, centred.repeat_interleave(n, dim=0)


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

    Mirrors the inference pipeline's refine stage (``pipeline.Recoverer``: views centred at the
    fitted depth, unlit on grey, T_uv and Eq. 4 scores of the photo, stitch anchored to T_uv with
    T_coarse as fallback) so the encoder is trained on what it will see.

    Args:
        model: the morphable model the photos were fitted with (topology, UVs, expression basis).
        encoder: ReStyle residual encoder (``invert.encoder.BackboneEncoder``), (B,6,s,s) in [−1,1]
            → Δ (B,L,D); the only trained part.
        decoder: StyleGAN2 generator (``invert.stylegan2.Generator``), w+ (B,L,D) → (B,3,R,R) in
            [−1,1]; frozen, fixed noise.
        latent_avg: (L,D) w̄; the first ReStyle pass starts from G(w̄).
        settings: :class:`PathSettings`.
        lam: λ of Eq. 6.

    Batch fields read by :meth:`forward` (as ``mvinvert train`` prepares them, see
    :func:`mvinvert_cli.train.prepare.prepare_photo`): ``photo`` (B,3,S,S) crop in [0,1], ``mask``
    (B,1,S,S) face mask, ``vertices`` (B,V,3) fitted model-space shape, ``angles`` (B,3),
    ``translation`` (B,3), ``gamma`` (B,27), ``coarse`` (B,V,3) T_coarse; optionally ``t_uv``
    (B,V,3) and ``photo_scores`` (B,V) (else sampled from the crop).
    """

    def __init__(self, model: MorphableModel, encoder: nn.Module, decoder: nn.Module, latent_avg: Tensor,
                 settings: PathSettings = PathSettings(), lam: float = 0.1) -> None:
        super().__init__()
        self.model = model
        self.encoder = encoder
        self.decoder = decoder.eval().requires_grad_(False)
        self.register_buffer("latent_avg", latent_avg.detach().clone())
        self.settings = settings
        self.renderer = Renderer(size=settings.render_size)
        self.view_renderer = Renderer(size=settings.view_size, background=settings.view_background)
        self.solver = PoissonSolver(model.mean_shape.detach().cpu(), model.triangles.cpu(), lam)
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

    def scores(self, sampled: Sampled, world: Tensor, normals: Tensor, threshold: float, size: int) -> Tensor:
        """Eq. 4 per-vertex scores (B,V) of a render of side ``size`` (threshold given at 224 px)."""
        return vertex_scores(normals, world, sampled.visible, sampled.boundary_distance,
                             threshold * self.settings.threshold_scale(size)).detach()

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

    def invert(self, images: Tensor, landmarks: Tensor) -> Tensor:
        """The inference ``Inverter`` made differentiable: (M,3,H,W) views in [0,1] and their (M,68,2)
        projected landmarks → I_inv (M,3,H,W) in [0,1] in the render frame (Eq. 2–3).

        Each view is FFHQ-aligned from its landmarks (``invert.ffhq_align.align_views``), inverted
        by ReStyle residual passes (pass 0 against G(w̄), pass t against the previous
        reconstruction; each adds the encoder's Δ to w), warped back (``unalign``) and composed
        over the render where the crop covers it. Only the last pass keeps the autograd graph
        (ReStyle trains every pass on its own detached input as well).
        """
        s = self.settings
        passes = max(s.iterations, 1)
        with torch.no_grad():
            target = to_signed(align_views(images, landmarks, s.encoder_size))
            current = average_image(self.decoder, self.latent_avg, s.encoder_size, self._stop())
        current = current.expand_as(target)
        w = self.latent_avg.expand(images.shape[0], *self.latent_avg.shape)
        for it in range(passes):
            last = it == passes - 1
            with torch.set_grad_enabled(last and torch.is_grad_enabled()):
                w = w + self.encoder(torch.cat([target, current], dim=1))  # Eq. 2
                out = self.decoder(w, stop_at=self._stop())  # Eq. 3
                current = pool_to(out, s.encoder_size)
        warped, coverage = unalign(to_unit(out), landmarks, tuple(images.shape[-2:]))
        return coverage * warped + (1 - coverage) * images

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Mapping[str, Tensor], gen: torch.Generator | None = None) -> PathOutputs:
        """The full differentiable path on a prepared batch (see the class docstring for fields)."""
        s = self.settings
        photo, coarse, verts = batch["photo"], batch["coarse"], batch["vertices"]
        b, n = photo.shape[0], len(s.views)
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
                photo_scores = self.scores(on_photo, world, normals, s.vis_threshold_photo, s.render_size)

        # synthetic views of T_coarse (unlit, grey background), their GAN inversions, resampled per vertex
        angles_v, trans_v = view_poses(s.views, batch["translation"])
        world_v, normals_v = self.pose(verts.repeat_interleave(n, dim=0), angles_v, trans_v)
        with torch.no_grad():
            views = self.view_renderer.render(world_v, faces, coarse.repeat_interleave(n, dim=0))
        view_landmarks = self.model.landmarks(views.screen[..., :2])  # (B·N,68,2)
        inverted = self.invert(views.image, view_landmarks)  # (B·N,3,H,W)
        on_views = sample_vertices(inverted, views.screen, faces, fragments=views.fragments)
        view_scores = self.scores(on_views, world_v, normals_v, s.vis_threshold_view, s.view_size)

        # Eq. 5–6 per photo: T_refine
        refined, notes = [], []
        for i in range(b):
            result = stitch(self.solver, t_uv[i], photo_scores[i], on_views.colors[i * n:(i + 1) * n],
                            view_scores[i * n:(i + 1) * n], fallback=coarse[i])
            refined.append(result.colors)
            notes += [note for note in result.notes if note not in notes]
        refined = torch.stack(refined)  # (B,V,3)

        # Eq. 7–8, 11: re-render at the photo's pose (its fragments), blend into the photo
        render = interpolate(fragments, faces, refined).permute(0, 3, 1, 2)
        mask = batch["mask"] * fragments.mask[:, None].to(refined.dtype)
        blended = blend_face(render, photo, mask)
        id_renders, id_points = self.identity_renders(verts, refined, normals, batch, gen)
        size = s.view_size
        return PathOutputs(photo, mask, blended, id_renders, id_points, self.bake_uv(refined),
                           views.image.view(b, n, 3, size, size), view_landmarks.view(b, n, 68, 2),
                           inverted.view(b, n, 3, size, size),
                           refined, tuple(notes))

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
