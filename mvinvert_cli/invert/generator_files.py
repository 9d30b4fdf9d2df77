"""StyleGAN2 generator checkpoints: rosinality ``.pt`` (``stylegan2-ffhq-config-f.pt``, the
``decoder.*`` of a ReStyle checkpoint) and NVIDIA stylegan2-ada-pytorch ``.pkl`` network pickles,
loaded strictly into :class:`~mvinvert_cli.invert.stylegan2.Generator` (manifest
``stylegan2_ffhq_1024_rosinality.json``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import WeightsError
from ..weights import load_checkpoint, load_state_dict_strict
from .stylegan2 import BLUR_KERNEL, Generator, make_kernel

# ----------------------------------------------------------------------------- checkpoints

def generator_config(state: Mapping[str, Tensor], prefix: str = "") -> dict:
    """Generator(...) keyword arguments read off a rosinality-layout state_dict's shapes."""
    try:
        style_dim = int(state[f"{prefix}style.1.weight"].shape[1])
        n_mlp = sum(1 for k in state if k.startswith(f"{prefix}style.") and k.endswith(".weight"))
        n_rgb = sum(1 for k in state if k.startswith(f"{prefix}to_rgbs.") and k.endswith(".conv.weight"))
        channels = {4: int(state[f"{prefix}input.input"].shape[1])}
        for k in range(n_rgb):
            channels[2 ** (k + 3)] = int(state[f"{prefix}convs.{2 * k}.conv.weight"].shape[1])
    except (KeyError, IndexError, AttributeError) as exc:
        raise KeyError(f"no StyleGAN2 generator under '{prefix}' ({exc})") from exc
    return {"size": 2 ** (n_rgb + 2), "style_dim": style_dim, "n_mlp": n_mlp, "channels": channels}


def build_generator(state: Mapping[str, Tensor], source: str | os.PathLike, prefix: str = "") -> Generator:
    """A :class:`Generator` shaped after ``state`` (keys under ``prefix``), loaded strictly, in eval mode."""
    try:
        config = generator_config(state, prefix)
    except KeyError as exc:
        raise WeightsError(f"{source}: not a StyleGAN2 generator checkpoint: {exc.args[0]}") from exc
    with torch.device("meta"):
        generator = Generator(**config)
    generator = generator.to_empty(device="cpu")
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    load_state_dict_strict(generator, own, source, "StyleGAN2 generator")
    return generator.eval().requires_grad_(False)


@dataclass
class LoadedGenerator:
    """A generator checkpoint: ``generator`` (eval, frozen), ``latent_avg`` w̄ (D,), ``notes``."""

    generator: Generator
    latent_avg: Tensor
    notes: list[str]


def load_rosinality(path: str | os.PathLike, device: torch.device | str = "cpu",
                    trust_pickle: bool = False) -> LoadedGenerator:
    """Load ``{'g_ema': state_dict, 'latent_avg': (D,)}`` (``stylegan2-ffhq-config-f.pt``) strictly.

    A missing ``latent_avg`` is replaced by the mean of 10⁴ mapped z (seed 0), reported in ``notes``.
    NVIDIA ``.pkl`` files go through :func:`load_nvidia_pkl` (needs ``trust_pickle``).

    Raises:
        WeightsError: unreadable file, no ``g_ema``, or a key/shape mismatch.
    """
    if str(path).endswith(".pkl"):
        return load_nvidia_pkl(path, device, trust_pickle)
    ckpt = load_checkpoint(path, trust_pickle=trust_pickle)
    if not isinstance(ckpt, Mapping) or "g_ema" not in ckpt:
        raise WeightsError(f"{path}: not a rosinality StyleGAN2 checkpoint (no 'g_ema' entry)")
    generator = build_generator(ckpt["g_ema"], path).to(device)
    notes: list[str] = []
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is None:
        latent_avg = generator.mean_latent(10_000, torch.Generator().manual_seed(0))
        notes.append("checkpoint has no latent_avg: using the mean of 10^4 mapped samples")
    latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32).reshape(-1, generator.style_dim)[0]
    return LoadedGenerator(generator, latent_avg.to(device), notes)


# ----------------------------------------------------------------------------- NVIDIA .pkl

NVIDIA_NAME_MAP = """NVIDIA stylegan2-ada-pytorch G_ema → rosinality names (R = 8…size, k = log2(R) − 3):
  mapping.fc{i}.weight/bias              → style.{i+1}.weight/bias
  mapping.w_avg                          → latent_avg
  synthesis.b4.const (C,4,4)             → input.input (1,C,4,4)
  synthesis.b4.conv1.*                   → conv1.*
  synthesis.b4.torgb.*                   → to_rgb1.*
  synthesis.bR.conv0.* / conv1.*         → convs.{2k}.* / convs.{2k+1}.*
  synthesis.bR.torgb.*                   → to_rgbs.{k}.*
  per layer: weight (out,in,k,k)         → conv.weight (1,out,in,k,k)   (both converters flip the TF
                                           Conv0_up kernel the same way, so no flip between them)
             affine.weight / affine.bias → conv.modulation.weight / .bias
             bias (out)                  → activate.bias (convs) or bias (1,3,1,1) (to-RGB)
             noise_strength ()           → noise.weight (1,)
             noise_const (R,R)           → noises.noise_j (1,1,R,R), j in layer order
The blur kernels (resample_filter) are the same [1,3,3,1] FIR and are not copied."""


class _PersistentStub:
    """Stands in for a ``torch_utils.persistence`` object: keeps its pickled ``state`` only."""

    def __init__(self, meta: Mapping) -> None:
        self.class_name = meta.get("class_name", "")
        self.state = meta.get("state", {})


class _PklUnpickler(pickle.Unpickler):
    """Unpickles an ada-pytorch network pickle without its embedded source code.

    ``torch_utils.persistence._reconstruct_persistent_obj`` is replaced by :class:`_PersistentStub`
    and ``dnnlib`` containers by ``dict``; everything else resolves normally (the caller has opted in
    with ``trust_pickle``).
    """

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if module.startswith("torch_utils.persistence") and name == "_reconstruct_persistent_obj":
            return _PersistentStub
        if module.startswith("dnnlib"):
            return dict
        return super().find_class(module, name)


def _module_tensors(obj: object, prefix: str = "") -> dict[str, Tensor]:
    """Flatten a stub/nn.Module tree (``_parameters``, ``_buffers``, ``_modules``) into a state_dict."""
    state = obj.state if isinstance(obj, _PersistentStub) else getattr(obj, "__dict__", {})
    out: dict[str, Tensor] = {}
    for field in ("_parameters", "_buffers"):
        for name, value in (state.get(field) or {}).items():
            if value is not None:
                out[prefix + name] = value.detach() if isinstance(value, Tensor) else torch.as_tensor(value)
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_tensors(child, f"{prefix}{name}."))
    return out


def convert_nvidia_state(nv: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """ada-pytorch ``G_ema`` tensors → (rosinality ``g_ema`` state_dict, w̄ (D,)) per :data:`NVIDIA_NAME_MAP`.

    Noise buffers and blur kernels are filled in later by :func:`build_generator`'s strict load, so
    they are produced here as well (noise from ``noise_const``, kernels from [1,3,3,1]).
    """
    g: dict[str, Tensor] = {}
    n_mlp = sum(1 for k in nv if k.startswith("mapping.fc") and k.endswith(".weight"))
    for i in range(n_mlp):
        g[f"style.{i + 1}.weight"] = nv[f"mapping.fc{i}.weight"]
        g[f"style.{i + 1}.bias"] = nv[f"mapping.fc{i}.bias"]
    g["input.input"] = nv["synthesis.b4.const"][None]
    resolutions = sorted(int(k.split(".")[1][1:]) for k in nv if k.startswith("synthesis.b") and k.endswith("torgb.weight"))
    noise_idx = 0

    def layer(src: str, dst: str) -> None:
        nonlocal noise_idx
        g[f"{dst}.conv.weight"] = nv[f"{src}.weight"][None]
        g[f"{dst}.conv.modulation.weight"] = nv[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = nv[f"{src}.affine.bias"]
        g[f"{dst}.noise.weight"] = nv[f"{src}.noise_strength"].reshape(1)
        g[f"{dst}.activate.bias"] = nv[f"{src}.bias"]
        g[f"noises.noise_{noise_idx}"] = nv[f"{src}.noise_const"][None, None]
        noise_idx += 1

    def torgb(src: str, dst: str) -> None:
        g[f"{dst}.conv.weight"] = nv[f"{src}.weight"][None]
        g[f"{dst}.conv.modulation.weight"] = nv[f"{src}.affine.weight"]
        g[f"{dst}.conv.modulation.bias"] = nv[f"{src}.affine.bias"]
        g[f"{dst}.bias"] = nv[f"{src}.bias"].view(1, -1, 1, 1)

    layer("synthesis.b4.conv1", "conv1")
    torgb("synthesis.b4.torgb", "to_rgb1")
    kernel = make_kernel(BLUR_KERNEL)
    for k, res in enumerate(r for r in resolutions if r > 4):
        layer(f"synthesis.b{res}.conv0", f"convs.{2 * k}")
        layer(f"synthesis.b{res}.conv1", f"convs.{2 * k + 1}")
        torgb(f"synthesis.b{res}.torgb", f"to_rgbs.{k}")
        g[f"convs.{2 * k}.conv.blur.kernel"] = kernel * 4
        g[f"to_rgbs.{k}.upsample.kernel"] = kernel * 4
    return g, nv["mapping.w_avg"]


def load_nvidia_pkl(path: str | os.PathLike, device: torch.device | str = "cpu",
                    trust_pickle: bool = False) -> LoadedGenerator:
    """Convert ``G_ema`` of an NVIDIA stylegan2-ada-pytorch ``.pkl`` (executes pickle code: needs trust).

    Raises:
        WeightsError: without ``trust_pickle``, or when the pickle holds no usable ``G_ema``.
    """
    if not trust_pickle:
        raise WeightsError(f"{path}: .pkl checkpoints execute code when loaded; pass --trust-pickle "
                           "only if you trust its source")
    try:
        with open(path, "rb") as handle:
            data = _PklUnpickler(handle).load()
        nv = _module_tensors(data["G_ema"])
        state, w_avg = convert_nvidia_state(nv)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: not a stylegan2-ada-pytorch network pickle with G_ema ({exc})") from exc
    generator = build_generator(state, path).to(device)
    return LoadedGenerator(generator, w_avg.float().to(device), [f"converted from NVIDIA pickle {path}"])
