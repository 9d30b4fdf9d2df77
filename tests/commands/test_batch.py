"""commands/batch: piped progress is one line per photo as it finishes (not one bar at the end)."""

from __future__ import annotations

from mvinvert_cli.batch import ItemResult
from mvinvert_cli.commands.batch import _ItemProgress


def test_plain_line_per_item_when_not_a_terminal(capsys):
    with _ItemProgress(3) as on_result:
        on_result(ItemResult("a.jpg", "a.jpg", "out/a", "ok", seconds=4.2))
        first = capsys.readouterr().err  # already there before the next photo finishes
        on_result(ItemResult("b.jpg", "b.jpg", "out/b", "failed", error="no face", exit_code=4))
        on_result(ItemResult("c.jpg", "c.jpg", "out/c", "skipped"))
    assert "1/3 ok 4.2 s a.jpg" in first
    rest = capsys.readouterr().err.splitlines()
    assert [line.split("] ")[1] for line in rest] == ["2/3 failed b.jpg", "3/3 skipped c.jpg"]
