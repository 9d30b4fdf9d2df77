"""What every command shares: global options (device, quiet, debug), the stderr console, JSON output.

stdout carries results only (``--json`` documents, paths); progress and diagnostics go to stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console

from ..align.backends import AlignerBackend
from ..parse.backends import ParserBackend


@dataclass
class GlobalOptions:
    device: str = "auto"
    quiet: bool = False
    debug: bool = False
    trust_pickle: bool = False


OPTIONS = GlobalOptions()
console = Console(stderr=True, highlight=False)


def log(message: str) -> None:
    """A progress/diagnostic line on stderr, silenced by ``-q``."""
    if not OPTIONS.quiet:
        console.print(message)


def warn(message: str) -> None:
    """A degradation or warning on stderr (silenced by ``-q``, which keeps only errors; degradations
    are also recorded in result.json)."""
    if not OPTIONS.quiet:
        console.print(f"[yellow]warning:[/yellow] {message}")


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout (the only thing ``--json`` prints there)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the machine-readable result to stdout.")]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (overrides the global --device).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output directory.")]
AlignerOpt = Annotated[AlignerBackend, typer.Option("--aligner", help="Landmark backend.")]
ParserOpt = Annotated[ParserBackend, typer.Option("--parser", help="Face-parsing backend.")]
FaceIndexOpt = Annotated[int, typer.Option("--face-index", min=0, help="Which face, 0 = largest.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]


def device_name(local: str | None) -> str:
    return local or OPTIONS.device
