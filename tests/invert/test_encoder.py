"""ReStyle IR-SE encoders: manifest layouts, e4e structure, strict checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from mvinvert_cli.errors import WeightsError
from mvinvert_cli.invert.encoder import (
    BackboneEncoder,
    EncoderConfig,
    EncoderType,
    ProgressiveBackboneEncoder,
    build_encoder,
    encoder_config,
    load_restyle,
    restyle_checkpoint,
)

from .conftest import TINY_ENCODER, known_w_plus, tiny_encoder


@pytest.mark.parametrize("kind,name", [("psp", "restyle_psp_ffhq_encode"), ("e4e", "restyle_e4e_ffhq_encode")])
def test_full_size_matches_manifest(manifest, kind, name):
    with torch.device("meta"):
        encoder = build_encoder(kind)
        out = encoder(torch.empty(2, 6, 256, 256))
    own = {f"encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert own == manifest(name)
    assert out.shape == (2, 18, 512)
    assert EncoderConfig().input_size == 256
    assert encoder_config({f"encoder.{k}": v for k, v in encoder.state_dict().items()}) == EncoderConfig()


def test_tiny_shapes_and_config_round_trip():
    encoder = tiny_encoder()
    out = encoder(torch.randn(3, 6, TINY_ENCODER.input_size, TINY_ENCODER.input_size))
    assert out.shape == (3, TINY_ENCODER.n_styles, TINY_ENCODER.style_dim)
    assert encoder_config({f"encoder.{k}": v for k, v in encoder.state_dict().items()}) == TINY_ENCODER


def test_e4e_rows_are_base_plus_deltas():
    encoder = tiny_encoder("e4e").eval()
    x = torch.randn(2, 6, 32, 32)
    out = encoder(x)
    feats = encoder.features(x)
    base = encoder.styles[0](feats)
    torch.testing.assert_close(out[:, 0], base)
    torch.testing.assert_close(out[:, 3], base + encoder.styles[3](feats))
    psp = BackboneEncoder(TINY_ENCODER).eval()
    psp.load_state_dict(encoder.state_dict())
    torch.testing.assert_close(psp(x)[:, 3], encoder.styles[3](feats))


def test_restyle_checkpoint_loads_strictly(restyle_pt, generator):
    model = load_restyle(restyle_pt)
    assert model.kind is EncoderType.psp and isinstance(model.encoder, BackboneEncoder)
    assert not model.encoder.training
    assert model.latent_avg.shape == (generator.n_latent, generator.style_dim)
    assert model.opts["encoder_type"] == "BackboneEncoder" and model.opts["input_nc"] == 6
    reference = tiny_encoder().eval()
    x = torch.randn(2, 6, 32, 32)
    torch.testing.assert_close(model.encoder(x), reference(x))
    w = known_w_plus(generator, 1, seed=3)
    torch.testing.assert_close(model.decoder(w), generator(w))


def test_e4e_checkpoint_and_vector_latent_avg(tmp_path, generator):
    path = tmp_path / "restyle_e4e_ffhq_encode.pt"
    torch.save(restyle_checkpoint(tiny_encoder("e4e"), generator, generator.mean_latent(100)), path)
    model = load_restyle(path)
    assert isinstance(model.encoder, ProgressiveBackboneEncoder)
    assert model.latent_avg.shape == (generator.n_latent, generator.style_dim)
    assert model.notes and "repeated" in model.notes[0]


@pytest.mark.parametrize("damage", ["encoder_key", "decoder_shape", "type", "latent_avg", "layout"])
def test_restyle_mismatch_raises_weights_error(tmp_path, generator, damage):
    ckpt = restyle_checkpoint(tiny_encoder(), generator, generator.mean_latent(100))
    state = ckpt["state_dict"]
    if damage == "encoder_key":
        state["encoder.extra.weight"] = torch.zeros(1)
    elif damage == "decoder_shape":
        state["decoder.conv1.activate.bias"] = torch.zeros(3)
    elif damage == "type":
        ckpt["opts"]["encoder_type"] = "ResNetBackboneEncoder"
    elif damage == "latent_avg":
        ckpt["latent_avg"] = torch.zeros(5, 64)
    else:
        ckpt = {"encoder": state}
    path = tmp_path / "bad.pt"
    torch.save(ckpt, path)
    with pytest.raises(WeightsError, match="bad.pt"):
        load_restyle(path)
