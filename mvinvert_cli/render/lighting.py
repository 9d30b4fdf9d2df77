"""Spherical-harmonics lighting of Deep3DFaceRecon (FORMATS.md §1g; ``models/bfm.py`` ``SH``).

Lambertian shading with 9 SH bands per colour channel: colour_c = (Y(n) · γ_c) × albedo_c, where
γ (27,) is split as the R block, then G, then B (9 each), the ambient 0.8 is added to each block's
DC term, and n is the unit normal already rotated by the pose. No clamping, as in the original.

The basis for n = (x, y, z), with a = (π, 2π/√3, 2π/√8) and c = (1/√(4π), √3/√(4π), 3√5/√(12π)):

    Y = [a0c0, −a1c1·y, a1c1·z, −a1c1·x, a2c2·x·y, −a2c2·y·z, 0.5·a2c2/√3·(3z² − 1), −a2c2·x·z,
         0.5·a2c2·(x² − y²)]
"""

from __future__ import annotations

import math

import torch

SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (
    1 / math.sqrt(4 * math.pi),
    math.sqrt(3.0) / math.sqrt(4 * math.pi),
    3 * math.sqrt(5.0) / math.sqrt(12 * math.pi),
)
AMBIENT = 0.8  # Deep3DFaceRecon ``init_lit``: added to the DC coefficient of every channel
N_COEFFS = 27  # 9 bands × RGB


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 Deep3DFaceRecon SH basis values of unit normals.

    Args:
        normals: (..., 3) unit normals (x, y, z) in the camera-aligned (rotated) frame.

    Returns:
        (..., 9) basis values Y in the order of the module docstring.
    """
    x, y, z = normals.unbind(-1)
    a0c0 = SH_A[0] * SH_C[0]
    a1c1 = SH_A[1] * SH_C[1]
    a2c2 = SH_A[2] * SH_C[2]
    return torch.stack(
        [
            torch.full_like(x, a0c0),
            -a1c1 * y,
            a1c1 * z,
            -a1c1 * x,
            a2c2 * x * y,
            -a2c2 * y * z,
            0.5 * a2c2 / math.sqrt(3.0) * (3 * z * z - 1),
            -a2c2 * x * z,
            0.5 * a2c2 * (x * x - y * y),
        ],
        dim=-1,
    )


def sh_coefficients(gamma: torch.Tensor) -> torch.Tensor:
    """γ (B, 27) → per-channel coefficients (B, 3, 9) with the 0.8 ambient added to each DC term."""
    if gamma.shape[-1] != N_COEFFS:
        raise ValueError(f"gamma must have {N_COEFFS} coefficients, got {tuple(gamma.shape)}")
    coeffs = gamma.reshape(*gamma.shape[:-1], 3, 9)
    ambient = torch.zeros(9, dtype=gamma.dtype, device=gamma.device)
    ambient[0] = AMBIENT
    return coeffs + ambient


def shade(albedo: torch.Tensor, normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon ``compute_color``: colour_c = (Y(n) · γ_c) × albedo_c.

    Args:
        albedo: (B, V, 3) RGB reflectance in [0, 1] (or any per-point tensor (B, ..., 3)).
        normals: (B, V, 3) unit normals rotated by the pose (``normals @ Rᵀ``).
        gamma: (B, 27) SH coefficients, R block then G then B (without the ambient).

    Returns:
        (B, V, 3) shaded colours (not clamped).
    """
    coeffs = sh_coefficients(gamma)  # (B, 3, 9)
    basis = sh_basis(normals)  # (B, V, 9)
    irradiance = torch.einsum("b...k,bck->b...c", basis, coeffs)  # (B, V, 3)
    return irradiance * albedo
