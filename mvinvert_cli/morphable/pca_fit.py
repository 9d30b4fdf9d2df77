"""Fitting a PCA model (BFM layout) to one face: coefficients, pose and SH lighting (MvInvert §3.1).

Pose is initialised from the 68 landmarks (``pose.fit_landmarks``: weak-perspective Procrustes, then
Gauss–Newton PnP and a linear shape fit in the Deep3DFaceRecon camera) or from the Deep3DFaceRecon
regressor; then the authors' schedule (DESIGN.md §4): a rigid stage (angles, translation; landmark
loss) and a non-rigid stage (all coefficients) of Adam steps at lr 0.01 minimising

    L = w_lm·L_lm + w_photo·L_photo + w_reg·L_reg (+ w_gamma·L_gamma)

with weights 100 / 1.6 / 1e-3 (``config.Settings``). L_lm = Σ_i ŵ_i‖p_i − q_i‖²/S² (normalised
weights, nose ridge and mouth ×10, S = crop side); L_photo = masked mean over face pixels of the
per-pixel RGB distance ‖I − Î‖ (Deep3DFaceRecon ``photo_loss``); L_reg = ‖α‖² + 0.8‖β‖² +
0.017‖δ‖² (Deep3DFaceRecon ``reg_loss``, coefficients in σ units); L_gamma = the spread of the
27 SH coefficients across colour channels (Deep3DFaceRecon ``gamma_loss``, monochrome light).
The rasteriser's face-per-pixel map is refreshed every ``raster_every`` steps; barycentrics are
recomputed from the current vertices at every step (differentiable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..align.observation import Observation
from ..config import Settings
from ..render import lighting
from ..render.camera import Camera, rotation_matrix, transform
from ..render.renderer import Renderer
from .model import MorphableModel
from .pose import fit_landmarks, landmark_weights
from .regressor import Regressor
from .result import FitParameters, FitResult, assemble_result
from .symmetry_prior import visible_landmark_weights
from .target import FitTarget, fit_renderer, fit_target, visible_colors

REG_EXP, REG_TEX = 0.8, 1.7e-2  # Deep3DFaceRecon reg_loss relative weights (identity = 1)
W_GAMMA = 10.0  # Deep3DFaceRecon gamma_loss weight (relative to its photometric 1.92)
RASTER_EVERY = 5
REGRESSOR_SIZES = (80, 64, 80)  # Deep3DFaceRecon heads (FORMATS.md §1h)
MAX_INIT_VERTICES = 4000  # vertices used by the closed-form appearance start
PHOTO_EPS = 1e-8

Params = dict[str, torch.Tensor]  # id, exp, tex, gamma, angles, trans: each (1, K)


@dataclass(frozen=True)
class PCAFitSettings:
    """Schedule and loss weights of the PCA fit.

    Attributes:
        rigid_steps / nonrigid_steps: Adam steps of the two stages; lr: Adam's constant rate.
        w_landmark / w_photo / w_reg: loss weights (w_photo = 0: landmarks and prior only).
        render_size: side S of the fitting crop the face is rendered at.
        raster_every: refresh period (steps) of the face-per-pixel map in the non-rigid stage.
    """

    rigid_steps: int = 50
    nonrigid_steps: int = 50
    lr: float = 0.01
    w_landmark: float = 100.0
    w_photo: float = 1.6
    w_reg: float = 1e-3
    render_size: int = 224
    raster_every: int = RASTER_EVERY


def pca_fit_settings(settings: Settings, raster_every: int = RASTER_EVERY) -> PCAFitSettings:
    """The PCA fit's part of the run settings."""
    return PCAFitSettings(rigid_steps=settings.fit_rigid_steps, nonrigid_steps=settings.fit_nonrigid_steps,
                          lr=settings.fit_lr, w_landmark=settings.w_landmark, w_photo=settings.w_photo,
                          w_reg=settings.w_reg, render_size=settings.render_size,
                          raster_every=max(1, int(raster_every)))


def check_regressor(model: MorphableModel, regressor: Regressor | None) -> None:
    """Raises ValueError when ``regressor`` cannot initialise ``model`` (component counts differ)."""
    if regressor is not None and (model.n_id, model.n_exp, model.n_tex) != REGRESSOR_SIZES:
        raise ValueError(f"the Deep3DFaceRecon regressor predicts {REGRESSOR_SIZES} id/exp/tex coefficients; "
                         f"model {model.name!r} has {(model.n_id, model.n_exp, model.n_tex)}")


# ---------------------------------------------------------------------- loss terms and closed forms

def photo_loss(rendered: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of the per-pixel RGB distance ‖I − Î‖ (Deep3DFaceRecon ``photo_loss``).

    Args:
        rendered, target: (B, H, W, 3); mask: (B, H, W) float or bool.
    """
    mask = mask.to(rendered.dtype)
    dist = torch.sqrt((rendered - target).pow(2).sum(-1) + PHOTO_EPS)
    return (dist * mask).sum() / mask.sum().clamp(min=1.0)


def landmark_loss(camera: Camera, points: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L_lm = Σ_i ŵ_i‖p_i − q_i‖²/S² (batch mean) of the (B, 68, 3) world landmark vertices ``points``."""
    projected = camera.project(points)[..., :2]
    size = float(camera.size)
    return (((projected - target) / size).pow(2).sum(-1) * weights).sum(-1).mean()


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


def adam(tensors: list[torch.Tensor], steps: int, loss_fn: Callable[[int], torch.Tensor], lr: float) -> None:
    """``steps`` Adam steps (β = 0.9, 0.999; Kingma & Ba) at the constant rate ``lr``.

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
                t.sub_(lr * m_hat / (v_hat.sqrt() + eps))


# ---------------------------------------------------------------------- the fit

def render_colors(renderer: Renderer, triangles: torch.Tensor, world: torch.Tensor, colors: torch.Tensor,
                  pix_to_face: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render per-vertex colours, reusing ``pix_to_face`` when given.

    Returns:
        image (B, S, S, 3), coverage mask (B, S, S) bool, and the face map to reuse.
    """
    rendering = renderer.render(world, triangles, colors, pix_to_face)
    fragments = rendering.fragments
    return rendering.image.permute(0, 2, 3, 1), fragments.mask, fragments.pix_to_face


def init_pose(model: MorphableModel, observation: Observation, landmarks: torch.Tensor, weights: torch.Tensor,
              settings: PCAFitSettings, camera: Camera, regressor: Regressor | None) -> tuple[Params, str]:
    """(params, init name): regressor output when available, else PnP + linear shape on the landmarks."""
    device = model.device
    zeros = lambda n: torch.zeros(1, n, device=device)  # noqa: E731
    params = {"id": zeros(model.n_id), "exp": zeros(model.n_exp), "tex": zeros(model.n_tex), "gamma": zeros(27)}
    if regressor is not None:
        split = regressor.split(regressor.predict(observation.crop_tensor(device)))
        params.update({k: split[k] for k in ("id", "exp", "tex", "gamma")})
        return {**params, "angles": split["angles"], "trans": split["trans"]}, "regressor"
    # Landmark residuals in pixels weighted like L_lm (w_lm·ŵ_i/S²), prior like L_reg.
    size = float(settings.render_size)
    row_w = settings.w_landmark * weights / size ** 2
    prior = settings.w_reg * torch.cat([torch.ones(model.n_id, device=device),
                                        torch.full((model.n_exp,), REG_EXP, device=device)])
    angles, trans, coeffs = fit_landmarks(model, landmarks, camera, row_w, prior)
    params["id"], params["exp"] = coeffs[None, :model.n_id], coeffs[None, model.n_id:]
    return {**params, "angles": angles[None], "trans": trans[None]}, "landmarks-pnp"


def init_appearance(model: MorphableModel, camera: Camera, params: Params, verts: torch.Tensor,
                    world: torch.Tensor, target: FitTarget, rounds: int = 2) -> None:
    """Closed-form start for γ and δ from the visible vertices' colours (alternating least squares:
    :func:`solve_lighting` with the current albedo, then :func:`solve_albedo_coefficients`)."""
    normals = model.normals(verts) @ rotation_matrix(params["angles"][0]).T
    colors, use = visible_colors(camera, model.triangles, world, normals, target)
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
        shading = lighting.shade(torch.ones_like(normals[0][use])[None], normals[0][use][None], params["gamma"])[0]
        params["tex"][0] = solve_albedo_coefficients(observed, shading, mean, base, prior=REG_TEX * 1e-2)


def contour_weights(model: MorphableModel, camera: Camera, params: dict[str, torch.Tensor],
                    base: torch.Tensor) -> torch.Tensor:
    """The landmark weights with the hidden jaw contour faded out at the current pose
    (``symmetry_prior.visible_landmark_weights``)."""
    verts = model.shape(params["id"], params["exp"])
    world = transform(verts, params["angles"], params["trans"])[0, model.landmark_ids]
    normals = (model.normals(verts) @ rotation_matrix(params["angles"]).transpose(-1, -2))[0, model.landmark_ids]
    return visible_landmark_weights(base, normals, camera.view_direction(world))


def fit_pca(model: MorphableModel, observation: Observation, landmarks: torch.Tensor, settings: PCAFitSettings,
            regressor: Regressor | None = None) -> FitResult:
    """Fit ``model`` to ``observation`` (rigid, then non-rigid Adam; see the module docstring).

    Args:
        landmarks: (68, 2) target landmarks in render pixels (``target.target_landmarks``).
        regressor: optional Deep3DFaceRecon initialisation (``check_regressor`` first).
    """
    s = settings
    camera = Camera().resized(s.render_size)
    renderer = fit_renderer(camera)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    weights = landmark_weights(model.device)
    target_lm = landmarks[None]
    start, init_name = init_pose(model, observation, landmarks, weights, s, camera, regressor)
    target = fit_target(observation, s.render_size, model.device)
    notes = list(target.notes)
    timings["init"] = time.perf_counter() - t0

    params = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}

    def geometry() -> tuple[torch.Tensor, torch.Tensor]:
        verts = model.shape(params["id"], params["exp"])
        return verts, transform(verts, params["angles"], params["trans"])

    photometric = model.has_albedo and s.w_photo > 0
    if not model.has_albedo:
        notes.append("model has no PCA albedo: no photometric term")
    pix_to_face: torch.Tensor | None = None

    def photo_term(verts: torch.Tensor, world: torch.Tensor, refresh: bool) -> torch.Tensor:
        nonlocal pix_to_face
        normals = model.normals(verts) @ rotation_matrix(params["angles"]).transpose(-1, -2)
        colors = lighting.shade(model.albedo(params["tex"]), normals, params["gamma"])
        image, mask, pix_to_face = render_colors(renderer, model.triangles, world, colors,
                                                 None if refresh else pix_to_face)
        return photo_loss(image, target.crop, mask & target.face_mask)

    photo_initial = None
    if photometric:
        with torch.no_grad():
            photo_initial = float(photo_term(*geometry(), refresh=True))

    # Rigid stage: pose only, landmark loss (only the 68 landmark vertices are needed).
    t0 = time.perf_counter()
    with torch.no_grad():
        weights = contour_weights(model, camera, params, weights)
        lm_shape = model.shape(params["id"], params["exp"])[:, model.landmark_ids]
    adam([params["angles"], params["trans"]], s.rigid_steps,
         lambda step: s.w_landmark * landmark_loss(
             camera, transform(lm_shape, params["angles"], params["trans"]), target_lm, weights), s.lr)
    timings["rigid"] = time.perf_counter() - t0

    if photometric and init_name != "regressor":
        t0 = time.perf_counter()
        with torch.no_grad():
            init_appearance(model, camera, params, *geometry(), target)
        timings["appearance_init"] = time.perf_counter() - t0

    def nonrigid_loss(step: int) -> torch.Tensor:
        verts, world = geometry()
        loss = s.w_landmark * landmark_loss(camera, world[:, model.landmark_ids], target_lm, weights)
        loss = loss + s.w_reg * (params["id"].pow(2).sum() + REG_EXP * params["exp"].pow(2).sum()
                                 + REG_TEX * params["tex"].pow(2).sum())
        if photometric:
            loss = loss + s.w_photo * photo_term(verts, world, refresh=step % s.raster_every == 0)
            gamma = params["gamma"].reshape(-1, 3, 9)
            loss = loss + s.w_reg * W_GAMMA * (gamma - gamma.mean(1, keepdim=True)).pow(2).mean()
        return loss

    t0 = time.perf_counter()
    free = [params[k] for k in ("id", "exp", "angles", "trans")]
    if photometric:
        free += [params["tex"], params["gamma"]]
    adam(free, s.nonrigid_steps, nonrigid_loss, s.lr)
    timings["nonrigid"] = time.perf_counter() - t0

    with torch.no_grad():
        verts, world = geometry()
        losses = {"total": float(nonrigid_loss(1))}
        if photometric:
            losses["photo_initial"] = photo_initial
            losses["photo_final"] = float(photo_term(verts, world, refresh=True))
        t_pca = model.albedo(params["tex"])[0].clamp(0, 1) if model.has_albedo else \
            torch.full_like(verts[0], float("nan"))
    return assemble_result(model, camera, FitParameters(**params), verts[0], world[0], t_pca, landmarks, losses,
                           "adam", init_name, timings, notes)
