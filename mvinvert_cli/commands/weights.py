"""``mvinvert weights``: which official checkpoints are present, and what runs without them.

Examples:
    mvinvert weights
    mvinvert weights --json | jq '.assets[] | select(.state=="present")'
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .. import weights as registry
from ._common import JsonOpt, emit_json, stdout


def command(
    json_out: JsonOpt = False,
    no_hash: Annotated[bool, typer.Option("--no-hash", help="Skip sha256 checks (sizes are still checked).")] = False,
) -> None:
    """List known weights: present / missing / bad checksum, what each enables and where to get it.

    Files go in weights/ (or $MVINVERT_WEIGHTS, or --weights DIR); see weights/README.md. Missing
    ones fall back to the embedded defaults listed at the end. The tables go to stdout.
    """
    rows = registry.status_rows(hash_check=not no_hash)
    defaults = registry.embedded_defaults()
    if json_out:
        emit_json({
            "weights_dirs": [str(d) for d in registry.weights_dirs()],
            "assets": rows,
            "embedded_defaults": [d.__dict__ for d in defaults],
        })
        return
    table = Table(title="Official weights", title_justify="left")
    for col in ("key", "file", "state", "enables", "fallback when missing"):
        table.add_column(col, overflow="fold")
    style = {"present": "green", "missing": "yellow", "bad": "red"}
    for row in rows:
        state = f"[{style[row['state']]}]{row['state']}[/]"
        if row["state"] == "bad":
            state += f"\n{row['check']}"
        table.add_row(row["key"], row["file"], state, row["enables"], row["default"] or "-")
    stdout.print(table)
    stdout.print("Search order: " + ", ".join(str(d) for d in registry.weights_dirs()))
    missing = [r for r in rows if r["state"] == "missing"]
    if missing:
        stdout.print("Missing files come from: ")
        for row in missing:
            stdout.print(f"  {row['file']}: {row['source']} [{row['licence']}]", markup=False)
    dtable = Table(title="Embedded defaults (used when official weights are missing)", title_justify="left")
    for col in ("stage", "default", "available", "location"):
        dtable.add_column(col, overflow="fold")
    for d in defaults:
        dtable.add_row(d.stage, d.what, "yes" if d.available else "[red]no[/]", d.location)
    stdout.print(dtable)
