"""The package as it was at an earlier commit, importable next to the current one (for before/after benches).

``load_baseline(rev)`` extracts ``mvinvert_cli/`` at git revision ``rev`` into a temporary folder and
imports it under the name ``mvinvert_baseline`` (the package uses relative imports only), so a bench
can run old and new code interleaved in one process and print medians and ratios under the same
machine load. Default revision: main before the speed round (issue 20).
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
BASELINE_REV = "ac6f534"  # main before issue 20 (the numbers in the issue and /work/baseline)
ALIAS = "mvinvert_baseline"


_TREES: dict[str, Path] = {}


def baseline_tree(rev: str = BASELINE_REV) -> Path:
    """A temporary folder holding ``mvinvert_cli/`` at ``rev`` (extracted once per process; put it on
    PYTHONPATH to run that version's CLI).

    Raises:
        RuntimeError: ``rev`` is not a commit of this repository.
    """
    if rev in _TREES:
        return _TREES[rev]
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "mvinvert_cli"],
                             capture_output=True)
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {rev}: {archive.stderr.decode().strip()}")
    root = Path(tempfile.mkdtemp(prefix="mvinvert_baseline_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    _TREES[rev] = root
    return root


def load_baseline(rev: str = BASELINE_REV) -> ModuleType:
    """Import ``mvinvert_cli`` at ``rev`` as ``mvinvert_baseline`` (submodules import on demand; one
    revision per process).

    Raises:
        RuntimeError: ``rev`` is not a commit of this repository.
    """
    if ALIAS in sys.modules:
        return sys.modules[ALIAS]
    package = baseline_tree(rev) / "mvinvert_cli"
    spec = importlib.util.spec_from_file_location(ALIAS, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[ALIAS] = module
    spec.loader.exec_module(module)
    return module


def interleaved(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times of each candidate, run in turn ``repeats`` times (A B A B ...), after one warm-up each."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio_line(label: str, before: list[float], after: list[float], unit: float = 1.0, suffix: str = "s") -> str:
    """``label: before → after (median of n), ×ratio faster``."""
    b, a = median(before), median(after)
    scale = f"{b * unit:.3f} {suffix} → {a * unit:.3f} {suffix}"
    return f"{label}: {scale} (medians of {len(after)}), {b / a:.1f}× faster" if a > 0 else f"{label}: {scale}"
