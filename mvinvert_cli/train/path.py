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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DEFAULT_VIEWS
from ..morphable import camera as cam
from ..morphable.model import MorphableModel
from ..render.rasterize import Fragments, interpolate, rasterize
from ..texture.bake import bake, uv_fragments
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
        views: (B,N,3,S,S) coarse renders I_R^i; inverted: (B,N,3,S,S) I_inv^i.
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
    inverted: Tensor
    refined: Tensor
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathSettings:
    """Sizes and constants of the differentiable path.

    Attributes:
        views: (yaw, pitch) degrees of the synthetic views (DESIGN.md §4: 0, ±30, pitch −15).
        render_size: S, side of the photo crop and of every render (224 = Deep3DFaceRecon).
        encoder_size: side the views are resized to for the encoder (256 for ReStyle).
        iterations: ReStyle residual passes per view during training; the passes before the last
            run without gradient (ReStyle's own training detaches them too).
        vis_threshold_photo / vis_threshold_view: T of Eq. 4 in px at ``render_size``·224/224.
        texture_size: T, side of the baked UV texture (Eq. 10).
        identity_renders: K of Eq. 9.
        max_yaw / max_pitch: range (degrees) of the random identity-render poses.
        expression_scale: std of the random expression coefficients (units of σ).
        light_scale: std of the random perturbation of the SH coefficients.
    """

    views: tuple[tuple[float, float], ...] = DEFAULT_VIEWS
    render_size: int = 224
    encoder_size: int = 256
    iterations: int = 1
    vis_threshold_photo: float = 50.0
    vis_threshold_view: float = 3.0
    texture_size: int = 256
    identity_renders: int = 2
    max_yaw: float = 45.0
    max_pitch: float = 20.0
    expression_scale: float = 0.5
    light_scale: float = 0.1

    @property
    def threshold_scale(self) -> float:
        """Eq. 4 thresholds are stated at 224 px; scale them with the render size."""
        return self.render_size / cam.IMAGE_SIZE


# ----------------------------------------------------------------------------- geometry helpers

def view_pose(views: Sequence[tuple[float, float]], translation: Tensor) -> tuple[Tensor, Tensor]:
    """Poses of the synthetic views: angles (pitch, yaw, 0) and the face centred at the fitted depth.

    Args:
        views: N (yaw, pitch) in degrees.
        translation: (B,3) fitted translations.

    Returns:
        angles (B·N,3) radians and translations (B·N,3), photo-major (b, then view).
    """
    b, n = translation.shape[0], len(views)
    deg = translation.new_tensor([[pitch, yaw, 0.0] for yaw, pitch in views])  # (N,3)
    angles = torch.deg2rad(deg).repeat(b, 1)
    centred = torch.zeros_like(translation)
    centred[:, 2] = translation[:, 2]
    return angles, centred.repeat_interleave(n, dim=0)


def five_points(landmarks: Tensor) -> Tensor:
    """(..., 68, 2) iBUG landmarks → (..., 5, 2) [eyeL, eyeR, nose, mouthL, mouthR]."""
    return torch.stack([landmarks[..., list(ids), :].mean(dim=-2) for ids in FIVE_POINTS], dim=-2)


# ----------------------------------------------------------------------------- the path

class InversionPath(nn.Module):
    """renders → encoder → frozen generator → resample → Poisson stitch → re-render (differentiable).

    Args:
        model: the morphable model the photos were fitted with (topology, UVs, bases).
        encoder: ReStyle residual encoder, (B,6,s,s) in [−1,1] → (B,n_styles,style_dim) (trained).
        decoder: StyleGAN2 generator, w+ (B,n_styles,style_dim) → (B,3,R,R) in [−1,1] (frozen).
        latent_avg: (n_styles,style_dim) w̄, the first ReStyle pass starts from G(w̄).
        settings: :class:`PathSettings`.
        lam: λ of Eq. 6.

    Batch fields read by :meth:`forward` (as prepared by ``mvinvert train``): ``photo`` (B,3,S,S),
    ``mask`` (B,1,S,S), ``id`` (B,Ki), ``exp`` (B,Ke), ``angles`` (B,3), ``translation`` (B,3),
    ``gamma`` (B,27), ``coarse`` (B,V,3) T_coarse.
    """

    def __init__(self, model: MorphableModel, encoder: nn.Module, decoder: nn.Module, latent_avg: Tensor,
                 settings: PathSettings = PathSettings(), lam: float = 0.1) -> None:
        super().__init__()
        self.model = model
        self.encoder = encoder
        self.decoder = decoder.eval().requires_grad_(False)
        self.register_buffer("latent_avg", latent_avg.detach().clone())
        self.settings = settings
        self.camera = cam.Camera().resized(settings.render_size)
        self.solver = PoissonSolver(model.mean_shape, model.triangles, lam)
        self._uv_fragments = None

    def train(self, mode: bool = True) -> InversionPath:  # the generator never leaves eval mode
        super().train(mode)
        self.decoder.eval()
        return self

    def restyle_opts(self) -> dict[str, Any]:
        """The ``opts`` of a ReStyle checkpoint holding this encoder and generator."""
        opts = dict(getattr(self.encoder, "opts", {}) or {})
        opts.update(getattr(self.decoder, "opts", {}) or {})
        opts.setdefault("n_iters_per_batch", max(self.settings.iterations, 1))
        opts["input_nc"] = 6
        return opts

    # ------------------------------------------------------------------ rendering
    def _faces(self, device: torch.device) -> Tensor:
        return self.model.triangles.to(device)

    def project(self, verts: Tensor, angles: Tensor, translation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Model-space (B,V,3) → world vertices, world normals and screen vertices (B,V,3) each."""
        world = cam.transform(verts, angles, translation)
        normals = cam.transform(self.model.normals(verts), angles, torch.zeros_like(translation))
        return world, normals, self.camera.project(world)

    def render(self, screen: Tensor, colors: Tensor, fragments: Fragments | None = None
               ) -> tuple[Tensor, Tensor, Fragments]:
        """Unlit render of per-vertex colours (B,V,C): image (B,C,S,S), coverage (B,1,S,S), fragments."""
        size = self.settings.render_size
        faces = self._faces(screen.device)
        if fragments is None:
            fragments = rasterize(screen, faces, (size, size))
        image = interpolate(fragments, faces, colors).permute(0, 3, 1, 2)
        return image, fragments.mask[:, None].to(colors.dtype), fragments

    def scores(self, sampled: Sampled, world: Tensor, normals: Tensor, threshold: float) -> Tensor:
        """Eq. 4 per-vertex scores (B,V) from a :func:`~mvinvert_cli.texture.sample.sample_vertices` result."""
        return vertex_scores(normals, world, sampled.visible, sampled.boundary_distance,
                             threshold * self.settings.threshold_scale).detach()

    def bake_uv(self, colors: Tensor) -> Tensor:
        """(B,V,3) per-vertex colours → (B,3,T,T) seam-padded UV textures (u right, v up)."""
        faces = self._faces(colors.device)
        if self._uv_fragments is None or self._uv_fragments.pix_to_face.device != colors.device:
            self._uv_fragments = uv_fragments(self.model.uvs.to(colors.device), faces, self.settings.texture_size)
        baked = [bake(c, self.model.uvs, faces, fragments=self._uv_fragments).texture for c in colors]
        return torch.stack(baked).permute(0, 3, 1, 2)

    # ------------------------------------------------------------------ inversion (Eq. 2–3)
    def decode(self, w_plus: Tensor) -> Tensor:
        """G(w+) in [0,1] at the generator's resolution (frozen weights, gradients to w+)."""
        return ((self.decoder(w_plus) + 1) / 2).clamp(0, 1)

    def invert(self, images: Tensor) -> Tensor:
        """ReStyle residual passes on (M,3,S,S) views → I_inv (M,3,S,S) in [0,1] (Eq. 2–3)."""
        s = self.settings
        target = F.interpolate(images, size=(s.encoder_size,) * 2, mode="bilinear", align_corners=False) * 2 - 1
        w = self.latent_avg.expand(images.shape[0], *self.latent_avg.shape)
        with torch.no_grad():
            current = self._to_encoder(self.decode(self.latent_avg[None])).expand_as(target)
        for it in range(max(s.iterations, 1)):
            last = it == max(s.iterations, 1) - 1
            with torch.set_grad_enabled(last and torch.is_grad_enabled()):
                w = w + self.encoder(torch.cat([target, current], dim=1))  # Eq. 2
                out = self.decode(w)  # Eq. 3
            current = self._to_encoder(out) if last else self._to_encoder(out).detach()
            w = w if last else w.detach()
        return F.interpolate(out, size=(s.render_size,) * 2, mode="bilinear", align_corners=False)

    def _to_encoder(self, images01: Tensor) -> Tensor:
        size = self.settings.encoder_size
        return F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False) * 2 - 1

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Mapping[str, Tensor], gen: torch.Generator | None = None) -> PathOutputs:
        """The full differentiable path on a prepared batch (see the class docstring for fields)."""
        s = self.settings
        photo, coarse = batch["photo"], batch["coarse"]
        b, n = photo.shape[0], len(s.views)
        verts = self.model.shape(batch.get("id"), batch.get("exp"))  # (B,V,3) Eq. 1
        world, normals, screen = self.project(verts, batch["angles"], batch["translation"])

        faces = self._faces(photo.device)

        # reference photo: colours and Eq. 4 scores at the fitted pose (T = 50 px)
        with torch.no_grad():
            on_photo = sample_vertices(photo, screen, faces)
        photo_scores = self.scores(on_photo, world, normals, s.vis_threshold_photo)

        # synthetic views of T_coarse and their GAN inversions, resampled per vertex
        angles_v, trans_v = view_pose(s.views, batch["translation"])
        world_v, normals_v, screen_v = self.project(verts.repeat_interleave(n, dim=0), angles_v, trans_v)
        with torch.no_grad():
            views, _, fragments_v = self.render(screen_v, coarse.repeat_interleave(n, dim=0))
        inverted = self.invert(views)  # (B·N,3,S,S)
        on_views = sample_vertices(inverted, screen_v, faces, fragments=fragments_v)
        view_scores = self.scores(on_views, world_v, normals_v, s.vis_threshold_view)

        # Eq. 5–6 per photo
        refined, notes = [], []
        for i in range(b):
            result = stitch(self.solver, on_photo.colors[i], photo_scores[i], on_views.colors[i * n:(i + 1) * n],
                            view_scores[i * n:(i + 1) * n], fallback=coarse[i])
            refined.append(result.colors)
            notes += [note for note in result.notes if note not in notes]
        refined = torch.stack(refined)  # (B,V,3) T_refine

        # Eq. 7–8, 11: re-render at the photo's pose and blend
        render, coverage, _ = self.render(screen, refined, on_photo.fragments)
        mask = batch["mask"] * coverage
        blended = blend_face(render, photo, mask)
        id_renders, id_points = self.identity_renders(verts, refined, batch, gen)
        return PathOutputs(photo, mask, blended, id_renders, id_points, self.bake_uv(refined),
                           views.view(b, n, *views.shape[1:]), inverted.view(b, n, *inverted.shape[1:]),
                           refined, tuple(notes))

    def identity_renders(self, verts: Tensor, refined: Tensor, batch: Mapping[str, Tensor],
                         gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Eq. 9's K renders of T_refine per photo under random pose, expression and lighting.

        Yaw and pitch are uniform in ±``max_yaw`` / ±``max_pitch``, expression coefficients
        N(0, ``expression_scale``²) replace the fitted ones, and the fitted SH coefficients get an
        N(0, ``light_scale``²) perturbation. All draws come from ``gen`` (per-step seeded).

        Returns:
            renders (B,K,3,S,S) and their 5 landmarks (B,K,5,2) in px.
        """
        s = self.settings
        b, k = refined.shape[0], s.identity_renders
        device, dtype = refined.device, refined.dtype

        def uniform(*shape: int) -> Tensor:
            return (torch.rand(*shape, generator=gen, device=gen.device if gen else None) * 2 - 1).to(device, dtype)

        def normal(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen, device=gen.device if gen else None).to(device, dtype)

        yaw, pitch = uniform(b * k) * s.max_yaw, uniform(b * k) * s.max_pitch
        angles = torch.deg2rad(torch.stack([pitch, yaw, torch.zeros_like(yaw)], dim=-1))
        translation = torch.zeros(b * k, 3, device=device, dtype=dtype)
        translation[:, 2] = batch["translation"][:, 2].repeat_interleave(k)
        exp = None
        if self.model.n_exp:
            exp = normal(b * k, self.model.n_exp) * s.expression_scale
        shape_id = batch.get("id")
        verts_k = self.model.shape(None if shape_id is None else shape_id.repeat_interleave(k, dim=0), exp)
        if exp is None:
            verts_k = verts.repeat_interleave(k, dim=0)
        world, normals, screen = self.project(verts_k, angles, translation)
        colors = refined.repeat_interleave(k, dim=0)
        image, _, _ = self.render(screen, colors)
        points = five_points(self.model.landmarks(screen[..., :2]))
        size = self.settings.render_size
        return image.view(b, k, 3, size, size), points.view(b, k, 5, 2)
