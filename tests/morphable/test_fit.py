"""The fit entry point: input checks before either algorithm runs."""

from __future__ import annotations

import numpy as np
import pytest

from mvinvert_cli.errors import NoFaceError
from mvinvert_cli.morphable.fit import Fitter

from .conftest import make_observation
from .test_pca_fit import make_tiny_model


def test_non_finite_landmarks_are_no_face(tmp_path):
    landmarks = np.full((68, 2), 100.0)
    landmarks[3] = np.nan
    with pytest.raises(NoFaceError, match="not finite"):
        Fitter(make_tiny_model(tmp_path)).fit(make_observation(np.zeros((224, 224, 3)), landmarks))
