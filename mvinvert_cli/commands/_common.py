"""What every command shares: global options, the stderr console, JSON output, help with examples.

stdout carries results only (tables, ``--json`` documents, paths); progress and diagnostics go to
stderr. The global options (``-q``, ``--device``, ``--debug``, ``--weights``, ``--trust-pickle``) are
accepted before the sub-command (``mvinvert -q align x.jpg``) and after it (``mvinvert align x.jpg
-q``): :func:`with_global_options` adds them to every command.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.console import Console

from .. import weights as registry
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
stdout = Console(highlight=False, soft_wrap=True)  # results (tables) for people; --json bypasses it


def log(message: str) -> None:
    """A progress/diagnostic line on stderr (rich markup), silenced by ``-q``."""
    if not OPTIONS.quiet:
        console.print(message)


def warn(message: str) -> None:
    """A degradation or warning on stderr (plain text, silenced by ``-q``; degradations are also
    recorded in result.json)."""
    if not OPTIONS.quiet:
        console.print("[yellow]warning:[/yellow] ", end="")
        console.print(message, markup=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout (the only thing ``--json`` prints there)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit_json_error(code: int, kind: str, message: str) -> None:
    """The ``--json`` document of a failed command: ``{"status": "error", "error": {...}}``."""
    emit_json({"status": "error", "error": {"code": int(code), "kind": kind, "message": message}})


def absolute(path: Path) -> str:
    """An output path as ``--json`` reports it: absolute, symlinks kept."""
    return str(Path(os.path.abspath(path)))


# ----------------------------------------------------------------------------- shared options

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the machine-readable result to stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output folder.")]
AlignerOpt = Annotated[AlignerBackend, typer.Option("--aligner", help="Landmark backend.")]
ParserOpt = Annotated[ParserBackend, typer.Option("--parser", help="Face-parsing backend.")]
FaceIndexOpt = Annotated[int, typer.Option("--face-index", min=0, help="Which face, 0 = largest.")]


def output_option(default_text: str) -> Any:
    """The one ``-o/--output`` option of every command; ``default_text`` is shown in the help."""
    return Annotated[Path | None, typer.Option("--output", "-o", show_default=False,
                                               help=f"Output folder [default: {default_text}].")]


# The global options; the same declarations serve the app callback and every sub-command.
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr (results still on stdout).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", show_default=False,
                                               help="auto, cpu, cuda or cuda:N [default: auto].")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
WeightsOpt = Annotated[str | None, typer.Option("--weights", show_default=False,
                                                help="Weights folder [default: ./weights or $MVINVERT_WEIGHTS].")]
TrustOpt = Annotated[bool, typer.Option("--trust-pickle",
                                        help="Allow checkpoints that execute code when unpickled (.pkl).")]

_GLOBAL_PARAMS: dict[str, tuple[Any, Any]] = {  # parameter name → (annotation, default)
    "global_quiet": (QuietOpt, False), "global_device": (DeviceOpt, None), "global_debug": (DebugOpt, False),
    "global_weights": (WeightsOpt, None), "global_trust_pickle": (TrustOpt, False),
}


def apply_global_options(quiet: bool = False, device: str | None = None, debug: bool = False,
                         weights: str | None = None, trust_pickle: bool = False) -> None:
    """Merge global options into :data:`OPTIONS` (flags add up; a value given later wins)."""
    OPTIONS.quiet = OPTIONS.quiet or quiet
    OPTIONS.debug = OPTIONS.debug or debug
    OPTIONS.trust_pickle = OPTIONS.trust_pickle or trust_pickle
    if device:
        OPTIONS.device = device
    if weights:
        os.environ["MVINVERT_WEIGHTS"] = weights
        registry.weights_dirs()  # a --weights that is not a folder is a usage error before anything else


def with_global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the global options appended to its parameters (so ``cmd ARGS -q`` works)."""
    hints = typing.get_type_hints(func, include_extras=True)  # the modules use string annotations
    signature = inspect.signature(func)
    own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
             for name, (hint, default) in _GLOBAL_PARAMS.items()]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        apply_global_options(**{name.removeprefix("global_"): kwargs.pop(name) for name in _GLOBAL_PARAMS})
        return func(**kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in hints.items() if k != "return"},
                               **{name: hint for name, (hint, _) in _GLOBAL_PARAMS.items()}}
    return wrapper


def command_help(module: ModuleType, func: Callable[..., Any]) -> str:
    """``func``'s docstring followed by the Examples block of ``module``'s docstring, kept verbatim.

    Click rewraps paragraphs; ``\\b`` before a block keeps its lines as written.
    """
    doc = inspect.cleandoc(func.__doc__ or "")
    module_doc = inspect.cleandoc(module.__doc__ or "")
    _, found, examples = module_doc.partition("Examples:")
    if not found:
        raise ValueError(f"{module.__name__} has no Examples: block in its docstring")
    lines = [line.strip() for line in examples.strip().splitlines() if line.strip()]
    return doc + "\n\nExamples:\n\n\b\n" + "\n".join(lines) + "\n\nGlobal options (-q, --device, --debug, " \
        "--weights, --trust-pickle) go before or after the sub-command."
