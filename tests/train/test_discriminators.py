"""train.discriminators: shapes, configurable sizes, the central-crop head, trainability."""

from __future__ import annotations

import pytest
import torch

from mvinvert_cli.train import discriminators as D
from mvinvert_cli.train.losses import discriminator_adversarial_loss


def test_channel_table():
    assert D.channel_table(32, 256, 64) == {4: 64, 8: 32, 16: 16, 32: 8}
    with pytest.raises(ValueError):
        D.channel_table(48, 256, 64)


def test_cardinality():
    tex = D.TextureDiscriminator(size=16, channel_base=128, channel_max=16)
    face = D.FaceDiscriminator(size=16, channel_base=128, channel_max=16)
    assert tex(torch.rand(3, 3, 64, 64)).shape == (3, 2)
    assert face(torch.rand(3, 3, 40, 40)).shape == (3, 1)
    assert "crop=0.5" in repr(tex) and "size=16" in repr(face)


def test_central_crop_feature():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    crop = D.central_crop(images, 0.5)
    assert torch.equal(crop, images[..., 2:6, 2:6])
    with pytest.raises(ValueError):
        D.TextureDiscriminator(size=8, crop=0.0)


def test_central_head_ignores_the_border():
    torch.manual_seed(0)
    tex = D.TextureDiscriminator(size=8, crop=0.5, channel_base=64, channel_max=8)
    a = torch.rand(2, 3, 16, 16)
    b = a.clone()
    b[..., :2, :] = 0.0  # change only the border rows
    la, lb = tex(a), tex(b)
    assert torch.allclose(la[:, 1], lb[:, 1])
    assert not torch.allclose(la[:, 0], lb[:, 0])


def test_discriminator_learns_to_separate():
    torch.manual_seed(0)
    disc = D.FaceDiscriminator(size=8, channel_base=64, channel_max=8)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3)
    real = torch.rand(8, 3, 8, 8) * 0.2 + 0.7
    fake = torch.rand(8, 3, 8, 8) * 0.2
    first = None
    for _ in range(30):
        loss = discriminator_adversarial_loss(disc(real), disc(fake))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
