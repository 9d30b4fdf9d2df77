"""Multi-photo recovery: several photos of one person → one mesh and one complete texture.

    per photo: align → parse → fit        (the Recoverer's loaded models, one stage call each)
    screen:    no face / different person → reported and left out (landmark-shape distance in
               canonical space; identity-embedding cosine where an identity backend is present)
    joint fit: one identity shape (the mesh), per-photo pose and expression (``morphable.joint_fit``)
    sample:    T_uv and Eq. 4 scores of every photo through its own fit (``texture.photo.sample_photo``)
    delight:   each photo's colours ÷ its fitted SH irradiance → albedo samples; per-channel gain of
               each to the first photo's albedo on the vertices both see (``texture.multiview``)
    blend:     Eq. 4-score-weighted mean albedo where any photo sees, T_pca's albedo Poisson-continued
               where none does; re-lit by the first photo's light (the output stays in photo colours)
    [refine]:  with a generator, GAN-inverted views of that texture fill only what no photo sees
    bake:      UV texture with texel detail from each triangle's main photo

The result is a :class:`~mvinvert_cli.records_multi.MultiRecovery` whose ``recovery`` is the first
usable photo's :class:`~mvinvert_cli.records.Recovery` carrying the blended texture and the shared
identity mesh, and whose ``albedo`` is the blended albedo (what ``bench_multiview`` re-lights at a
held-out photo's light); :func:`recover_photos_to_directory` writes it atomically (``io.multi_outputs``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .align.observation import Observation, transform_points
from .errors import InputError, NoFaceError
from .identity import IdentityNet
from .io.atomic import atomic_dir
from .io.images import Photo, load_image
from .io.multi_outputs import write_multi_recovery
from .io.paths import check_output_dir
from .morphable.joint_fit import joint_fit, rigid_points, shape_distance
from .morphable.result import FitResult
from .pipeline import Recoverer
from .records import CoarseTexture, ProgressCallback, Recovery, Refinement, StageLog, UVTextures
from .records_multi import EXCLUDED, USED, MultiRecovery, PhotoInput
from .refine import REFINE_STEPS, RefineInputs, refine
from .render.camera import Camera
from .texture.coarse import coarse_texture, lit_statistical_texture
from .texture.detail import bake_with_detail
from .texture.multiview import (
    blend_photos,
    exposure_gains,
    multi_photo_detail,
    photo_shading,
    relight,
    source_map,
    triangle_shares,
)
from .texture.photo import photo_tensor, sample_photo

LEFT_OUT = "input left out: "  # result.json["degraded"] prefix of each photo left out
MAX_SHAPE_DISTANCE = 0.15  # landmark-shape distance (× face radius) beyond which a photo is someone else
# identity-embedding cosine below which a photo is someone else, per backend family (their usual
# verification thresholds: ArcFace ≈ 0.3, OpenCV SFace 0.363, dlib distance 0.6 ≈ cosine 0.82)
MIN_IDENTITY_COSINE = {"arcface": 0.3, "sface": 0.363, "dlib": 0.82}


@dataclass
class _Candidate:
    """One input while it is screened (mutable bookkeeping; frozen into a PhotoInput at the end)."""

    path: Path
    photo: Photo | None
    observation: Observation | None = None
    fit: FitResult | None = None
    reason: str = ""
    shape_distance: float = math.nan
    identity_cosine: float = math.nan


class MultiRecoverer:
    """Recovers one face from several photos with a :class:`Recoverer`'s loaded models.

    Args:
        recoverer: the loaded single-photo pipeline (aligner, parser, fitter, solver, layout, inverter).
        identity: identity backend for the different-person check; by default the one
            :meth:`IdentityNet.from_weights` finds (None: only the landmark-shape check runs).
    """

    def __init__(self, recoverer: Recoverer, identity: IdentityNet | None | str = "auto") -> None:
        self.recoverer = recoverer
        self.identity = (IdentityNet.from_weights(recoverer.device, recoverer.settings.trust_pickle)
                         if identity == "auto" else identity)
        self.rigid = rigid_points(recoverer.model)

    def provenance(self) -> dict[str, Any]:
        return {**self.recoverer.provenance(),
                "identity": self.identity.backend if self.identity is not None else None}

    # ------------------------------------------------------------------ screening
    def _fit_one(self, index: int, candidate: _Candidate, log: StageLog) -> None:
        r = self.recoverer
        try:
            with log.stage(f"align_{index}", r.aligner.backend):
                obs = r.aligner.align(candidate.photo, face_index=r.settings.face_index)
            with log.stage(f"parse_{index}", r.parser.backend):
                obs = r.parser.parse(obs)
            with log.stage(f"fit_{index}"):
                candidate.fit = r.fitter.fit(obs)
            candidate.observation = obs
        except NoFaceError as exc:
            candidate.reason = f"no face: {exc}"

    def _screen(self, candidates: list[_Candidate]) -> None:
        """Leave out photos whose face is someone else's than the first usable photo's."""
        usable = [c for c in candidates if c.fit is not None and not c.reason]
        if not usable:
            return
        reference = usable[0]
        reference.shape_distance = 0.0
        for c in usable[1:]:
            c.shape_distance = shape_distance(c.fit.vertices, reference.fit.vertices, self.rigid)
            if c.shape_distance > MAX_SHAPE_DISTANCE:
                c.reason = (f"different person: landmark-shape distance {c.shape_distance:.3f} to the reference "
                            f"> {MAX_SHAPE_DISTANCE}")
        if self.identity is None:
            return
        ok = [c for c in usable if not c.reason]
        device = self.recoverer.device
        crops = torch.cat([c.observation.crop_tensor(device) for c in ok])
        points = torch.stack([torch.as_tensor(transform_points(c.observation.crop_matrix, c.observation.points5),
                                              dtype=torch.float32) for c in ok])
        embeddings = self.identity.embed(crops, points)
        threshold = next((v for k, v in MIN_IDENTITY_COSINE.items() if self.identity.backend.startswith(k)), 0.3)
        for c, cosine in zip(ok, (embeddings @ embeddings[0]).tolist(), strict=True):
            c.identity_cosine = float(cosine)
            if c is not reference and cosine < threshold:
                c.reason = f"different person: identity cosine {cosine:.3f} < {threshold} ({self.identity.backend})"

    # ------------------------------------------------------------------ recovery
    def recover(self, photos: Sequence[tuple[Path, Photo | None, str]],
                progress: ProgressCallback | None = None) -> MultiRecovery:
        """Recover one face from ``photos``: (path, loaded photo or None, reason it failed to load).

        Raises:
            NoFaceError: no photo has a usable face (the reasons of all of them in one line).
        """
        r = self.recoverer
        torch.manual_seed(r.settings.seed)
        log = StageLog(progress)
        candidates = [_Candidate(path, photo, reason=reason) for path, photo, reason in photos]
        for i, c in enumerate(candidates):
            if c.photo is not None and not c.reason:
                self._fit_one(i, c, log)
        with log.stage("screen", self.identity.backend if self.identity is not None else "landmark-shape") as st:
            self._screen(candidates)
            st.note = f"{sum(not c.reason for c in candidates)} of {len(candidates)} photos usable"
        used = [c for c in candidates if c.fit is not None and not c.reason]
        if not used:
            raise NoFaceError("no usable face in any photo: " + "; ".join(f"{c.path.name}: {c.reason}"
                                                                          for c in candidates))
        with log.stage("joint_fit") as st:
            joint = joint_fit(r.model, [c.observation for c in used], [c.fit for c in used], r.settings.render_size)
            st.note = "; ".join(joint.notes)
        # colours are sampled through each photo's own fit: the texture is per vertex and every fit has
        # the same vertices, and a photo's own fit registers it best (bench_multiview: +0.2 dB over
        # sampling through the joint fit, whose shared identity only approximates each photo's shape)
        own = [c.fit for c in used]
        with log.stage("sample") as st:
            camera = Camera().resized(r.settings.render_size)
            samples = [sample_photo(c.photo, c.observation, f.world_vertices[None], f.world_normals[None],
                                    r.model.triangles, camera, r.settings.vis_threshold_photo,
                                    r.settings.vis_threshold_view) for c, f in zip(used, own, strict=True)]
            st.note = "each photo through its own fit"
        ref_fit, ref_samples = joint.fits[0], samples[0]
        scores = torch.stack([s.coarse_scores for s in samples])
        with log.stage("delight") as st:
            shading = torch.stack([photo_shading(f.world_normals, f.gamma) for f in own])
            albedos = torch.stack([s.t_uv for s in samples]) / shading
            gains = [exposure_gains(albedos[0], scores[0], a, s) for a, s in zip(albedos, scores, strict=True)]
            gain = torch.stack([g.gain for g in gains])  # (P, 3)
            st.note = "albedo gains " + "; ".join(f"{c.path.name}: {[round(float(x), 3) for x in g.gain]}"
                                                   for c, g in zip(used, gains, strict=True))
        with log.stage("blend", r.solver.backend) as st:
            blended = blend_photos(r.solver, albedos * gain[:, None, :], scores, own[0].t_pca)
            t_pca = lit_statistical_texture(own[0].t_pca, own[0].world_normals, own[0].gamma, blended.seen)
            t_multi = relight(blended.albedo, shading[0], blended.seen)
            st.note = "; ".join(blended.notes) or f"{len(used)} photos, score-weighted albedo, T_pca where none sees"
        refinement = None
        if r.inverter is None:
            for name in REFINE_STEPS:
                log.skip(name, r.refine_note)
        else:
            refinement = self._refine_unseen(ref_fit, blended.seen, t_multi, log)
        with log.stage("bake") as st:
            faces, layout, selection = r.model.triangles, r.uv_layout, blended.selection
            scales = gain[:, None, :] * shading[:1] / shading  # photo i's colours → the reference's light
            detail = multi_photo_detail([photo_tensor(c.photo, r.device) for c in used],
                                        [s.photo_screen for s in samples], torch.stack([s.t_uv for s in samples]),
                                        scores, scales, faces, layout, selection)
            final = refinement.colors if refinement is not None else t_multi
            texture, mask = bake_with_detail(final, faces, layout, detail)
            coarse_uv = texture if refinement is None else bake_with_detail(t_multi, faces, layout, detail)[0]
            sources = source_map(selection, layout, torch.from_numpy(texture).to(r.device), len(used))
            st.note = f"{r.settings.texture_size}² UV, detail from each triangle's main photo"
        shares = triangle_shares(selection, len(used))
        recovery = Recovery(
            photo=used[0].photo, observation=used[0].observation, fit=ref_fit, samples=ref_samples,
            coarse=CoarseTexture(t_pca, t_multi, blended.notes), refinement=refinement,
            textures=UVTextures(texture, coarse_uv, mask), views=r.refine_settings.views,
            stages=tuple(log.records),
            degraded=tuple(r.degraded) + tuple(f"{LEFT_OUT}{c.path.name}: {c.reason}" for c in candidates
                                               if c.reason),
            model_summary=r.model.summary(), triangles=r.model.triangles, uvs=r.model.uvs)
        inputs = self._inputs(candidates, used, joint.fits, gains, shares)
        fill = 1.0 - sum(shares)
        return MultiRecovery(recovery, blended.albedo, inputs, tuple(c.photo for c in used), sources.cpu().numpy(),
                             round(fill, 4), tuple(joint.notes) + tuple(blended.notes))

    def _refine_unseen(self, fit: FitResult, seen: torch.Tensor, t_multi: torch.Tensor,
                       log: StageLog) -> Refinement:
        """§3.2 on the photos' texture (``refine.refine``, the pipeline's refine stage, with the blended
        texture as photo and T_coarse); its T_refine then fills only what no photo sees: its gradients
        there, Poisson-continued from the photos' texture (§3.1's solve, ``coarse.coarse_texture``)."""
        r = self.recoverer
        refined = refine(r.model, r.solver, r.inverter.invert,
                         RefineInputs.one(fit.vertices, fit.translation, t_multi, seen.to(t_multi.dtype), t_multi),
                         r.refine_settings, progress=log.progress)
        log.records += refined.stages
        face = refined.face(0)
        with log.stage("fill_unseen", r.solver.backend) as st:
            filled = coarse_texture(r.solver, t_multi, seen.to(t_multi.dtype), face.colors)
            st.note = "; ".join(filled.notes) or "GAN views fill only what no photo sees"
        return Refinement(filled.colors.clamp(0, 1), face.view_renders, face.inverted, face.backend, filled.notes)

    @staticmethod
    def _inputs(candidates: list[_Candidate], used: list[_Candidate], fits: Sequence[FitResult],
                gains: Sequence[Any], shares: list[float]) -> tuple[PhotoInput, ...]:
        by_id = {id(c): i for i, c in enumerate(used)}
        out = []
        for c in candidates:
            fit = c.fit
            if id(c) in by_id and not c.reason:
                i = by_id[id(c)]
                fit, gain = fits[i], gains[i]
                gain_t = tuple(round(float(x), 4) for x in gain.gain)
                notes = tuple(fit.notes) + ((gain.note,) if gain.note else ())
                extra = dict(status=USED, landmark_px=fit.losses.get("landmark_px", math.nan), gain=gain_t,
                             triangle_share=shares[i], notes=notes)
            else:
                extra = dict(status=EXCLUDED, reason=c.reason)
            angles = None if fit is None else tuple(round(math.degrees(float(a)), 2) for a in fit.angles)
            out.append(PhotoInput(path=c.path, angles_deg=angles, shape_distance=c.shape_distance,
                                  identity_cosine=c.identity_cosine, **extra))
        return tuple(out)


def load_photos(sources: Sequence[str | Path]) -> list[tuple[Path, Photo | None, str]]:
    """(path, photo, "") per readable source, (path, None, reason) per unreadable one."""
    out: list[tuple[Path, Photo | None, str]] = []
    for source in sources:
        try:
            out.append((Path(source), load_image(source), ""))
        except InputError as exc:
            out.append((Path(source), None, f"unreadable: {exc}"))
    return out


def recover_photos_to_directory(multi: MultiRecoverer, sources: Sequence[str | Path], out_dir: str | Path,
                                force: bool = False, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Load every photo, recover one face from all of them and write ``out_dir`` atomically.

    Raises:
        NoFaceError (no usable photo) / OutputError / WeightsError, with a one-line message.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, force, [Path(s) for s in sources])
    start = time.perf_counter()
    photos = load_photos(sources)
    timings = {"load_image": round(time.perf_counter() - start, 4)}
    result = multi.recover(photos, progress=progress)
    with atomic_dir(out_dir, overwrite=force) as stage:
        if progress is not None:
            progress("write", "start")
        document = write_multi_recovery(stage, result, multi.provenance(), timings)
        if progress is not None:
            progress("write", "done")
    return document
