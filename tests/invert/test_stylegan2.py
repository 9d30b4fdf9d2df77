"""StyleGAN2 generator: manifest layout, FIR ops against scipy, w/w+/truncation/noise/stop_at, loaders."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from mvinvert_cli.errors import WeightsError
from mvinvert_cli.invert.stylegan2 import (
    NVIDIA_NAME_MAP,
    Blur,
    Generator,
    ModulatedConv2d,
    Upsample,
    convert_nvidia_state,
    fir_filter,
    load_nvidia_pkl,
    load_rosinality,
    make_kernel,
)

from .conftest import known_w_plus, tiny_generator


def state_dict_shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_full_size_matches_manifest(manifest):
    with torch.device("meta"):
        g = Generator(1024, 512, 8, channel_multiplier=2)
    assert state_dict_shapes(g) == manifest("stylegan2_ffhq_1024_rosinality")
    assert g.n_latent == 18 and g.num_layers == 17
    assert sum(p.numel() for p in g.parameters()) == 30_370_060


def _upfirdn_reference(x: np.ndarray, kernel: np.ndarray, up: int, pad: tuple[int, int]) -> np.ndarray:
    """Zero-insert, pad, 'valid' 2-D convolution with scipy (the upfirdn2d definition)."""
    h, w = x.shape
    z = np.zeros((h * up, w * up))
    z[::up, ::up] = x
    z = np.pad(z, ((pad[0], pad[1]), (pad[0], pad[1])))
    return convolve2d(z, kernel, mode="valid")


@pytest.mark.parametrize("up,pad,gain", [(2, (2, 1), 4), (1, (1, 1), 4), (1, (2, 2), 1)])
def test_fir_filter_matches_scipy(up, pad, gain):
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    kernel = make_kernel((1, 3, 3, 1)).double() * gain
    out = fir_filter(x, kernel, pad, up=up)
    ref = _upfirdn_reference(x[1, 2].numpy(), kernel.numpy(), up, pad)
    assert out.shape[-2:] == ref.shape
    np.testing.assert_allclose(out[1, 2].numpy(), ref, atol=1e-12)


def test_upsample_and_blur_keep_dc_and_double_size():
    x = torch.full((1, 3, 8, 8), 0.7)
    up = Upsample()(x)
    assert up.shape == (1, 3, 16, 16)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))
    blur = Blur((1, 3, 3, 1), pad=(1, 1), upsample_factor=2)
    assert blur(x).shape == (1, 3, 7, 7)


@pytest.mark.parametrize("upsample,demodulate", [(False, True), (True, True), (False, False)])
def test_modulated_conv_grouped_matches_per_sample_loop(upsample, demodulate):
    torch.manual_seed(3)
    conv = ModulatedConv2d(5, 4, 3 if demodulate else 1, 8, demodulate=demodulate, upsample=upsample).double()
    x, style = torch.randn(3, 5, 6, 6, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    out = conv(x, style)
    for b in range(3):
        s = conv.modulation(style[b:b + 1])[0]
        w = conv.scale * conv.weight[0] * s[None, :, None, None]  # (out,in,k,k)
        if demodulate:
            w = w / torch.sqrt((w ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        if upsample:
            ref = conv.blur(F.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2))
        else:
            ref = F.conv2d(x[b:b + 1], w, padding=conv.padding)
        torch.testing.assert_close(out[b:b + 1], ref)
    assert out.shape[-1] == (12 if upsample else 6)


def test_w_equals_broadcast_w_plus_and_mapping(generator):
    z = torch.randn(2, generator.style_dim)
    w = generator.mapping(z)
    a = generator(z, input_is_latent=False)
    b = generator(w)
    c = generator(w[:, None].repeat(1, generator.n_latent, 1))
    assert a.shape == (2, 3, 32, 32)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b, c)


def test_w_plus_rows_are_used(generator):
    w_plus = known_w_plus(generator, 1, seed=5)
    base = generator(w_plus)
    for row in (0, 1, generator.n_latent - 1):
        changed = w_plus.clone()
        changed[:, row] += 1.0
        assert (generator(changed) - base).abs().max() > 1e-4, row


def test_truncation_zero_gives_the_average_image(generator):
    w_avg = generator.mean_latent(500)
    z = torch.randn(3, generator.style_dim)
    out = generator(z, input_is_latent=False, truncation=0.0, truncation_latent=w_avg)
    torch.testing.assert_close(out, generator(w_avg[None]).expand(3, -1, -1, -1))
    half = generator(z, input_is_latent=False, truncation=0.5, truncation_latent=w_avg)
    assert not torch.allclose(half, out)
    with pytest.raises(ValueError):
        generator(z, input_is_latent=False, truncation=0.5)


def test_fixed_noise_is_deterministic_random_noise_is_not(generator):
    w = known_w_plus(generator, 2, seed=1)
    torch.testing.assert_close(generator(w), generator(w))
    with torch.no_grad():
        for layer in [generator.conv1, *generator.convs]:
            layer.noise.weight.fill_(0.5)
    assert (generator(w, randomize_noise=True) - generator(w)).abs().max() > 1e-3
    zero = [torch.zeros_like(n) for n in generator.noise_maps()]
    assert (generator(w, noise=zero) - generator(w)).abs().max() > 1e-3


def test_stop_at_returns_the_intermediate_skip_image(generator):
    w_plus = known_w_plus(generator, 2, seed=2)
    full = generator(w_plus)
    torch.testing.assert_close(generator(w_plus, stop_at=32), full)
    half = generator(w_plus, stop_at=16)
    assert half.shape == (2, 3, 16, 16)
    used = 6  # rows 0..5 reach 16² (conv1, to_rgb1, 8²: 1,2 + rgb 3, 16²: 3,4 + rgb 5)
    changed = w_plus.clone()
    changed[:, used:] += 3.0
    torch.testing.assert_close(generator(changed, stop_at=16), half)
    assert (generator(changed) - full).abs().max() > 1e-4
    # the coarse skip image is a low-pass preview of the full image
    pooled = F.avg_pool2d(full, 2)
    assert (half - pooled).abs().mean() < (half - pooled.flip(-1)).abs().mean()
    with pytest.raises(ValueError):
        generator(w_plus, stop_at=24)


def test_bad_latent_shape_raises(generator):
    with pytest.raises(ValueError):
        generator(torch.zeros(1, 5, generator.style_dim))


def test_rosinality_checkpoint_loads_strictly(rosinality_pt, generator):
    loaded = load_rosinality(rosinality_pt)
    assert loaded.generator.size == 32 and loaded.generator.channels == generator.channels
    assert loaded.latent_avg.shape == (generator.style_dim,) and loaded.notes == []
    assert not any(p.requires_grad for p in loaded.generator.parameters())
    w = known_w_plus(generator, 2, seed=4)
    torch.testing.assert_close(loaded.generator(w), generator(w))


def test_rosinality_without_latent_avg_is_reported(tmp_path, generator):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": generator.state_dict()}, path)
    loaded = load_rosinality(path)
    assert loaded.notes and "latent_avg" in loaded.notes[0]
    torch.testing.assert_close(loaded.latent_avg, generator.mean_latent(10_000, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("damage", ["drop", "reshape", "no_g_ema"])
def test_rosinality_mismatch_raises_weights_error(tmp_path, generator, damage):
    state = dict(generator.state_dict())
    if damage == "drop":
        del state["noises.noise_3"]
    elif damage == "reshape":
        state["to_rgb1.bias"] = torch.zeros(1, 4, 1, 1)
    path = tmp_path / "g.pt"
    torch.save({"g": state} if damage == "no_g_ema" else {"g_ema": state}, path)
    with pytest.raises(WeightsError, match="g.pt"):
        load_rosinality(path)


def _to_nvidia(g: Generator) -> dict[str, torch.Tensor]:
    """The inverse of the documented name map (test helper), ada-pytorch G_ema naming."""
    sd = g.state_dict()
    nv = {f"mapping.fc{i}.{p}": sd[f"style.{i + 1}.{p}"] for i in range(g.n_mlp) for p in ("weight", "bias")}
    nv["mapping.w_avg"] = torch.randn(g.style_dim)
    nv["synthesis.b4.const"] = sd["input.input"][0]

    def layer(dst, src, j):
        nv[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        nv[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        nv[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        nv[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"][0]
        nv[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        nv[f"{dst}.noise_const"] = sd[f"noises.noise_{j}"][0, 0]
        nv[f"{dst}.resample_filter"] = torch.ones(4, 4)

    def rgb(dst, src):
        nv[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        nv[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        nv[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        nv[f"{dst}.bias"] = sd[f"{src}.bias"].flatten()

    layer("synthesis.b4.conv1", "conv1", 0)
    rgb("synthesis.b4.torgb", "to_rgb1")
    for k in range(len(g.to_rgbs)):
        r = 2 ** (k + 3)
        layer(f"synthesis.b{r}.conv0", f"convs.{2 * k}", 2 * k + 1)
        layer(f"synthesis.b{r}.conv1", f"convs.{2 * k + 1}", 2 * k + 2)
        rgb(f"synthesis.b{r}.torgb", f"to_rgbs.{k}")
    return nv


def test_nvidia_name_map_round_trip(generator):
    nv = _to_nvidia(generator)
    state, w_avg = convert_nvidia_state(nv)
    assert set(state) == set(generator.state_dict())
    for key, value in generator.state_dict().items():
        torch.testing.assert_close(state[key], value, msg=key)
    assert w_avg is nv["mapping.w_avg"]
    assert "noise_const" in NVIDIA_NAME_MAP


class _Persistent:
    """Pickles like a ``torch_utils.persistence`` object: a call of _reconstruct_persistent_obj(meta)."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (
            {"type": "class", "version": 4, "module_src": "raise SystemExit('code ran')",
             "class_name": "training.networks.Generator", "state": self.state},)


def _write_fake_ada_pkl(path, nv):
    """A network pickle shaped like stylegan2-ada-pytorch's (G_ema module tree of persistent objects)."""
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by our loader
        raise AssertionError("embedded code must not run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    tree: dict = {}
    for key, value in nv.items():
        *mods, leaf = key.split(".")
        node = tree
        for m in mods:
            node = node.setdefault(m, {})
        node[leaf] = value

    def build(node):
        params = {k: v for k, v in node.items() if isinstance(v, torch.Tensor)}
        children = {k: build(v) for k, v in node.items() if isinstance(v, dict)}
        return _Persistent({"_parameters": params, "_buffers": {}, "_modules": children, "training": False})

    parent = types.ModuleType("torch_utils")
    parent.persistence = module
    sys.modules.update({"torch_utils": parent, "torch_utils.persistence": module})
    try:
        with open(path, "wb") as handle:
            pickle.dump({"G_ema": build(tree), "training_set_kwargs": None}, handle)
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]


def test_nvidia_pkl_needs_trust_and_converts(tmp_path, generator):
    path = tmp_path / "ffhq.pkl"
    nv = _to_nvidia(generator)
    _write_fake_ada_pkl(path, nv)
    with pytest.raises(WeightsError, match="trust"):
        load_rosinality(path)
    loaded = load_nvidia_pkl(path, trust_pickle=True)
    assert "NVIDIA" in loaded.notes[0]
    torch.testing.assert_close(loaded.latent_avg, nv["mapping.w_avg"])
    w = known_w_plus(generator, 1, seed=9)
    torch.testing.assert_close(loaded.generator(w), generator(w))


def test_nvidia_pkl_without_g_ema_is_a_weights_error(tmp_path):
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"D": 1}, handle)
    with pytest.raises(WeightsError, match="G_ema"):
        load_nvidia_pkl(path, trust_pickle=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare full-precision convolutions
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    g = tiny_generator()
    w = known_w_plus(g, 2, seed=0)
    cpu = g(w)
    gpu = g.to("cuda")(w.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-4, rtol=1e-3)
    assert g(w.cuda(), stop_at=16).device.type == "cuda"
