"""Single-stage debug runs behind ``mvinvert fit`` and ``mvinvert invert``: one input in, one output
folder written atomically, a JSON-ready summary back (as ``pipeline.recover_to_directory`` is for
the whole pipeline)."""
