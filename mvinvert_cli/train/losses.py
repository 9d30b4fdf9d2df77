"""The training losses of MvInvert §3.3 (Eq. 7–11) and their weighted total.

Every loss is a pure function of tensors (no I/O, no device choice); the face network used by the
perceptual (Eq. 8) and identity (Eq. 9) terms is a :class:`FaceFeatures` module, built either from
a backbone found in the weights registry or from the small built-in :class:`TinyFaceNet` (tests,
smoke runs). Shapes use B (batch), K (random renders per sample), C, H, W, D (embedding size).

Total (DESIGN.md §4): 1.9·L_rec + 0.2·L_perc + 0.8·L_id + 0.1·(L_adv^tex + L_adv^face).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import weights as registry
from ..errors import UsageError
from ..identity import arcface_crop, load_arcface

TERMS = ("rec", "perc", "id", "adv_tex", "adv_face")
"""Names of the loss terms, in the order they are logged."""


# ----------------------------------------------------------------------------- Eq. 7: reconstruction

def blend_face(render: Tensor, photo: Tensor, mask: Tensor) -> Tensor:
    """The re-rendered face pasted onto the photo: M·Î + (1 − M)·I.

    Args:
        render: (B,3,H,W) re-rendered face Î in [0,1].
        photo: (B,3,H,W) photo I in [0,1].
        mask: (B,1,H,W) face mask M in [0,1] (rendered coverage ∧ face-parsing mask).
    """
    return mask * render + (1.0 - mask) * photo


def reconstruction_loss(photo: Tensor, blended: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """MvInvert Eq. 7: masked ℓ2 photometric loss, Σ_p M_p ‖I_p − Î_p‖₂ / Σ_p M_p.

    ``‖·‖₂`` is the Euclidean norm of the RGB difference at pixel p (the Deep3DFaceRecon form);
    pixels outside the mask do not count. An empty mask gives 0 (nothing to reconstruct).

    Args:
        photo: (B,3,H,W) photo I in [0,1].
        blended: (B,3,H,W) re-rendered, blended face Î (see :func:`blend_face`).
        mask: (B,1,H,W) or (B,H,W) weights in [0,1] (bool accepted).

    Returns:
        scalar tensor.
    """
    if mask.dim() == 3:
        mask = mask[:, None]
    mask = mask.to(photo.dtype)
    distance = torch.linalg.vector_norm(photo - blended, dim=1, keepdim=True)  # (B,1,H,W)
    return (mask * distance).sum() / mask.sum().clamp_min(eps)  # Eq. 7


# ----------------------------------------------------------------------------- face networks

class TinyFaceNet(nn.Module):
    """A small convolutional face network for tests and smoke runs (random, frozen, seeded).

    Four stride-2 3×3 convolutions with LeakyReLU (widths ``width·(1,2,4,8)``), global average
    pooling and a linear embedding of ``dim``. Its weights come from ``seed`` alone, so every
    process builds the same network.

    Input (B,3,H,W) in [−1,1]; :meth:`forward` returns the embedding (B,dim); the feature maps are
    the outputs of ``blocks.0`` … ``blocks.3``.
    """

    def __init__(self, width: int = 8, dim: int = 64, seed: int = 0) -> None:
        super().__init__()
        channels = [3] + [width * m for m in (1, 2, 4, 8)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
                for cin, cout in zip(channels[:-1], channels[1:], strict=True)
            )
            self.embed = nn.Linear(channels[-1], dim)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.embed(x.mean(dim=(2, 3)))


class FaceFeatures(nn.Module):
    """A frozen face network seen through its intermediate feature maps and final embedding.

    Any backbone works: the named sub-modules ``layers`` are hooked and their outputs collected
    during one forward pass (e.g. ``layer1``…``layer4`` of an ArcFace iResNet, ``blocks.0``… of
    :class:`TinyFaceNet`). Images are resized to ``input_size`` and mapped to the network's range
    as ``(x − shift) / scale`` (ArcFace: shift 0.5, scale 0.5 → [−1,1]).

    The backbone's parameters are frozen (``requires_grad=False``) and it is kept in eval mode,
    but gradients flow to the *input* images: that is how Eq. 8 and Eq. 9 train the encoder.
    """

    def __init__(self, backbone: nn.Module, layers: Sequence[str], input_size: int = 112,
                 shift: float = 0.5, scale: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.layers = tuple(layers)
        self.input_size = input_size
        self.shift, self.scale = shift, scale
        modules = dict(self.backbone.named_modules())
        unknown = [name for name in self.layers if name not in modules]
        if unknown:
            raise UsageError(f"face network has no layer {unknown[0]!r} for perceptual features")
        self._captured: dict[str, Tensor] = {}
        for name in self.layers:
            modules[name].register_forward_hook(self._capture(name))

    def _capture(self, name: str):
        def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
            self._captured[name] = output
        return hook

    def train(self, mode: bool = True) -> FaceFeatures:  # the backbone stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: Tensor, points5: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """images (B,3,H,W) in [0,1] → (feature maps [(B,C_l,H_l,W_l)], embedding (B,D)).

        With ``points5`` (B,5,2) px [eyeL, eyeR, nose, mouthL, mouthR] the face is first warped to
        the ArcFace 5-point template (:func:`mvinvert_cli.identity.arcface_crop`, differentiable);
        without, the whole image is resized to ``input_size``.
        """
        x = images
        if points5 is not None:
            x = arcface_crop(x, points5)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False)
        self._captured = {}
        embedding = self.backbone((x - self.shift) / self.scale)
        features = [self._captured[name] for name in self.layers]
        self._captured = {}
        return features, embedding

    def extra_repr(self) -> str:
        return f"layers={self.layers}, input_size={self.input_size}"


def tiny_face_features(width: int = 8, dim: int = 64, input_size: int = 64, seed: int = 0) -> FaceFeatures:
    """The built-in :class:`TinyFaceNet` wrapped as :class:`FaceFeatures` (all four blocks hooked)."""
    net = TinyFaceNet(width, dim, seed)
    return FaceFeatures(net, [f"blocks.{i}" for i in range(len(net.blocks))], input_size=input_size)


FACE_NETWORKS = ("tiny", "arcface")
"""Face networks for Eq. 8–9: the built-in tiny net, or ArcFace iResNet from the weights registry."""


def face_network(name: str, device: torch.device, trust_pickle: bool = False) -> FaceFeatures:
    """Build the face network ``name`` for the perceptual and identity losses, on ``device``.

    "arcface": the registry's ArcFace iResNet (r50/r100 ``backbone.pth``), features of
    ``layer1``…``layer4``, 112² input in [−1,1]. "tiny": :func:`tiny_face_features` (random,
    seeded: a smoke-test stand-in, not a face recogniser).

    Raises:
        UsageError: unknown name.
        WeightsError: "arcface" requested and its file is missing or does not load.
    """
    if name == "tiny":
        return tiny_face_features().to(device)
    if name == "arcface":
        net = load_arcface(registry.require("arcface"), device, trust_pickle=trust_pickle)
        layers = [f"layer{i}" for i in range(1, len(net.layers_spec) + 1)]
        return FaceFeatures(net, layers, input_size=_arcface_input(net)).to(device)
    raise UsageError(f"unknown face network {name!r}; expected one of {', '.join(FACE_NETWORKS)}")


def _arcface_input(net: nn.Module) -> int:
    """Input side of an iResNet: its fc input is width·side² with side = input / 2^stages."""
    stages = len(net.layers_spec)
    width = getattr(net, f"layer{stages}")[-1].conv2.out_channels
    side = round((net.fc.in_features / width) ** 0.5)
    return side * 2**stages


# ----------------------------------------------------------------------------- Eq. 8: perceptual

def normalize_channels(features: Tensor, eps: float = 1e-10) -> Tensor:
    """Unit-normalise a feature map along channels: φ / ‖φ‖₂ at every position, (B,C,H,W)."""
    return features / torch.sqrt((features * features).sum(dim=1, keepdim=True) + eps)


def perceptual_loss(features_a: Sequence[Tensor], features_b: Sequence[Tensor],
                    mask: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """MvInvert Eq. 8: normalised feature distance of a face network, averaged over its layers.

    L_perc = (1/L) Σ_l Σ_{hw} m_l(h,w) ‖φ̂_l(I)_{hw} − φ̂_l(Î)_{hw}‖²₂ / Σ_{hw} m_l(h,w), with
    φ̂ the channel-normalised features (:func:`normalize_channels`) and m_l the mask resized to
    layer l (all ones without a mask). Each layer's term lies in [0, 4].

    Args:
        features_a, features_b: the same number of (B,C_l,H_l,W_l) maps, pairwise equal shapes.
        mask: optional (B,1,H,W) weights in [0,1], area-resized to each layer's resolution.
    """
    if len(features_a) != len(features_b) or not features_a:
        raise ValueError("perceptual_loss needs the same, non-zero number of feature maps")
    terms = []
    for fa, fb in zip(features_a, features_b, strict=True):
        distance = (normalize_channels(fa) - normalize_channels(fb)).pow(2).sum(dim=1, keepdim=True)
        if mask is None:
            terms.append(distance.mean())
            continue
        m = F.interpolate(mask.to(fa.dtype), size=fa.shape[-2:], mode="area")  # (B,1,H_l,W_l)
        terms.append((m * distance).sum() / m.sum().clamp_min(eps))  # Eq. 8
    return torch.stack(terms).mean()


# ----------------------------------------------------------------------------- Eq. 9: identity

def identity_loss(reference: Tensor, renders: Tensor, eps: float = 1e-8) -> Tensor:
    """MvInvert Eq. 9: L_id = (1/K) Σ_k (1 − cos(f(I), f(R_k))), averaged over the batch.

    Args:
        reference: (B,D) identity embedding of the photo I.
        renders: (B,K,D) embeddings of K renders R_k of the recovered face under random pose,
            expression and lighting, or (B,D) for K = 1.

    Returns:
        scalar in [0, 2]; 0 when every render has the reference's direction.
    """
    if renders.dim() == 2:
        renders = renders[:, None]
    cosine = F.cosine_similarity(reference[:, None, :], renders, dim=-1, eps=eps)  # (B,K)
    return (1.0 - cosine).mean()  # Eq. 9


# ----------------------------------------------------------------------------- Eq. 10–11: adversarial

def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating GAN loss of the generator side, mean softplus(−D(fake)) (Eq. 10/11).

    ``fake_logits`` is (B,) or (B,heads): for the two-head texture discriminator (Eq. 10) the
    global and central-crop heads are averaged, for the face discriminator (Eq. 11) it has one head.
    """
    return F.softplus(-fake_logits).mean()


def discriminator_adversarial_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic discriminator loss, mean softplus(−D(real)) + mean softplus(D(fake)) (Eq. 10/11)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """R1 regulariser of the discriminator: mean over the batch of ‖∇_x D(x)‖² at real samples.

    ``real_inputs`` must have ``requires_grad`` set before the discriminator saw them.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


# ----------------------------------------------------------------------------- total

@dataclass(frozen=True)
class LossWeights:
    """Weights of the total loss; defaults are the paper's (DESIGN.md §4).

    Attributes:
        rec: λ of Eq. 7 (1.9).
        perc: λ of Eq. 8 (0.2).
        id: λ of Eq. 9 (0.8).
        adv: λ shared by the texture (Eq. 10) and face (Eq. 11) adversarial terms (0.1).
    """

    rec: float = 1.9
    perc: float = 0.2
    id: float = 0.8
    adv: float = 0.1

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def of(self, term: str) -> float:
        """The weight applied to loss term ``term`` (one of :data:`TERMS`)."""
        if term not in TERMS:
            raise KeyError(f"unknown loss term {term!r}; expected one of {TERMS}")
        return self.adv if term.startswith("adv_") else getattr(self, term)


def total_loss(terms: Mapping[str, Tensor], weights: LossWeights = LossWeights()) -> Tensor:
    """1.9·L_rec + 0.2·L_perc + 0.8·L_id + 0.1·(L_adv^tex + L_adv^face) over the terms present.

    A term left out (e.g. no real textures → no Eq. 10) contributes nothing; the caller reports it.
    """
    if not terms:
        raise ValueError("total_loss needs at least one term")
    return torch.stack([weights.of(name) * value for name, value in terms.items()]).sum()
