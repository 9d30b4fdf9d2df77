"""Align-test fixtures: one MediaPipe aligner per module (its model loads once)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def mp_aligner():
    from mvinvert_cli.align import Aligner

    return Aligner("mediapipe")
