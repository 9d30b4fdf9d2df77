"""``mvinvert eval``: the paper's reconstruction metrics and an occlusion hold-out, with baselines.

Examples:
    mvinvert eval ../shared/faces                     # writes ./mvinvert_eval/, prints the tables
    mvinvert eval photos/ -o report --yaw 60 --force
    mvinvert -q eval photos/ --json | jq .holdout.full
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ExitCode
from ._common import OPTIONS, ForceOpt, JsonOpt, absolute, emit_json, log, output_option, warn


def command(
    photos: Annotated[list[Path], typer.Argument(help="Photos or folders of photos (searched recursively).", readable=False)],
    output: output_option("./mvinvert_eval/") = None,
    yaw: Annotated[float, typer.Option("--yaw", min=5.0, max=90.0,
                                       help="Hold-out turn (degrees): hide what this yaw self-occludes.")] = 45.0,
    max_yaw: Annotated[float, typer.Option("--max-yaw", min=0.0, max=90.0,
                                           help="Near-frontal limit (fitted |yaw|, degrees) for the hold-out.")] = 20.0,
    cases: Annotated[int, typer.Option("--cases", min=0, help="Best and worst photos shown in the report.")] = 2,
    no_refine: Annotated[bool, typer.Option("--no-refine", help="Skip GAN-inversion refinement (full = coarse).")] = False,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Recover every photo, score it, and write eval.csv, summary.json and an HTML/PNG report.

    Reconstruction (Table 1 of the paper): L1, PSNR, SSIM between the input crop and the re-rendered
    face inside the face mask, and identity cosine when an identity network is available (ArcFace
    backbone.pth in weights/, else the optional dlib extra).

    Occlusion hold-out (near-frontal photos): the vertices that a turn of --yaw degrees would
    self-occlude are hidden, the texture is recovered from the rest, and the hidden region is scored
    against the photo's own pixels, for the full pipeline and the baselines (statistical fill,
    mirror-symmetry fill, coarse without refine) plus the ceiling of per-vertex colour.
    """
    from rich.console import Console
    from rich.markup import escape

    from ..config import Settings

    # lazy: torch and the models, for start-up speed
    from ..eval.recovery import recoverer_inputs
    from ..eval.report import print_summary
    from ..eval.run import check_paths, evaluate_folder, summary_json
    from ..identity import IdentityNet, unavailable_reason
    from ..pipeline import Recoverer

    out = output if output is not None else Path("mvinvert_eval")
    check_paths([str(p) for p in photos], out, force)  # fail fast, before loading any model
    settings = Settings(device=OPTIONS.device, refine=not no_refine, texture_size=256,
                        trust_pickle=OPTIONS.trust_pickle)
    recoverer = Recoverer(settings)
    for note in recoverer.degraded:
        warn(note)
    identity_net = IdentityNet.from_weights(recoverer.device, trust_pickle=OPTIONS.trust_pickle)
    if identity_net is None:
        warn(unavailable_reason())
    else:
        log(escape(f"identity: {identity_net.note}"))
    rows, summary = evaluate_folder([str(p) for p in photos], out, recoverer_inputs(recoverer), identity_net, "none",
                                 yaw=yaw, max_yaw=max_yaw, cases=cases, force=force,
                                 progress=lambda line: log(escape(line)))
    failed = [row for row in rows if str(row.get("status", "")).startswith("error")]
    for row in failed:
        warn(f"{row['image']}: {row['status']}")
    if json_out:
        emit_json({"output": absolute(out), "failed": len(failed), **summary_json(summary, yaw, max_yaw)})
    else:
        if not OPTIONS.quiet:
            print_summary(summary, Console(highlight=False, width=None if sys.stdout.isatty() else 130))
        typer.echo(str(out))
    if failed:  # the report is written; like batch, some photos could not be scored
        raise typer.Exit(int(ExitCode.SOME_FAILED))
