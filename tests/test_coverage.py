"""The accuracy-vs-coverage curve that evaluate stores and the report draws."""

import numpy as np
import pytest

from barloc.metrics import accuracy_coverage, coverage_at


def test_accuracy_coverage_curve():
    conf = np.array([0.9, 0.8, 0.8, 0.6, 0.4])
    right = np.array([1, 1, 0, 1, 0])
    curve = accuracy_coverage(conf, right)
    assert curve["threshold"] == [0.9, 0.8, 0.6, 0.4]  # the tie at 0.8 is one point
    np.testing.assert_allclose(curve["coverage"], [0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve["accuracy"], [1.0, 2 / 3, 0.75, 0.6])
    assert curve["n"] == 5
    assert coverage_at(curve, 0.7) == pytest.approx((0.6, 2 / 3))
    assert coverage_at(curve, 0.0) == pytest.approx((1.0, 0.6))
    cov, acc = coverage_at(curve, 0.95)
    assert cov == 0.0 and np.isnan(acc)


def test_accuracy_coverage_empty():
    assert accuracy_coverage(np.array([]), np.array([])) == {"threshold": [], "coverage": [], "accuracy": [], "n": 0}


def test_accuracy_coverage_is_json_ready():
    import json

    curve = accuracy_coverage(np.array([0.7, 0.3]), np.array([True, False]))
    assert json.loads(json.dumps(curve)) == curve
