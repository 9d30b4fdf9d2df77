"""``python -m mvinvert_cli`` is the same as the ``mvinvert`` command."""

from .cli import run

run()
