"""SH lighting: basis values against hand-computed numbers, block order, ambient, rotation-free shading."""

from __future__ import annotations

import pytest
import torch

from mvinvert_cli.render.lighting import AMBIENT, sh_basis, sh_coefficients, shade

A0C0 = 0.8862269  # π · 1/√(4π) = √π / 2
A1C1 = 1.7724539  # (2π/√3) · (√3/√(4π)) = √π
A2C2 = 2.4270324  # (2π/√8) · (3√5/√(12π))


def test_sh_basis_hand_values():
    s = 2**-0.5
    normals = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [s, s, 0.0]])
    expect = torch.tensor(
        [
            [A0C0, 0, A1C1, 0, 0, 0, A2C2 / 3**0.5, 0, 0],
            [A0C0, 0, 0, -A1C1, 0, 0, -0.5 * A2C2 / 3**0.5, 0, 0.5 * A2C2],
            [A0C0, -A1C1, 0, 0, 0, 0, -0.5 * A2C2 / 3**0.5, 0, -0.5 * A2C2],
            [A0C0, -A1C1 * s, 0, -A1C1 * s, A2C2 * 0.5, 0, -0.5 * A2C2 / 3**0.5, 0, 0],
        ]
    )
    torch.testing.assert_close(sh_basis(normals), expect, atol=1e-6, rtol=1e-6)


def test_sh_basis_yz_xz_terms():
    n = torch.tensor([0.0, 0.6, 0.8])
    assert sh_basis(n)[5].item() == pytest.approx(-A2C2 * 0.48, rel=1e-6)
    n = torch.tensor([0.6, 0.0, 0.8])
    assert sh_basis(n)[7].item() == pytest.approx(-A2C2 * 0.48, rel=1e-6)


def test_shade_ambient_and_block_order():
    albedo = torch.tensor([[[0.5, 0.25, 1.0]]])
    normals = torch.tensor([[[0.0, 0.0, 1.0]]])
    gamma = torch.zeros(1, 27)
    torch.testing.assert_close(shade(albedo, normals, gamma), AMBIENT * A0C0 * albedo)
    gamma[0, 0] = 1.0  # R block DC
    gamma[0, 9 + 2] = 0.5  # G block, z term
    out = shade(albedo, normals, gamma)[0, 0]
    torch.testing.assert_close(
        out, torch.tensor([1.8 * A0C0 * 0.5, (0.8 * A0C0 + 0.5 * A1C1) * 0.25, 0.8 * A0C0 * 1.0])
    )


def test_sh_coefficients_cardinality_and_exception():
    coeffs = sh_coefficients(torch.zeros(2, 27))
    assert coeffs.shape == (2, 3, 9)
    assert (coeffs[:, :, 0] == AMBIENT).all() and (coeffs[:, :, 1:] == 0).all()
    with pytest.raises(ValueError):
        sh_coefficients(torch.zeros(2, 26))


def test_shade_gradcheck():
    albedo = torch.rand(1, 4, 3, dtype=torch.float64, requires_grad=True)
    normals = torch.nn.functional.normalize(
        torch.randn(1, 4, 3, dtype=torch.float64), dim=-1
    ).requires_grad_()
    gamma = torch.randn(1, 27, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(shade, (albedo, normals, gamma))
