"""Fixtures of the training tests: a small synthetic face mesh, prepared batches, tiny networks."""

from __future__ import annotations

import numpy as np
import pytest

from mvinvert_cli.morphable.model import model_from_arrays


def synthetic_face_model(n: int = 13, seed: int = 0):
    """A spherical-cap "face" (n×n grid, ~2 dm wide, bulging towards the camera) with UVs,
    68 landmark vertices at plausible places, small random identity/expression bases."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(-0.8, 0.8, n)
    x, y = np.meshgrid(xs, -xs)  # row 0 at the top (y up)
    z = np.sqrt(1.5**2 - x**2 - y**2) - 1.5 + 0.3
    verts = np.stack([x, y, z], -1).reshape(-1, 3)
    ids = np.arange(n * n).reshape(n, n)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    # counter-clockwise seen from +z (x right, y up): top-left, bottom-left, bottom-right
    tris = np.concatenate([np.stack([a, c, d], -1).reshape(-1, 3), np.stack([a, d, b], -1).reshape(-1, 3)])
    uvs = np.stack([(x + 0.8) / 1.6, (y + 0.8) / 1.6], -1).reshape(-1, 2)

    def nearest(px, py):
        return int(np.argmin((verts[:, 0] - px) ** 2 + (verts[:, 1] - py) ** 2))

    def ring(cx, cy, rx, ry, count):
        angles = np.pi + np.linspace(0, 2 * np.pi, count, endpoint=False)  # start at the image-left corner
        return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]

    places = ([(x, -0.1 - 0.5 * (1 - x * x)) for x in np.linspace(-0.7, 0.7, 17)]  # jaw 0-16
              + [(x, 0.45) for x in np.linspace(-0.55, -0.15, 5)] + [(x, 0.45) for x in np.linspace(0.15, 0.55, 5)]
              + [(0.0, y) for y in np.linspace(0.3, 0.05, 4)] + [(x, -0.05) for x in np.linspace(-0.12, 0.12, 5)]
              + ring(-0.3, 0.25, 0.15, 0.06, 6) + ring(0.3, 0.25, 0.15, 0.06, 6)  # eyes 36-47
              + ring(0.0, -0.35, 0.25, 0.1, 12) + ring(0.0, -0.35, 0.15, 0.04, 8))  # mouth 48-67
    lms = [nearest(px, py) for px, py in places]
    v = len(verts)
    return model_from_arrays("synthetic-cap", verts, rng.normal(0, 0.01, (v, 3, 4)), rng.normal(0, 0.01, (v, 3, 3)),
                             None, None, tris, uvs, np.array(lms))


@pytest.fixture
def face_model():
    return synthetic_face_model()


def synthetic_photos(model, count: int = 3, size: int = 64, seed: int = 0) -> list[dict]:
    """Prepared-photo records (the fields ``mvinvert train`` caches) rendered from ``model``:
    a smooth random "true" texture at a random pose is the photo, its coverage the face mask, and
    a blurred, tinted copy of the true texture plays T_coarse."""
    import torch

    from mvinvert_cli.render import camera as cam
    from mvinvert_cli.render.rasterize import interpolate, rasterize
    from mvinvert_cli.train.path import five_points

    gen = torch.Generator().manual_seed(seed)
    camera = cam.Camera().resized(size)
    verts = model.mean_shape[None]
    items = []
    for _ in range(count):
        freq = torch.rand(3, 3, generator=gen) * 4
        phase = torch.rand(3, generator=gen) * 6
        xyz = model.mean_shape
        true = 0.5 + 0.3 * torch.sin(xyz @ freq + phase)  # (V,3)
        angles = (torch.rand(1, 3, generator=gen) - 0.5) * torch.tensor([[0.3, 0.6, 0.1]])
        translation = torch.zeros(1, 3)
        screen = camera.project(cam.transform(verts, angles, translation))
        frags = rasterize(screen, model.triangles, (size, size))
        photo = interpolate(frags, model.triangles, true[None]).permute(0, 3, 1, 2)[0]
        background = torch.rand(3, 1, 1, generator=gen)
        mask = frags.mask[0][None].float()
        photo = photo * mask + background * (1 - mask)
        coarse = 0.5 * true + 0.25 + 0.05 * torch.randn(true.shape, generator=gen)
        items.append({
            "photo": photo, "mask": mask, "vertices": model.mean_shape.clone(),
            "angles": angles[0], "translation": translation[0], "gamma": torch.zeros(27),
            "coarse": coarse.clamp(0, 1), "points5": five_points(model.landmarks(screen[..., :2]))[0],
        })
    return items


def tiny_networks(seed: int = 0):
    """A size-32 StyleGAN2 generator (style_dim 32), a two-stage IR-SE encoder for 32² inputs, w̄."""
    import torch

    from mvinvert_cli.invert.encoder import EncoderConfig, build_encoder
    from mvinvert_cli.invert.stylegan2 import Generator

    torch.manual_seed(seed)
    generator = Generator(32, 32, 2, channels={4: 32, 8: 32, 16: 16, 32: 8})
    encoder = build_encoder("psp", EncoderConfig(units=(1, 1), widths=(16, 32), n_styles=generator.n_latent,
                                                 style_dim=32, spatial=8, se_reduction=4))
    latent_avg = generator.mean_latent(1000, torch.Generator().manual_seed(seed))
    return encoder, generator, latent_avg[None].expand(generator.n_latent, -1).clone()


def tiny_refine(**overrides):
    """The refine settings of the tiny tests: 64² views (``overrides``: any other field)."""
    from mvinvert_cli.refine import RefineSettings

    return RefineSettings(**{"view_size": 64, **overrides})


TINY_PATH = dict(render_size=64, encoder_size=32, texture_size=32, identity_renders=2, refine=tiny_refine())


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every training test runs on one torch thread (``one_torch_thread``)."""
