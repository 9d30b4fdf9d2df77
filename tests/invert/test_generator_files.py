"""invert.generator_files: rosinality .pt loads strictly, NVIDIA .pkl converts by the name map."""

from __future__ import annotations

import pickle
import sys
import types

import pytest
import torch

from mvinvert_cli.errors import WeightsError
from mvinvert_cli.invert.generator_files import (
    NVIDIA_NAME_MAP,
    convert_nvidia_state,
    load_nvidia_pkl,
    load_rosinality,
)
from mvinvert_cli.invert.stylegan2 import Generator

from .conftest import known_w_plus


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
