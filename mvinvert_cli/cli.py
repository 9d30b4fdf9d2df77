"""The ``mvinvert`` command line: one photo in, a complete textured 3D face out.

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
from typing import Annotated

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe/glog: keep stderr clean
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer  # noqa: E402

from . import __version__  # noqa: E402
from .commands import _common  # noqa: E402
from .commands import align as align_cmd  # noqa: E402
from .commands import batch as batch_cmd  # noqa: E402
from .commands import eval as eval_cmd  # noqa: E402
from .commands import fit as fit_cmd  # noqa: E402
from .commands import invert as invert_cmd  # noqa: E402
from .commands import recover as recover_cmd  # noqa: E402
from .commands import render as render_cmd  # noqa: E402
from .commands import train as train_cmd  # noqa: E402
from .commands import weights as weights_cmd  # noqa: E402
from .errors import EXIT_CODE_HELP, ExitCode, Interrupted, MvInvertError  # noqa: E402

HELP = (__doc__ or "").replace("Examples:", "Examples:\n\n\b") + "\n\nExit codes:\n\n\b\n" + EXIT_CODE_HELP

app = typer.Typer(
    name="mvinvert",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mvinvert {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    weights_dir: Annotated[
        str | None, typer.Option("--weights", help="Weights directory (default: ./weights or $MVINVERT_WEIGHTS).")
    ] = None,
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="Allow checkpoints that execute code when unpickled (.pkl).")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Global options apply to every sub-command."""
    _common.OPTIONS.device = device
    _common.OPTIONS.quiet = quiet
    _common.OPTIONS.debug = debug
    _common.OPTIONS.trust_pickle = trust_pickle
    if weights_dir:
        os.environ["MVINVERT_WEIGHTS"] = weights_dir


app.command("recover")(recover_cmd.command)
app.command("batch")(batch_cmd.command)
app.command("render")(render_cmd.command)
app.command("weights")(weights_cmd.command)
app.command("align")(align_cmd.command)
app.command("invert")(invert_cmd.command)
app.command("eval")(eval_cmd.command)
app.command("train")(train_cmd.command)
app.command("fit")(fit_cmd.command)


def _printable(text: str) -> str:
    """Undecodable file-name bytes (surrogate escapes) shown as \\xNN instead of crashing the console."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted("terminated by signal")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry: run the app, map typed errors to one stderr line and an exit code."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = app(args=argv, standalone_mode=False)  # a typer.Exit inside a command comes back as its code
        return int(code) if isinstance(code, int) else ExitCode.OK
    except MvInvertError as exc:
        if debug:
            raise
        _common.console.print(f"error: {_printable(str(exc))}", soft_wrap=True, markup=False, style="red")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _common.console.print("[red]error:[/red] interrupted", soft_wrap=True)
        return ExitCode.INTERRUPTED
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        _common.console.print("[red]error:[/red] aborted", soft_wrap=True)
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int):  # Click usage errors
            context = getattr(exc, "ctx", None)
            where = f" (see `{context.command_path} --help`)" if context is not None else ""
            message = " ".join(exc.format_message().split())
            _common.console.print(f"error: {message}{where}", soft_wrap=True, markup=False, style="red")
            return int(exc.exit_code)
        if debug:
            raise
        message = _printable(" ".join(str(exc).split())[:300])
        _common.console.print(
            f"internal error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)",
            soft_wrap=True, markup=False, style="red",
        )
        return ExitCode.INTERNAL


def run() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())
