"""Typed errors and the exit codes they map to.

Every failure a user can cause (bad photo, no face, missing weights, unwritable output) is one of
these classes; the CLI prints ``str(error)`` as a single line on stderr and exits with
``error.exit_code``. Anything else is an internal error (exit 10, traceback with ``--debug``).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README "Exit codes", ``mvinvert --help``)."""

    OK = 0
    SOME_FAILED = 1  # batch / eval: at least one item failed, the others are done
    USAGE = 2  # bad command line (Typer/Click's own code)
    BAD_INPUT = 3  # unreadable, corrupt, unsupported or too small input file
    NO_FACE = 4  # no face found in the image (or --face-index out of range)
    WEIGHTS = 5  # a weights file is missing, corrupt, untrusted or does not match its model
    OUTPUT = 6  # output location not writable, or exists without --force
    INTERNAL = 10  # a bug: rerun with --debug for the traceback
    INTERRUPTED = 130  # SIGINT / SIGTERM


class MvInvertError(Exception):
    """Base class of every user-facing error; the message must fit on one line."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __str__(self) -> str:  # keep messages on one line whatever callers pass in
        return " ".join(super().__str__().split())


class UsageError(MvInvertError):
    exit_code = ExitCode.USAGE


class InputError(MvInvertError):
    """The input file cannot be read as a photo or mesh."""

    exit_code = ExitCode.BAD_INPUT


class NoFaceError(MvInvertError):
    exit_code = ExitCode.NO_FACE


class WeightsError(MvInvertError):
    exit_code = ExitCode.WEIGHTS


class OutputError(MvInvertError):
    exit_code = ExitCode.OUTPUT


class Interrupted(MvInvertError):
    exit_code = ExitCode.INTERRUPTED


EXIT_CODE_HELP = "\n".join(
    f"{int(code):>3}  {text}"
    for code, text in [
        (ExitCode.OK, "success"),
        (ExitCode.SOME_FAILED, "batch or eval finished but some items failed (see batch.jsonl / eval.csv)"),
        (ExitCode.USAGE, "usage error (bad option or argument)"),
        (ExitCode.BAD_INPUT, "input unreadable, corrupt, unsupported or too small"),
        (ExitCode.NO_FACE, "no face found"),
        (ExitCode.WEIGHTS, "weights file missing, corrupt, untrusted or mismatched"),
        (ExitCode.OUTPUT, "output not writable, or exists (use --force)"),
        (ExitCode.INTERNAL, "internal error (rerun with --debug for the traceback)"),
        (ExitCode.INTERRUPTED, "interrupted (SIGINT/SIGTERM); no partial output is left"),
    ]
)
