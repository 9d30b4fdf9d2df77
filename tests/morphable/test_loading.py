"""The one face-model loader: the ``auto`` choice and its recorded degradation."""

from __future__ import annotations

import pytest

from mvinvert_cli.errors import UsageError
from mvinvert_cli.morphable import ModelChoice, loading
from mvinvert_cli.weights import face_landmarker_task


def test_auto_takes_bfm_when_present_else_default(monkeypatch):
    monkeypatch.setattr(loading, "bfm_available", lambda: True)
    assert loading.resolve_choice("auto") == (ModelChoice.bfm, ())
    monkeypatch.setattr(loading, "bfm_available", lambda: False)
    choice, degraded = loading.resolve_choice(ModelChoice.auto)
    assert choice is ModelChoice.default and "BFM 2009 not found" in degraded[0]
    assert loading.resolve_choice("bfm") == (ModelChoice.bfm, ())  # explicit: no fallback


def test_unknown_choice_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown face model"):
        loading.resolve_choice("flame")


def test_default_model_never_gets_the_regressor():
    if face_landmarker_task() is None:
        pytest.skip("face_landmarker.task not installed")
    loaded = loading.load_face_model("default")
    assert loaded.model.embed_ids is not None and loaded.regressor is None
    assert loaded.degraded == () and loaded.notes == ()
