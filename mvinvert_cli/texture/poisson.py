"""Mesh gradient operator G and the screened Poisson least squares of MvInvert Eq. 6.

Eq. 6 (per colour channel):

    minimise  ‖G c − b‖² + λ² Σ_v w_v ‖c_v − a_v‖²

with G the per-triangle gradient of the piecewise-linear vertex colour c (3 rows per triangle),
b the gradient targets (each triangle's rows copied from the view Eq. 5 selected for it, zero for
"no view"), w the anchor weights (1 on the vertices the reference photo sees) and a the anchor
colours (the photo's). The normal equations are

    (GᵀG + λ² diag(w)) c = Gᵀ b + λ² w ⊙ a.

Every triangle keeps its rows whatever view it takes, so GᵀG depends only on the mesh: the
:class:`PoissonSolver` builds G on a fixed reference geometry (e.g. the morphable model's mean shape)
and factorises P = GᵀG + λ² I once per topology (SciPy SuperLU). Per image only diag(w) changes;
P is then the preconditioner of conjugate gradients on the per-image system, which differs from P by
the diagonal λ² (w − 1) that matters only for the smoothest modes; deflating span{1, x, y, z} of
the reference geometry lets CG converge in 2–3 preconditioner solves.

Connected components without any anchored vertex make the system singular (their constant is
free): the solver anchors those vertices to caller-supplied ``fallback`` colours with weight 1 and
reports them (``SolveInfo.floating``).

:func:`screened_poisson` is the differentiable torch entry (custom autograd through the solve, the
adjoint being one more solve with the same matrix); :func:`screened_poisson_reference` is the slow,
obviously correct dense least-squares version the tests compare against.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

DEFAULT_LAMBDA = 0.1  # λ of Eq. 6 (DESIGN.md §4)
DEGENERATE_AREA = 1e-12  # triangles with area below this × the median area get zero gradient rows
PCG_RTOL = 1e-7  # default relative residual at which the per-image CG stops (colour error ~1e-8)
PCG_MAXITER = 100  # beyond this the solver refactorises the per-image matrix directly


def basis_gradients(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Constant gradients of the three hat functions of every triangle (the entries of Eq. 6's G).

    For triangle t = (i, j, k) with unit normal n and doubled area 2A, the hat function of vertex i
    has the gradient ∇φ_i = n × (x_k − x_j) / 2A (the opposite edge turned inward). Degenerate
    (zero-area or non-finite) triangles get zeros.

    Args:
        verts: (V, 3) float vertex positions (any frame; units set the scale of G, 1/length).
        faces: (F, 3) long vertex indices.

    Returns:
        (F, 3 corners, 3 xyz), dtype and device of ``verts``.
    """
    faces = faces.long()
    x = verts[faces]  # (F, 3 corners, 3 xyz)
    normal = torch.linalg.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])  # (F, 3), |·| = 2A
    double_area = normal.norm(dim=1)  # (F,)
    finite = torch.isfinite(double_area)
    scale = double_area[finite].median() if bool(finite.any()) else double_area.new_tensor(0.0)
    good = finite & (double_area > DEGENERATE_AREA * scale)
    safe = torch.where(good, double_area, torch.ones_like(double_area))
    unit_normal = normal / safe[:, None]
    opposite = x[:, [2, 0, 1]] - x[:, [1, 2, 0]]  # (F, 3 corners, 3): x_k − x_j for corner i
    grad_phi = torch.linalg.cross(unit_normal[:, None].expand_as(opposite), opposite, dim=2)
    grad_phi = grad_phi / safe[:, None, None]
    return torch.where(good[:, None, None], grad_phi, torch.zeros_like(grad_phi))


def apply_gradient(basis: torch.Tensor, faces: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """G c without a sparse matrix: per-triangle gradients of per-vertex values.

    Args:
        basis: (F, 3, 3) from :func:`basis_gradients`.
        faces: (F, 3) long.
        values: (V, C).

    Returns:
        (3F, C), row 3t + d = d-th component of triangle t's gradient (the rows of G).
    """
    return torch.einsum("fkd,fkc->fdc", basis, values[faces]).reshape(-1, values.shape[-1])


def gradient_operator(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Eq. 6's G as a sparse matrix: (G c)_t = Σ_i c_i ∇φ_i (see :func:`basis_gradients`).

    Args:
        verts: (V, 3) float vertex positions.
        faces: (F, 3) long vertex indices.

    Returns:
        Sparse COO tensor (3F, V), dtype and device of ``verts``; row 3t + d is the d-th (x, y, z)
        component of triangle t's gradient; zero rows for degenerate triangles.
    """
    faces = faces.long()
    grad_phi = basis_gradients(verts, faces)  # (F, 3 corners, 3 xyz)
    n_faces = faces.shape[0]
    rows = (3 * torch.arange(n_faces, device=verts.device)[:, None, None]
            + torch.arange(3, device=verts.device)[None, None, :])  # (F, 1, 3 xyz)
    rows = rows.expand(n_faces, 3, 3)  # (F, 3 corners, 3 xyz)
    cols = faces[:, :, None].expand(n_faces, 3, 3)
    index = torch.stack([rows.reshape(-1), cols.reshape(-1)])
    shape = (3 * n_faces, verts.shape[0])
    return torch.sparse_coo_tensor(index, grad_phi.reshape(-1), shape, check_invariants=False).coalesce()


def to_scipy(matrix: torch.Tensor) -> sp.csr_matrix:
    """A torch sparse COO matrix as a float64 SciPy CSR matrix (on the host)."""
    matrix = matrix.coalesce()
    rows, cols = matrix.indices().cpu().numpy()
    values = matrix.values().detach().cpu().double().numpy()
    return sp.csr_matrix((values, (rows, cols)), shape=tuple(matrix.shape))


@dataclass(frozen=True)
class SolveInfo:
    """How one per-image solve went.

    Attributes:
        iterations: CG iterations (0 when the direct fallback ran).
        residual: final max over channels of ‖A c − r‖ / ‖r‖.
        backend: "superlu-pcg" (factor of GᵀG + λ²I preconditioning CG) or "superlu-direct"
            (CG missed ``rtol`` in PCG_MAXITER steps; the per-image matrix was factorised).
        floating: number of vertices in components with no anchor, anchored to ``fallback``.
        seconds: wall time of the solve.
    """

    iterations: int
    residual: float
    backend: str
    floating: int
    seconds: float


class PoissonSolver:
    """Screened Poisson solver of Eq. 6 for one mesh topology, factorised once.

    Args:
        verts: (V, 3) reference geometry G is built on (the model's mean shape, or any fixed shape of
            the topology); per-image fitted shapes are not needed.
        faces: (F, 3) long.
        lam: λ of Eq. 6.
        rtol: relative residual of the normal equations at which CG stops (tests of gradients use
            ~1e-13 so finite differences see an exact solve).

    Attributes:
        G: SciPy CSR (3F, V) float64 gradient operator (its entries: :meth:`basis`).
        factor_seconds: time spent building G and factorising GᵀG + λ²I.
        components: (V,) int component label of each vertex in the graph of GᵀG.
    """

    backend = "superlu-pcg"

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, lam: float = DEFAULT_LAMBDA,
                 rtol: float = PCG_RTOL) -> None:
        start = time.perf_counter()
        self.lam = float(lam)
        self.rtol = float(rtol)
        self.n_verts = int(verts.shape[0])
        self.faces = faces.detach().long().cpu()
        reference = verts.detach().double().cpu()
        self._basis = {("cpu", torch.float64): basis_gradients(reference, self.faces)}  # (F, 3, 3)
        self._faces = {"cpu": self.faces}
        self.G = to_scipy(gradient_operator(reference, self.faces))
        self.Gt = self.G.T.tocsr()
        self.GtG = (self.Gt @ self.G).tocsr()
        eye = sp.identity(self.n_verts, format="csr")
        self._factor = splu((self.GtG + self.lam**2 * eye).tocsc(), permc_spec="MMD_AT_PLUS_A",
                            diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        _, self.components = connected_components(self.GtG, directed=False)
        self._coarse_basis = _coarse_basis(verts.detach().double().cpu().numpy())
        self._gtg_coarse = self.GtG @ self._coarse_basis  # per topology; the deflation adds the screening
        self.factor_seconds = time.perf_counter() - start

    def __repr__(self) -> str:
        return (f"PoissonSolver(V={self.n_verts}, F={self.faces.shape[0]}, lam={self.lam}, "
                f"backend={self.backend!r}, factor_seconds={self.factor_seconds:.3f})")

    def basis(self, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        """(F, 3, 3) hat-function gradients on ``device`` in ``dtype`` (cached)."""
        key = (str(torch.device(device)), dtype)
        if key not in self._basis:
            self._basis[key] = self._basis[("cpu", torch.float64)].to(device=device, dtype=dtype)
        return self._basis[key]

    def faces_on(self, device: torch.device | str) -> torch.Tensor:
        """(F, 3) long faces on ``device`` (cached)."""
        key = str(torch.device(device))
        if key not in self._faces:
            self._faces[key] = self.faces.to(device)
        return self._faces[key]

    def floating(self, anchor_weights: np.ndarray) -> np.ndarray:
        """(V,) bool: vertices whose component has no vertex with a positive anchor weight."""
        anchored = np.bincount(self.components, weights=(anchor_weights > 0).astype(float))
        return anchored[self.components] == 0

    def solve(self, targets: np.ndarray, anchor_weights: np.ndarray, anchor_colors: np.ndarray,
              fallback: np.ndarray | None = None) -> tuple[np.ndarray, SolveInfo]:
        """Solve Eq. 6's normal equations for all channels at once.

        Args:
            targets: (3F, C) gradient targets b (rows as in :func:`gradient_operator`).
            anchor_weights: (V,) non-negative w.
            anchor_colors: (V, C) a (ignored where w = 0).
            fallback: (V, C) colours for vertices of unanchored components (weight 1); required when
                such components exist.

        Returns:
            colours (V, C) float64 and a :class:`SolveInfo`.
        """
        start = time.perf_counter()
        weights, colors, floating = self.effective_anchors(anchor_weights, anchor_colors, fallback)
        return self.solve_anchored(targets, weights, colors, int(floating.sum()), start)

    def solve_anchored(self, targets: np.ndarray, weights: np.ndarray, colors: np.ndarray, floating: int = 0,
                       start: float | None = None) -> tuple[np.ndarray, SolveInfo]:
        """:meth:`solve` with anchors that already pin every component (:meth:`effective_anchors`).

        ``floating`` is reported in the info; ``start`` (a ``time.perf_counter()``) dates its seconds.
        """
        start = time.perf_counter() if start is None else start
        rhs = self.Gt @ np.asarray(targets, dtype=np.float64) + self.lam**2 * weights[:, None] * colors  # Eq. 6
        solution, iterations, residual, backend = self.solve_system(rhs, weights)
        return solution, SolveInfo(iterations, residual, backend, floating, time.perf_counter() - start)

    def solve_system(self, rhs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int, float, str]:
        """(GᵀG + λ² diag(weights))⁻¹ rhs by CG preconditioned with the stored factor.

        ``weights`` must anchor every component (see :meth:`effective_anchors`). Falls back to a
        direct factorisation of the per-image matrix when CG misses ``rtol`` (reported as backend).

        Returns:
            solution (V, C), iterations, relative residual, backend name.
        """
        screen = self.lam**2 * weights

        def apply(x: np.ndarray) -> np.ndarray:
            return self.GtG @ x + screen[:, None] * x

        coarse = (self._coarse_basis, self._gtg_coarse + screen[:, None] * self._coarse_basis)  # = apply(basis)
        solution, iterations, residual = _deflated_pcg(apply, self._factor.solve, rhs, coarse, self.rtol)
        if residual <= self.rtol:
            return solution, iterations, residual, self.backend
        matrix = (self.GtG + sp.diags(screen)).tocsc()
        solution = splu(matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                        options={"SymmetricMode": True}).solve(rhs)
        return solution, 0, _relative_residual(apply(solution), rhs), "superlu-direct"

    def effective_anchors(self, anchor_weights: np.ndarray, anchor_colors: np.ndarray,
                          fallback: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Anchor weights (V,) and colours (V, C) with unanchored components pinned to ``fallback``.

        Returns:
            weights, colours and the (V,) bool mask of the re-anchored ("floating") vertices.
        """
        weights = np.asarray(anchor_weights, dtype=np.float64).copy()
        colors = np.asarray(anchor_colors, dtype=np.float64).copy()
        floating = self.floating(weights)
        if floating.any():
            if fallback is None:
                raise ValueError(f"{int(floating.sum())} vertices lie in components with no anchored "
                                 "vertex: pass fallback colours")
            weights[floating] = 1.0
            colors[floating] = np.asarray(fallback, dtype=np.float64)[floating]
        return weights, colors, floating


def _coarse_basis(verts: np.ndarray) -> np.ndarray:
    """(V, k) orthonormal basis of span{1, x, y, z} over the finite vertices (k ≤ 4)."""
    finite = np.isfinite(verts).all(axis=1)
    centred = np.where(finite[:, None], verts - verts[finite].mean(axis=0) if finite.any() else 0.0, 0.0)
    span = np.concatenate([np.ones((verts.shape[0], 1)), centred], axis=1)
    u, sigma, _ = np.linalg.svd(span, full_matrices=False)
    return np.ascontiguousarray(u[:, sigma > 1e-9 * sigma[0]])


def _relative_residual(applied: np.ndarray, rhs: np.ndarray) -> float:
    norm = np.linalg.norm(rhs, axis=0)
    norm[norm == 0] = 1.0
    return float(np.max(np.linalg.norm(applied - rhs, axis=0) / norm, initial=0.0))


def _deflated_pcg(apply, precondition, rhs: np.ndarray, coarse: tuple[np.ndarray, np.ndarray],
                  rtol: float) -> tuple[np.ndarray, int, float]:
    """Deflated preconditioned CG on every column of ``rhs`` at once.

    The coarse space ``basis`` (V, k) of ``coarse = (basis, apply(basis))`` (smooth functions:
    constant and coordinates) is solved exactly by a k×k Galerkin system; CG with the preconditioner
    handles the rest. The per-image screening mostly moves the smoothest modes, so deflating them
    saves about one preconditioner solve.
    """
    norm = np.linalg.norm(rhs, axis=0)
    norm[norm == 0] = 1.0
    basis, a_basis = coarse  # (V, k) each
    coarse = np.linalg.inv(basis.T @ a_basis)  # (k, k), SPD once every component is anchored

    def deflate(z: np.ndarray) -> np.ndarray:
        return z - basis @ (coarse @ (a_basis.T @ z))

    x = basis @ (coarse @ (basis.T @ rhs))
    r = rhs - apply(x)
    residual = float(np.max(np.linalg.norm(r, axis=0) / norm, initial=0.0))
    iteration = 0
    if residual <= rtol:
        return x, iteration, residual
    z = precondition(r)
    p = deflate(z)
    rz = np.einsum("ij,ij->j", r, z)
    while iteration < PCG_MAXITER:
        iteration += 1
        ap = apply(p)
        curvature = np.einsum("ij,ij->j", p, ap)
        alpha = np.divide(rz, curvature, out=np.zeros_like(rz), where=curvature > 0)
        x += alpha * p
        r -= alpha * ap
        residual = float(np.max(np.linalg.norm(r, axis=0) / norm, initial=0.0))
        if residual <= rtol:
            break
        z = precondition(r)
        rz_new = np.einsum("ij,ij->j", r, z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        p = deflate(z) + beta * p
        rz = rz_new
    return x, iteration, residual


class _ScreenedPoissonSolve(torch.autograd.Function):
    """c = (GᵀG + λ² diag(w))⁻¹ (Gᵀ b + λ² w ⊙ a), differentiable in b, w and a."""

    @staticmethod
    def forward(ctx, targets, anchor_weights, anchor_colors, fallback, solver: PoissonSolver, report: list):
        as_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
        start = time.perf_counter()
        weights, colors, floating = solver.effective_anchors(
            as_np(anchor_weights), as_np(anchor_colors), None if fallback is None else as_np(fallback))
        solution, info = solver.solve_anchored(as_np(targets), weights, colors, int(floating.sum()), start)
        out = torch.from_numpy(solution).to(device=targets.device, dtype=targets.dtype)
        ctx.solver, ctx.weights, ctx.floating = solver, weights, floating
        report.append(info)
        ctx.save_for_backward(out, anchor_colors)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out, anchor_colors = ctx.saved_tensors
        solver: PoissonSolver = ctx.solver
        u_np, _, _, _ = solver.solve_system(grad_out.detach().cpu().double().numpy(), ctx.weights)
        u = torch.from_numpy(u_np).to(device=grad_out.device, dtype=grad_out.dtype)  # A⁻¹ ∂L/∂c
        lam2 = solver.lam**2
        floating = torch.from_numpy(ctx.floating).to(grad_out.device)
        free = (~floating).to(grad_out.dtype)[:, None]
        grad_targets = grad_w = grad_a = grad_fallback = None
        if ctx.needs_input_grad[0]:
            grad_targets = apply_gradient(solver.basis(u.device, u.dtype), solver.faces_on(u.device), u)
        weights = torch.from_numpy(ctx.weights).to(device=u.device, dtype=u.dtype)[:, None]
        if ctx.needs_input_grad[1]:
            grad_w = lam2 * ((anchor_colors - out) * u * free).sum(dim=1)
        if ctx.needs_input_grad[2]:
            grad_a = lam2 * weights * u * free
        if ctx.needs_input_grad[3]:
            grad_fallback = lam2 * u * (1 - free)
        return grad_targets, grad_w, grad_a, grad_fallback, None, None


def screened_poisson(solver: PoissonSolver, targets: torch.Tensor, anchor_weights: torch.Tensor,
                     anchor_colors: torch.Tensor, fallback: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, SolveInfo]:
    """Differentiable Eq. 6 solve (custom autograd; the backward pass is one more solve).

    Args:
        solver: the topology's :class:`PoissonSolver`.
        targets: (3F, C) gradient targets b.
        anchor_weights: (V,) w ≥ 0 (Eq. 6: 1 where the photo sees the vertex).
        anchor_colors: (V, C) a.
        fallback: (V, C) colours pinning unanchored components (see :class:`PoissonSolver`).

    Returns:
        (V, C) colours, on the device and in the dtype of ``targets``, and the forward solve's
        :class:`SolveInfo`. The sparse solve runs on the host (SciPy); only (V, C) and (3F, C)
        arrays cross the device boundary.
    """
    report: list[SolveInfo] = []
    colors = _ScreenedPoissonSolve.apply(targets, anchor_weights, anchor_colors, fallback, solver, report)
    return colors, report[0]


def screened_poisson_reference(verts: torch.Tensor, faces: torch.Tensor, targets: torch.Tensor,
                               anchor_weights: torch.Tensor, anchor_colors: torch.Tensor,
                               lam: float = DEFAULT_LAMBDA) -> torch.Tensor:
    """Slow reference of Eq. 6: dense least squares of [G; λ√w I] c = [b; λ√w a] (small meshes only)."""
    G = gradient_operator(verts, faces).to_dense().to(targets.dtype)
    root = lam * anchor_weights.to(targets.dtype).clamp_min(0).sqrt()
    system = torch.cat([G, torch.diag(root)])
    rhs = torch.cat([targets, root[:, None] * anchor_colors])
    return torch.linalg.lstsq(system, rhs).solution
