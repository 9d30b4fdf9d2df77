"""Fitting a morphable model to one face: coefficients, pose and SH lighting (MvInvert §3.1).

Two paths, one :class:`FitResult`:

- **PCA models (BFM)**: pose initialised from the 68 landmarks (weak-perspective Procrustes, then
  Gauss–Newton PnP in the Deep3DFaceRecon camera) or from the Deep3DFaceRecon regressor; then the
  authors' schedule (DESIGN.md §4): a rigid stage (angles, translation; landmark loss) and a
  non-rigid stage (all coefficients) of Adam steps at lr 0.01 minimising

      L = w_lm·L_lm + w_photo·L_photo + w_reg·L_reg (+ w_gamma·L_gamma)

  with weights 100 / 1.6 / 1e-3 (``config.Settings``). L_lm = Σ_i ŵ_i‖p_i − q_i‖²/S² (normalised
  weights, nose ridge and mouth ×10, S = crop side); L_photo = masked mean over face pixels of the
  per-pixel RGB distance ‖I − Î‖ (Deep3DFaceRecon ``photo_loss``); L_reg = ‖α‖² + 0.8‖β‖² +
  0.017‖δ‖² (Deep3DFaceRecon ``reg_loss``, coefficients in σ units); L_gamma = the spread of the
  27 SH coefficients across colour channels (Deep3DFaceRecon ``gamma_loss``, monochrome light).
  The rasteriser's face-per-pixel map is refreshed every ``raster_every`` steps; barycentrics are
  recomputed from the current vertices at every step (differentiable).
- **the default model** (no PCA, ``morphable/default.py``): the 478 dense landmarks are
  unprojected into the Deep3DFaceRecon camera (depth chosen so the face has the canonical mesh's
  size), a similarity Procrustes gives the pose, the shape is the landmarks brought back to model
  space and spread to the dense mesh through the barycentric embedding; SH lighting and the albedo
  (T_pca) come from a least-squares fit to the visible skin colours, mirrored onto hidden vertices,
  with the mean skin albedo elsewhere.

All image-space quantities live in the 224×224 fitting crop of the :class:`Observation`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..config import Settings
from ..errors import NoFaceError
from ..render import lighting
from ..render.camera import Camera, rotation_matrix, rotation_to_angles, transform
from .model import MorphableModel

if TYPE_CHECKING:
    from ..align.observation import Observation
    from .regressor import Regressor

NOSE_MOUTH_WEIGHT = 10.0
REG_EXP, REG_TEX = 0.8, 1.7e-2  # Deep3DFaceRecon reg_loss relative weights (identity = 1)
W_GAMMA = 10.0  # Deep3DFaceRecon gamma_loss weight (relative to its photometric 1.92)
RASTER_EVERY = 5
REGRESSOR_SIZES = (80, 64, 80)  # Deep3DFaceRecon heads (FORMATS.md §1h)
MAX_INIT_VERTICES = 4000  # vertices used by the closed-form appearance start
PHOTO_EPS = 1e-8


def landmark_weights(device: Any = None) -> torch.Tensor:
    """(68,) weights summing to 1: nose ridge (28–30) and mouth (48–67) ×10."""
    w = torch.ones(68, device=device)
    w[28:31] = NOSE_MOUTH_WEIGHT
    w[48:68] = NOSE_MOUTH_WEIGHT
    return w / w.sum()


@dataclass(frozen=True)
class FitResult:
    """A fitted face in the Deep3DFaceRecon camera (224×224 crop; world = decimetres).

    Attributes:
        model_name: :attr:`MorphableModel.name` of the fitted model.
        id_coeff: (Ki,) identity coefficients α (σ units; empty for the default model).
        exp_coeff: (Ke,) expression coefficients β.
        tex_coeff: (Kt,) albedo coefficients δ (empty when the model has no PCA albedo).
        angles: (3,) rotation angles (x, y, z) in radians, R = Rz·Ry·Rx (``camera.rotation_matrix``).
        translation: (3,) world translation; world = v·Rᵀ + t.
        gamma: (27,) SH lighting, R block, G block, B block of 9 (ambient 0.8 added by the shader).
        vertices: (V, 3) model-space vertices after shape and expression (Eq. 1).
        world_vertices: (V, 3) vertices in world/camera space (``camera.transform``).
        normals: (V, 3) unit model-space vertex normals (rotate by R for world normals).
        t_pca: (V, 3) per-vertex albedo T_pca in [0, 1] (Eq. 1 for PCA models; the estimated
            statistical fill for the default model).
        landmarks_2d: (68, 2) projected model landmarks in crop pixels (screen convention).
        target_landmarks: (68, 2) the observed landmarks in crop pixels.
        losses: scalar diagnostics: ``landmark_px`` (mean reprojection error, px), ``photo_initial``
            / ``photo_final`` (L_photo before/after fitting, when computed), ``total``.
        backend: how the fit was made ("adam" for PCA models, "dense-landmarks" for the default).
        init: initialisation ("landmarks-pnp": PnP + linear shape fit to the 68 landmarks, "regressor",
            "dense-procrustes" and "pnp-68" for the default model).
        timings: seconds per stage.
        notes: degraded paths and remarks for result.json.
    """

    model_name: str
    id_coeff: torch.Tensor
    exp_coeff: torch.Tensor
    tex_coeff: torch.Tensor
    angles: torch.Tensor
    translation: torch.Tensor
    gamma: torch.Tensor
    vertices: torch.Tensor
    world_vertices: torch.Tensor
    normals: torch.Tensor
    t_pca: torch.Tensor
    landmarks_2d: torch.Tensor
    target_landmarks: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)
    backend: str = ""
    init: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def rotation(self) -> torch.Tensor:
        """(3, 3) R = Rz·Ry·Rx."""
        return rotation_matrix(self.angles)

    @property
    def world_normals(self) -> torch.Tensor:
        """(V, 3) normals rotated into world space."""
        return self.normals @ self.rotation.T

    def coefficients(self) -> torch.Tensor:
        """Deep3DFaceRecon layout: id | exp | tex | angles | gamma | translation (257 for BFM)."""
        return torch.cat([self.id_coeff, self.exp_coeff, self.tex_coeff, self.angles, self.gamma,
                          self.translation])

    def arrays(self) -> dict[str, np.ndarray]:
        """numpy arrays for ``fit.npz``."""
        names = ("id_coeff", "exp_coeff", "tex_coeff", "angles", "translation", "gamma", "vertices",
                 "world_vertices", "normals", "t_pca", "landmarks_2d", "target_landmarks")
        out = {n: getattr(self, n).detach().cpu().numpy() for n in names}
        out["coefficients"] = self.coefficients().detach().cpu().numpy()
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready: model, backend, pose in degrees, coefficient vectors, losses, timings, notes."""
        def rounded(t: torch.Tensor, digits: int = 5) -> list[float]:
            return [round(float(x), digits) for x in t.detach().cpu().reshape(-1)]

        return {
            "model": self.model_name, "backend": self.backend, "init": self.init,
            "angles_deg": rounded(torch.rad2deg(self.angles), 3), "translation": rounded(self.translation),
            "id": rounded(self.id_coeff), "exp": rounded(self.exp_coeff), "tex": rounded(self.tex_coeff),
            "gamma": rounded(self.gamma), "losses": {k: round(v, 6) for k, v in self.losses.items()},
            "timings": {k: round(v, 4) for k, v in self.timings.items()}, "notes": list(self.notes),
        }


# ---------------------------------------------------------------------- pose from landmarks

def umeyama(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity dst ≈ s·R·src + t in least squares (Umeyama 1991).

    Args:
        src, dst: (N, 3) corresponding points.

    Returns:
        s scalar tensor, R (3, 3) proper rotation, t (3,).
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vh = torch.linalg.svd(cov)
    d = torch.ones(3, dtype=src.dtype, device=src.device)
    d[2] = torch.sign(torch.linalg.det(u @ vh))
    rot = u @ torch.diag(d) @ vh
    scale = (sig * d).sum() / a.pow(2).sum(1).mean()
    return scale, rot, mu_d - scale * rot @ mu_s


def weak_perspective_pose(points3d: torch.Tensor, points2d: torch.Tensor, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form pose from 2D–3D correspondences under scaled orthography.

    Solves q ≈ A·P + b for the normalised image points q = ((x − c)/f, (c − y)/f), takes the nearest
    rotation to A's rows and 1/mean row norm as the depth Z̄ (t_z = d − Z̄, t_xy = b·Z̄).

    Args:
        points3d: (N, 3) model space; points2d: (N, 2) screen pixels.

    Returns:
        angles (3,), translation (3,).
    """
    q = torch.stack([(points2d[:, 0] - camera.center) / camera.focal,
                     (camera.center - points2d[:, 1]) / camera.focal], 1).double()
    design = torch.cat([points3d.double(), torch.ones_like(points3d[:, :1]).double()], 1)
    sol = torch.linalg.lstsq(design, q).solution  # (4, 2)
    a, b = sol[:3].T, sol[3]
    scale = 0.5 * (a[0].norm() + a[1].norm())
    r3 = torch.linalg.cross(a[0], a[1])
    u, _, vh = torch.linalg.svd(torch.stack([a[0], a[1], r3 / r3.norm() * scale]))
    rot = u @ vh
    if torch.linalg.det(rot) < 0:
        rot = u @ torch.diag(rot.new_tensor([1.0, 1.0, -1.0])) @ vh
    depth = 1.0 / scale
    translation = torch.stack([b[0] * depth, b[1] * depth, camera.distance - depth])
    return rotation_to_angles(rot).to(points3d.dtype), translation.to(points3d.dtype)


def refine_pose(points3d: torch.Tensor, points2d: torch.Tensor, camera: Camera, angles: torch.Tensor,
                translation: torch.Tensor, weights: torch.Tensor | None = None,
                iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss–Newton (Levenberg-damped) PnP: minimise Σ w_i‖project(P_i·Rᵀ + t) − p_i‖² over 6 pose values.

    The (2N, 6) Jacobian is taken by central differences in float64 (12 cheap residual evaluations).
    """
    w = torch.ones(len(points3d), dtype=torch.float64, device=points3d.device) if weights is None else weights.double()
    p3, p2 = points3d.double(), points2d.double()
    sqrt_w = w.sqrt()[:, None]

    def residual(theta: torch.Tensor) -> torch.Tensor:
        world = p3 @ rotation_matrix(theta[:3]).T + theta[3:]
        return ((camera.project(world)[:, :2] - p2) * sqrt_w).reshape(-1)

    theta = torch.cat([angles, translation]).double()
    damping = 1e-3
    cost = residual(theta).pow(2).sum()
    for _ in range(iterations):
        eye = torch.eye(6, dtype=theta.dtype, device=theta.device) * 1e-6
        jac = torch.stack([(residual(theta + e) - residual(theta - e)) / 2e-6 for e in eye], dim=1)
        r = residual(theta)
        jtj = jac.T @ jac
        step = torch.linalg.solve(jtj + damping * torch.diag(jtj.diagonal() + 1e-9), -jac.T @ r)
        new_cost = residual(theta + step).pow(2).sum()
        if new_cost < cost:
            converged = cost - new_cost < 1e-10 * (1.0 + cost)
            theta, cost, damping = theta + step, new_cost, damping * 0.3
            if converged:
                break
        else:
            damping *= 10.0
    return theta[:3].to(points3d.dtype), theta[3:].to(points3d.dtype)


def pnp_pose(points3d: torch.Tensor, points2d: torch.Tensor, camera: Camera,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose from 2D–3D correspondences: :func:`weak_perspective_pose` then :func:`refine_pose`."""
    angles, translation = weak_perspective_pose(points3d, points2d, camera)
    return refine_pose(points3d, points2d, camera, angles, translation, weights)


def solve_shape_coefficients(bases: torch.Tensor, mean: torch.Tensor, points2d: torch.Tensor, camera: Camera,
                             angles: torch.Tensor, translation: torch.Tensor, row_weights: torch.Tensor,
                             prior: torch.Tensor) -> torch.Tensor:
    """Shape coefficients c for a fixed pose from 2D landmarks, by linear least squares.

    With world_i(c) = R(S̄_i + B_i c) + t, the projection x_i = f·X_i/Z_i + c_x (Z_i = d − z_i) gives
    the equations (x_i − c_x)·Z_i − f·X_i = 0 and (c_y − y_i)·Z_i − f·Y_i = 0, linear in c. Dividing
    by the current depth Z_i makes their residuals pixel errors (exact at convergence). Minimises
    Σ_i w_i·(pixel residual_i)² + Σ_k prior_k·c_k².

    Args:
        bases: (L, 3, K) basis rows of the L landmarks (identity ‖ expression); mean: (L, 3).
        points2d: (L, 2) target pixels; angles, translation: (3,) pose.
        row_weights: (L,) weights w_i; prior: (K,) ridge weights.

    Returns:
        (K,) coefficients.
    """
    rot = rotation_matrix(angles.double())
    w0 = mean.double() @ rot.T + translation.double()  # (L, 3)
    g = torch.einsum("ij,ljk->lik", rot, bases.double())  # (L, 3, K)
    depth = camera.distance - w0[:, 2]  # Z_i at c = 0 (reweighting divisor)
    x = points2d[:, 0].double() - camera.center
    y = camera.center - points2d[:, 1].double()
    # residual = a + A·c for the x and y equations
    a_x = (x * (camera.distance - w0[:, 2]) - camera.focal * w0[:, 0]) / depth
    a_y = (y * (camera.distance - w0[:, 2]) - camera.focal * w0[:, 1]) / depth
    m_x = -(x[:, None] * g[:, 2] + camera.focal * g[:, 0]) / depth[:, None]
    m_y = -(y[:, None] * g[:, 2] + camera.focal * g[:, 1]) / depth[:, None]
    sw = row_weights.double().sqrt()[:, None]
    design = torch.cat([m_x * sw, m_y * sw])
    rhs = -torch.cat([a_x[:, None] * sw, a_y[:, None] * sw])[:, 0]
    lhs = design.T @ design + torch.diag(prior.double())
    return torch.linalg.solve(lhs, design.T @ rhs).to(mean.dtype)


def fit_landmarks(model: MorphableModel, points2d: torch.Tensor, camera: Camera, weights: torch.Tensor,
                  prior: torch.Tensor, iterations: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pose and shape (identity ‖ expression) from 68 landmarks: PnP on the mean shape, then
    alternate :func:`solve_shape_coefficients` and :func:`refine_pose` ``iterations`` times.

    Args:
        weights: (68,) landmark weights; prior: (Ki + Ke,) ridge weights in the same units.

    Returns:
        angles (3,), translation (3,), coefficients (Ki + Ke,).
    """
    ids = model.landmark_ids
    bases = torch.cat([model.id_base[ids], model.exp_base[ids]], dim=2)  # (68, 3, K)
    mean = model.mean_shape[ids]
    coeffs = mean.new_zeros(bases.shape[2])
    angles, translation = pnp_pose(mean, points2d, camera, weights)
    for _ in range(iterations if bases.shape[2] else 0):
        coeffs = solve_shape_coefficients(bases, mean, points2d, camera, angles, translation, weights, prior)
        shape = mean + torch.einsum("lck,k->lc", bases, coeffs)
        angles, translation = refine_pose(shape, points2d, camera, angles, translation, weights)
    return angles, translation, coeffs


# ---------------------------------------------------------------------- rendering for the loss

def shade(albedo: torch.Tensor, world_normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Per-vertex colour = albedo × SH irradiance (Deep3DFaceRecon ``compute_color``), (B, V, 3)."""
    return lighting.shade(albedo, world_normals, gamma)


def photo_loss(rendered: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of the per-pixel RGB distance ‖I − Î‖ (Deep3DFaceRecon ``photo_loss``).

    Args:
        rendered, target: (B, H, W, 3); mask: (B, H, W) float or bool.
    """
    mask = mask.to(rendered.dtype)
    dist = torch.sqrt((rendered - target).pow(2).sum(-1) + PHOTO_EPS)
    return (dist * mask).sum() / mask.sum().clamp(min=1.0)


def solve_lighting(colors: torch.Tensor, albedo: torch.Tensor, basis: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Least-squares SH lighting for fixed albedo: colour_c = albedo_c·Y·(γ_c + ambient), per channel.

    Args:
        colors, albedo: (N, 3) observed colours and albedo at N surface points; basis: (N, 9) Y(n).
        ridge: Tikhonov weight (× N) on the 8 non-DC bands.

    Returns:
        γ (27,) without the ambient (R block, G block, B block).
    """
    design = albedo.T[:, :, None].double() * basis.double()  # (3, N, 9)
    reg = torch.diag(basis.new_tensor([0.0] + [ridge] * 8, dtype=torch.float64)) * len(basis)
    lhs = design.transpose(1, 2) @ design + reg
    rhs = design.transpose(1, 2) @ colors.T.double()[:, :, None]
    g = torch.linalg.solve(lhs, rhs)[..., 0]  # (3, 9) = γ_c + ambient
    g[:, 0] -= lighting.AMBIENT
    return g.reshape(-1).to(colors.dtype)


def solve_albedo_coefficients(colors: torch.Tensor, shading: torch.Tensor, mean: torch.Tensor, base: torch.Tensor,
                              prior: float) -> torch.Tensor:
    """Least-squares albedo coefficients for fixed shading: colour = shading ⊙ (T̄ + T_base·δ) (Eq. 1).

    Args:
        colors, shading, mean: (N, 3); base: (N, 3, Kt); prior: weight of ‖δ‖² relative to the mean
            squared colour residual.

    Returns:
        δ (Kt,).
    """
    design = (shading[:, :, None] * base).reshape(-1, base.shape[-1]).double()  # (3N, Kt)
    rhs = (colors - shading * mean).reshape(-1).double()
    lhs = design.T @ design + prior * len(design) * torch.eye(base.shape[-1], dtype=torch.float64,
                                                               device=base.device)
    return torch.linalg.solve(lhs, design.T @ rhs).to(colors.dtype)


# ---------------------------------------------------------------------- the fitter

class Fitter:
    """Fits one :class:`MorphableModel` to observations; holds the model (and regressor) on a device.

    Args:
        model: a PCA model (``bfm.load_bfm``) or the default model (``default.load_default_model``).
        settings: schedule and weights (``fit_rigid_steps``, ``fit_nonrigid_steps``, ``fit_lr``,
            ``w_landmark``, ``w_photo``, ``w_reg``, ``render_size``); defaults to ``Settings()``.
        regressor: optional Deep3DFaceRecon regressor for the initialisation (PCA models with the
            BFM's 80/64/80 components only).
        raster_every: refresh period (steps) of the face-per-pixel map in the non-rigid stage.
    """

    def __init__(self, model: MorphableModel, settings: Settings | None = None,
                 regressor: Regressor | None = None, raster_every: int = RASTER_EVERY) -> None:
        self.model = model
        self.settings = settings or Settings()
        if regressor is not None and (model.n_id, model.n_exp, model.n_tex) != REGRESSOR_SIZES:
            raise ValueError(f"the Deep3DFaceRecon regressor predicts {REGRESSOR_SIZES} id/exp/tex coefficients; "
                             f"model {model.name!r} has {(model.n_id, model.n_exp, model.n_tex)}")
        self.regressor = regressor
        self.raster_every = max(1, int(raster_every))
        self.camera = Camera().resized(self.settings.render_size)
        self.device = model.device

    def fit(self, observation: Observation) -> FitResult:
        """Fit the model to ``observation`` (crop, crop landmarks, face mask, dense points).

        Raises:
            NoFaceError: the landmarks are not finite.
        """
        from ..align.observation import CROP_SIZE

        scale = self.settings.render_size / CROP_SIZE  # crop pixels → render pixels
        landmarks = observation.landmarks_tensor(self.device, in_crop=True) * scale
        if not torch.isfinite(landmarks).all():
            raise NoFaceError("the face's landmarks are not finite; cannot fit")
        if self.model.embed_ids is not None:
            return self._fit_dense(observation, landmarks)
        return self._fit_pca(observation, landmarks)

    # -------------------------------------------------------------- helpers
    def _target(self, observation: Observation) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Crop (1, H, W, 3) and face mask (1, H, W) at render size."""
        notes = []
        crop = observation.crop_tensor(self.device)  # (1, 3, 224, 224)
        size = self.settings.render_size
        mask = observation.crop_face_mask
        if mask is None:
            mask_t = torch.ones(1, 1, *crop.shape[-2:], device=self.device)
            notes.append("no face mask: photometric loss over the whole rendered face")
        else:
            mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=self.device)[None, None]
        if crop.shape[-1] != size:
            crop = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
            mask_t = torch.nn.functional.interpolate(mask_t, size=(size, size), mode="nearest")
        return crop.permute(0, 2, 3, 1), mask_t[:, 0] > 0.5, notes

    def _render(self, world: torch.Tensor, colors: torch.Tensor, pix_to_face: torch.Tensor | None):
        """Render per-vertex colours; reuse ``pix_to_face`` when given. Returns image, mask, pix_to_face."""
        from ..render.rasterize import Fragments, interpolate, pixel_barycentrics, rasterize

        screen = self.camera.project(world)
        size = self.settings.render_size
        tris = self.model.triangles
        if pix_to_face is None:
            fragments = rasterize(screen, tris, (size, size), perspective_correct=True)
        else:
            bary, zbuf = pixel_barycentrics(screen, tris, pix_to_face, True)
            fragments = Fragments(pix_to_face, bary, zbuf)
        return interpolate(fragments, tris, colors), fragments.mask, fragments.pix_to_face

    def _landmark_loss(self, world: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                       subset: bool = False) -> torch.Tensor:
        """L_lm; ``world`` is (B, V, 3), or (B, 68, 3) landmark vertices when ``subset``."""
        points = world if subset else world[:, self.model.landmark_ids]
        projected = self.camera.project(points)[..., :2]
        size = float(self.settings.render_size)
        return (((projected - target) / size).pow(2).sum(-1) * weights).sum(-1).mean()

    def _init_pose(self, observation: Observation, landmarks: torch.Tensor, weights: torch.Tensor):
        """(params dict, init name, notes): regressor output when available, else PnP on the mean shape."""
        model = self.model
        zeros = lambda n: torch.zeros(1, n, device=self.device)  # noqa: E731
        params = {"id": zeros(model.n_id), "exp": zeros(model.n_exp), "tex": zeros(model.n_tex),
                  "gamma": zeros(27)}
        if self.regressor is not None:
            coeffs = self.regressor.predict(observation.crop_tensor(self.device))
            split = self.regressor.split(coeffs)
            params.update({k: split[k] for k in ("id", "exp", "tex", "gamma")})
            return {**params, "angles": split["angles"], "trans": split["trans"]}, "regressor", []
        # Landmark residuals in pixels weighted like L_lm (w_lm·ŵ_i/S²), prior like L_reg.
        size = float(self.settings.render_size)
        row_w = self.settings.w_landmark * weights / size ** 2
        prior = self.settings.w_reg * torch.cat([torch.ones(model.n_id, device=self.device),
                                                 torch.full((model.n_exp,), REG_EXP, device=self.device)])
        angles, trans, coeffs = fit_landmarks(model, landmarks, self.camera, row_w, prior)
        params["id"], params["exp"] = coeffs[None, :model.n_id], coeffs[None, model.n_id:]
        return {**params, "angles": angles[None], "trans": trans[None]}, "landmarks-pnp", []

    # -------------------------------------------------------------- PCA models
    def _fit_pca(self, observation: Observation, landmarks: torch.Tensor) -> FitResult:
        s, model = self.settings, self.model
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        weights = landmark_weights(self.device)
        target = landmarks[None]
        params, init_name, notes = self._init_pose(observation, landmarks, weights)
        crop, face_mask, mask_notes = self._target(observation)
        notes += mask_notes
        timings["init"] = time.perf_counter() - t0

        params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}

        def geometry():
            verts = model.shape(params["id"], params["exp"])
            world = transform(verts, params["angles"], params["trans"])
            return verts, world

        photometric = model.has_albedo and s.w_photo > 0
        if not model.has_albedo:
            notes.append("model has no PCA albedo: no photometric term")
        state: dict[str, Any] = {"pix_to_face": None}

        def colors(verts: torch.Tensor) -> torch.Tensor:
            normals = model.normals(verts) @ rotation_matrix(params["angles"]).transpose(-1, -2)
            return shade(model.albedo(params["tex"]), normals, params["gamma"])

        def photo_term(verts, world, refresh: bool) -> torch.Tensor:
            if refresh:
                state["pix_to_face"] = None
            image, mask, state["pix_to_face"] = self._render(world, colors(verts), state["pix_to_face"])
            return photo_loss(image, crop, mask & face_mask)

        photo_initial = None
        if photometric:
            with torch.no_grad():
                photo_initial = float(photo_term(*geometry(), refresh=True))

        # Rigid stage: pose only, landmark loss (only the 68 landmark vertices are needed).
        t0 = time.perf_counter()
        with torch.no_grad():
            lm_shape = model.shape(params["id"], params["exp"])[:, model.landmark_ids]
        self._adam([params["angles"], params["trans"]], s.fit_rigid_steps,
                   lambda step: s.w_landmark * self._landmark_loss(
                       transform(lm_shape, params["angles"], params["trans"]), target, weights, subset=True))
        timings["rigid"] = time.perf_counter() - t0

        if photometric and init_name != "regressor":
            t0 = time.perf_counter()
            with torch.no_grad():
                self._init_appearance(params, *geometry(), crop, face_mask)
            timings["appearance_init"] = time.perf_counter() - t0

        def nonrigid_loss(step: int) -> torch.Tensor:
            verts, world = geometry()
            loss = s.w_landmark * self._landmark_loss(world, target, weights)
            loss = loss + s.w_reg * (params["id"].pow(2).sum() + REG_EXP * params["exp"].pow(2).sum()
                                     + REG_TEX * params["tex"].pow(2).sum())
            if photometric:
                loss = loss + s.w_photo * photo_term(verts, world, refresh=step % self.raster_every == 0)
                gamma = params["gamma"].reshape(-1, 3, 9)
                loss = loss + s.w_reg * W_GAMMA * (gamma - gamma.mean(1, keepdim=True)).pow(2).mean()
            return loss

        t0 = time.perf_counter()
        free = [params[k] for k in ("id", "exp", "angles", "trans")]
        if photometric:
            free += [params["tex"], params["gamma"]]
        self._adam(free, s.fit_nonrigid_steps, nonrigid_loss)
        timings["nonrigid"] = time.perf_counter() - t0

        with torch.no_grad():
            verts, world = geometry()
            losses = {"total": float(nonrigid_loss(1))}
            if photometric:
                losses["photo_initial"] = photo_initial
                losses["photo_final"] = float(photo_term(verts, world, refresh=True))
            t_pca = model.albedo(params["tex"])[0].clamp(0, 1) if model.has_albedo else \
                torch.full_like(verts[0], float("nan"))
        return self._result(params, verts[0], world[0], t_pca, landmarks, losses, "adam", init_name,
                            timings, notes)

    def _visible_colors(self, world: torch.Tensor, normals: torch.Tensor, crop: torch.Tensor,
                        face_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop colours at the projected vertices (V, 3) and which vertices saw them (V,) bool: z-buffer
        visible, facing the camera (n·d > 0.2) and inside the face mask. ``world``/``normals``: (1, V, 3)."""
        from ..render.rasterize import rasterize
        from ..texture.sample import sample_image, zbuffer_visibility

        size = self.settings.render_size
        screen = self.camera.project(world)
        fragments = rasterize(screen, self.model.triangles, (size, size), perspective_correct=True)
        visible = zbuffer_visibility(screen, fragments.zbuf[..., 0])[0]
        facing = (normals * self.camera.view_direction(world)).sum(-1)[0] > 0.2
        xy = screen[0, :, :2].floor().long().clamp(0, size - 1)
        inside = face_mask[0, xy[:, 1], xy[:, 0]]
        return sample_image(crop.permute(0, 3, 1, 2), screen[..., :2])[0], visible & facing & inside

    def _init_appearance(self, params: dict[str, torch.Tensor], verts: torch.Tensor, world: torch.Tensor,
                         crop: torch.Tensor, face_mask: torch.Tensor, rounds: int = 2) -> None:
        """Closed-form start for γ and δ from the visible vertices' colours (alternating least squares:
        :func:`solve_lighting` with the current albedo, then :func:`solve_albedo_coefficients`)."""
        model = self.model
        normals = model.normals(verts) @ rotation_matrix(params["angles"][0]).T
        colors, use = self._visible_colors(world, normals, crop, face_mask)
        if int(use.sum()) < 3 * model.n_tex + 20:
            return
        use = torch.nonzero(use)[:, 0]
        use = use[:: max(1, len(use) // MAX_INIT_VERTICES)]  # an even subset is plenty for a start
        observed = colors[use]
        basis = lighting.sh_basis(normals[0][use])
        mean, base = model.mean_albedo[use], model.albedo_base[use]
        for _ in range(rounds):
            albedo = mean + torch.einsum("vck,k->vc", base, params["tex"][0])
            params["gamma"][0] = solve_lighting(observed, albedo, basis)
            shading = lighting.shade(torch.ones_like(normals[0][use])[None], normals[0][use][None],
                                     params["gamma"])[0]
            params["tex"][0] = solve_albedo_coefficients(observed, shading, mean, base, prior=REG_TEX * 1e-2)

    def _adam(self, tensors: list[torch.Tensor], steps: int, loss_fn) -> None:
        """``steps`` Adam steps (β = 0.9, 0.999; Kingma & Ba) at the constant rate ``fit_lr``.

        Written out rather than ``torch.optim.Adam``, whose first step imports ``torch._dynamo``
        (2–6 s on these machines), a cost every fresh process would pay.
        """
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        first = [torch.zeros_like(t) for t in tensors]
        second = [torch.zeros_like(t) for t in tensors]
        for step in range(steps):
            for t in tensors:
                t.grad = None
            loss_fn(step).backward()
            with torch.no_grad():
                for t, m, v in zip(tensors, first, second, strict=True):
                    if t.grad is None:
                        continue
                    m.mul_(beta1).add_(t.grad, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(t.grad, t.grad, value=1 - beta2)
                    m_hat = m / (1 - beta1 ** (step + 1))
                    v_hat = v / (1 - beta2 ** (step + 1))
                    t.sub_(self.settings.fit_lr * m_hat / (v_hat.sqrt() + eps))

    def _result(self, params, verts, world, t_pca, landmarks, losses, backend, init, timings, notes) -> FitResult:
        model = self.model
        normals = model.normals(verts[None])[0]
        projected = self.camera.project(world[model.landmark_ids])[:, :2]
        losses["landmark_px"] = float((projected - landmarks).norm(dim=-1).mean())
        timings["total"] = sum(timings.values())
        d = {k: v.detach()[0] for k, v in params.items()}
        return FitResult(
            model_name=model.name, id_coeff=d["id"], exp_coeff=d["exp"], tex_coeff=d["tex"],
            angles=d["angles"], translation=d["trans"], gamma=d["gamma"], vertices=verts.detach(),
            world_vertices=world.detach(), normals=normals.detach(), t_pca=t_pca.detach(),
            landmarks_2d=projected.detach(), target_landmarks=landmarks.detach(), losses=losses,
            backend=backend, init=init, timings=timings, notes=tuple(notes),
        )

    # -------------------------------------------------------------- the default model
    def _fit_dense(self, observation: Observation, landmarks: torch.Tensor) -> FitResult:
        from .default import canonical_points

        model = self.model
        timings: dict[str, float] = {}
        notes: list[str] = []
        t0 = time.perf_counter()
        canonical = torch.as_tensor(canonical_points(), device=self.device)
        dense = observation.dense
        if dense is not None:
            points = self._unproject_dense(np.asarray(dense, dtype=np.float64), observation.crop_matrix)
            scale, rot, trans = umeyama(canonical.double(), points)
            shape468 = ((points - trans) @ rot / scale).to(canonical.dtype)  # back to model space
            angles, translation = rotation_to_angles(rot).float(), trans.float()
            init = "dense-procrustes"
        else:
            notes.append("no dense landmarks (aligner without them): canonical mean shape, pose from 68 landmarks")
            shape468 = canonical
            points3d = model.mean_shape[model.landmark_ids]
            angles, translation = pnp_pose(points3d, landmarks, self.camera, landmark_weights(self.device) * 68)
            init = "pnp-68"
        verts = model.from_points(shape468[None].float())
        world = transform(verts, angles[None], translation[None])
        timings["geometry"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        gamma, t_pca, light_notes = self._estimate_albedo(observation, verts, world, angles)
        notes += light_notes
        timings["lighting"] = time.perf_counter() - t0
        empty = torch.zeros(1, 0, device=self.device)
        params = {"id": empty, "exp": empty, "tex": empty, "angles": angles[None], "trans": translation[None],
                  "gamma": gamma[None]}
        return self._result(params, verts[0], world[0], t_pca, landmarks, {}, "dense-landmarks", init,
                            timings, notes)

    def _unproject_dense(self, dense: np.ndarray, crop_matrix: np.ndarray, iterations: int = 4) -> torch.Tensor:
        """(478, 3) photo px (z relative, px scale) → (468, 3) world points in the crop camera.

        The crop is a similarity (scale k), so crop xy = A·[x, y, 1] and depth offsets scale by k.
        A point at crop (x, y) with relative depth z_px lies at depth Z = Z0·(1 + z_px/f); Z0 is
        iterated so that the Procrustes scale to the canonical mesh is 1 (a face of canonical size).
        """
        from .default import canonical_points

        a = np.asarray(crop_matrix, dtype=np.float64)
        k = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
        xy = dense[:468, :2] @ a[:, :2].T + a[:, 2]
        z_px = (dense[:468, 2] - dense[:468, 2].mean()) * k
        size_ratio = self.settings.render_size / 224.0
        xy, z_px = xy * size_ratio, z_px * size_ratio
        cam = self.camera
        xy_t = torch.as_tensor(xy, device=self.device)
        z_t = torch.as_tensor(z_px, device=self.device)
        canonical = torch.as_tensor(canonical_points(), device=self.device).double()
        depth0 = float(cam.distance)
        for _ in range(iterations):
            screen = torch.stack([xy_t[:, 0], xy_t[:, 1], depth0 * (1.0 + z_t / cam.focal)], -1)
            points = cam.unproject(screen)
            scale, _, _ = umeyama(canonical, points)
            depth0 = depth0 / float(scale)
        screen = torch.stack([xy_t[:, 0], xy_t[:, 1], depth0 * (1.0 + z_t / cam.focal)], -1)
        return cam.unproject(screen)

    def _estimate_albedo(self, observation: Observation, verts: torch.Tensor, world: torch.Tensor,
                         angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """SH lighting γ (27,) and T_pca (V, 3) from the visible skin colours (default model).

        colour_c(v) = a_c·Y(n_v)·(γ_c + ambient): a least-squares fit of L_c = a_c(γ_c + ambient) on the
        visible skin vertices, with the convention γ_c,0 = 0 (so a_c = L_c,0 / 0.8); the light is then
        made monochrome (γ averaged over channels, colour left to the albedo) and, if needed, brighter
        so that 99 % of the visible skin albedo stays ≤ 1 (no clipped channel). T_pca = colour / shading
        where visible, the mirror vertex's value where only it is visible, and the median visible skin
        albedo (the skin-tone prior) elsewhere.
        """
        model = self.model
        crop, face_mask, notes = self._target(observation)
        normals = model.normals(verts) @ rotation_matrix(angles).T
        colors, visible = self._visible_colors(world, normals, crop, face_mask)
        basis = lighting.sh_basis(normals[0])  # (V, 9)
        fit_ids = visible & model.skin_mask
        if int(fit_ids.sum()) < 50:
            notes.append(f"only {int(fit_ids.sum())} visible skin vertices: neutral lighting, grey albedo")
            gamma = torch.zeros(27, device=self.device)
            tone = torch.full((3,), 0.5, device=self.device)
        else:
            y = basis[fit_ids].double()
            ridge = torch.diag(y.new_tensor([0.0] + [1e-3] * 8)) * len(y)
            light = torch.linalg.solve(y.T @ y + ridge, y.T @ colors[fit_ids].double())  # (9, 3)
            tone = (light[0] / lighting.AMBIENT).clamp(min=1e-3)
            gamma_c = light.T / tone[:, None]  # (3, 9) = γ_c + ambient, DC = ambient
            gamma_c[:, 0] -= lighting.AMBIENT
            gamma = gamma_c.mean(0).repeat(3).float()  # monochrome light (Deep3DFaceRecon gamma prior)
        shading = lighting.shade(torch.ones_like(normals), normals, gamma[None])[0].clamp(min=0.05)  # (V, 3)
        skin_seen = visible & model.skin_mask
        if int(skin_seen.sum()) >= 50:  # brighten the light until 99 % of the skin albedo fits in [0, 1]
            excess = float(torch.quantile((colors / shading)[skin_seen].max(1).values, 0.99))
            if excess > 1.0:
                gamma = gamma * excess
                gamma[0::9] += lighting.AMBIENT * (excess - 1.0)
                shading = shading * excess
        own = (colors / shading).clamp(0, 1)
        tone = own[skin_seen].median(0).values if int(skin_seen.sum()) >= 50 else tone.float()
        fill = tone.clamp(0, 1).expand_as(own)
        mirror_visible = visible[model.mirror_ids] if model.mirror_ids is not None else torch.zeros_like(visible)
        mirrored = own[model.mirror_ids] if model.mirror_ids is not None else fill
        t_pca = torch.where(visible[:, None], own, torch.where(mirror_visible[:, None], mirrored, fill))
        notes.append(f"T_pca: {int(visible.sum())} visible, {int((~visible & mirror_visible).sum())} mirrored, "
                     f"{int((~visible & ~mirror_visible).sum())} skin-tone vertices")
        return gamma, t_pca, notes


def render_overlay(model: MorphableModel, result: FitResult, crop: torch.Tensor, textured: bool,
                   grey: float = 0.7) -> torch.Tensor:
    """The fitted face drawn over the crop (Deep3DFaceRecon-style check image).

    Args:
        model: the fitted model (for triangles); result: its fit.
        crop: (1, 3, S, S) the fitting crop in [0, 1].
        textured: shade T_pca (True) or a uniform ``grey`` albedo (False) with the fitted SH light.

    Returns:
        (1, 3, S, S) in [0, 1]: the shaded render where the face covers a pixel, the crop elsewhere.
    """
    from ..render.renderer import Renderer

    albedo = result.t_pca if textured else torch.full_like(result.t_pca, grey)
    albedo = torch.nan_to_num(albedo, nan=grey)
    colors = lighting.shade(albedo[None], result.world_normals[None], result.gamma[None])
    rendering = Renderer(size=crop.shape[-1]).render(result.world_vertices[None], model.triangles, colors)
    return (rendering.image.clamp(0, 1) * rendering.alpha + crop * (1 - rendering.alpha)).clamp(0, 1)
