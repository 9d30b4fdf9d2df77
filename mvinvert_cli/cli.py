"""The mvinvert command line: one photo in, a complete textured 3D face out.

Examples:
    mvinvert recover photo.jpg                 # writes ./photo_mvinvert/
    mvinvert recover photo.jpg --json -q | jq .outputs
    mvinvert batch photos/ -o out/
    mvinvert render out/mesh.obj --views 0,30,-30
    mvinvert weights                           # what is installed, what falls back
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe/glog: keep stderr clean
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from . import __version__  # noqa: E402
from .commands import (
    _common,  # noqa: E402
    _progress,  # noqa: E402,F401  (first: it notes the process start time)
)
from .commands import align as align_cmd  # noqa: E402
from .commands import batch as batch_cmd  # noqa: E402
from .commands import eval as eval_cmd  # noqa: E402
from .commands import fit as fit_cmd  # noqa: E402
from .commands import invert as invert_cmd  # noqa: E402
from .commands import recover as recover_cmd  # noqa: E402
from .commands import render as render_cmd  # noqa: E402
from .commands import train as train_cmd  # noqa: E402
from .commands import weights as weights_cmd  # noqa: E402
from .commands._common import DebugOpt, DeviceOpt, QuietOpt, TrustOpt, WeightsOpt  # noqa: E402
from .errors import EXIT_CODE_HELP, ExitCode, Interrupted, MvInvertError  # noqa: E402

HELP = (__doc__ or "").replace("Examples:", "Examples:\n\n\b") + "\n\nExit codes:\n\n\b\n" + EXIT_CODE_HELP

app = typer.Typer(
    name="mvinvert",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain Click help: "[default: ...]" and other bracketed text is shown as written
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMMANDS = {
    "recover": recover_cmd, "batch": batch_cmd, "render": render_cmd, "weights": weights_cmd, "align": align_cmd,
    "invert": invert_cmd, "eval": eval_cmd, "train": train_cmd, "fit": fit_cmd,
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mvinvert {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    weights_dir: WeightsOpt = None,
    trust_pickle: TrustOpt = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Global options go before or after the sub-command."""
    _common.apply_global_options(quiet=quiet, device=device, debug=debug, weights=weights_dir,
                                 trust_pickle=trust_pickle)


for _name, _module in COMMANDS.items():
    app.command(_name, help=_common.command_help(_module, _module.command))(
        _common.with_global_options(_module.command))


def _printable(text: str) -> str:
    """Undecodable file-name bytes (surrogate escapes) shown as \\xNN instead of crashing the console."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted("terminated by signal")


def _fail(code: int, kind: str, message: str, as_json: bool, prefix: str = "error") -> int:
    """One red line on stderr (and, with --json, an error document on stdout); returns ``code``."""
    _common.console.print(f"{prefix}: {message}", soft_wrap=True, markup=False, style="red")
    if as_json:
        _common.emit_json_error(code, kind, message)
    return code


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: run the app, map typed errors to one stderr line and an exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    args = argv if argv is not None else sys.argv[1:]
    debug, as_json = "--debug" in args, "--json" in args
    _common.OPTIONS.__init__()  # fresh global options for every call (tests call main() repeatedly)
    try:
        code = app(args=args, standalone_mode=False)  # a typer.Exit inside a command comes back as its code
        return int(code) if isinstance(code, int) else ExitCode.OK
    except MvInvertError as exc:
        if debug:
            raise
        return _fail(int(exc.exit_code), type(exc).__name__, _printable(str(exc)), as_json)
    except KeyboardInterrupt:
        return _fail(ExitCode.INTERRUPTED, "Interrupted", "interrupted", as_json)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        return _fail(ExitCode.INTERRUPTED, "Interrupted", "aborted", as_json)
    except Exception as exc:
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):  # Click usage errors
            context = getattr(exc, "ctx", None)
            where = f" (see `{context.command_path} --help`)" if context is not None else ""
            message = " ".join(exc.format_message().split()) + where
            return _fail(int(exc.exit_code), "UsageError", message, as_json)
        if debug:
            raise
        message = _printable(" ".join(str(exc).split())[:300])
        return _fail(ExitCode.INTERNAL, type(exc).__name__, f"{type(exc).__name__}: {message} "
                     "(rerun with --debug for the traceback)", as_json, prefix="internal error")


def run() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())
