"""barloc.calling: the one road from logits to calls (synthetic logits)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from barloc import shift
from barloc.artifacts import Calibration, ModelMeta
from barloc.calibrate import apply
from barloc.calling import Caller, calls_table, class_logits, split_arrays

CLASSES = ["Atlantic", "Indian", "Pacific"]


def meta(kind: str = "multiclass", **kw) -> ModelMeta:
    return ModelMeta(
        kind=kind, classes=CLASSES, alphabet="dna", encoder={"type": "kmer"}, train_priors=[0.5, 0.2, 0.3], **kw
    )


def test_call_is_calibrate_then_correct_then_call():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 3)) * 3
    calib = Calibration(temperature=1.7, bias=[0.1, 0.0, -0.1], offset=[0.2, -0.1, 0.0])
    caller = Caller(meta(), calib, 0.6)
    target = np.array([0.1, 0.1, 0.8])
    got = caller.call([f"s{i}" for i in range(40)], z, target=target)
    probs = shift.reweight(
        apply(z, "multiclass", {"temperature": 1.7, "bias": [0.1, 0.0, -0.1], "offset": [0.2, -0.1, 0.0]}),
        np.array([0.5, 0.2, 0.3]),
        target,
    )
    want = calls_table([f"s{i}" for i in range(40)], probs, CLASSES, "multiclass", 0.6)
    pd.testing.assert_frame_equal(got, want)
    assert (got["uncertain"] == (got["probability"] < 0.6)).all()
    # correcting towards the Pacific moves calls there
    plain = caller.call([f"s{i}" for i in range(40)], z)
    assert (got["call"] == "Pacific").sum() > (plain["call"] == "Pacific").sum()


def test_multilabel_rule_and_extra_heads():
    z = np.array([[3.0, 2.5, -4.0], [-3.0, -3.0, -3.0]])
    calib = Calibration(
        temperature=[1.0, 1.0, 1.0],
        thresholds=[0.5, 0.5, 0.5],
        call_ratio=0.0,
        extra_heads={"membrane": {"temperature": 1.0, "bias": 0.0, "threshold": 0.5}},
    )
    caller = Caller(meta("multilabel", extra_heads=["membrane"]), calib, 0.5)
    table = caller.call(["a", "b"], z, extra=np.array([[2.0], [-2.0]]))
    assert table["call"].tolist() == ["Atlantic;Indian", "Atlantic"]  # b: no label reaches its threshold
    assert table["uncertain"].tolist() == [False, True]
    assert table["membrane_call"].tolist() == ["membrane", "soluble"]
    # the call ratio drops a label far below the top one
    caller.calibration.call_ratio = 0.99
    assert caller.call(["a", "b"], z, extra=np.array([[2.0], [-2.0]]))["call"][0] == "Atlantic"


def test_a_call_ratio_on_logits_reads_them_and_follows_prior_correction():
    """calibration.json call_ratio_on: logits (synthetic numbers): the call ratio and the top label
    are the logits' softmax, not the calibrated probabilities', whose per-label bias (-3 on
    Indian) reorders them; prior correction moves each logit as it moved the label's."""
    z = np.array([[2.0, 2.5, -4.0]])
    calib = Calibration(
        method="bcts", temperature=[1.0, 1.0, 1.0], bias=[0.0, -3.0, 0.0], thresholds=[0.3] * 3, call_ratio=0.9
    )
    by_probs = Caller(meta("multilabel"), calib, 0.5)
    assert by_probs.call(["a"], z)["call"].tolist() == ["Atlantic"]  # probabilities 0.88, 0.38, 0.02
    by_logits = Caller(meta("multilabel"), dataclasses.replace(calib, call_ratio_on="logits"), 0.5)
    assert by_logits.needs_logits and not by_probs.needs_logits
    table = by_logits.call(["a"], z)
    assert table["call"].tolist() == ["Indian"]  # shares 0.61, 1, 0
    # the row lists the rule's top label with its probability, the others after it
    assert table["probability"][0] == pytest.approx(table["p::Indian"][0]) and table["p::Atlantic"][0] > 0.8
    assert table["alternatives"][0].startswith("Atlantic (0.88)")
    with pytest.raises(ValueError, match="logits"):
        by_logits.calls(["a"], by_logits.calibrate(z))
    # correcting Atlantic's prior up moves its logit by the same amount as its calibrated one
    rng = np.random.default_rng(0)
    zz = rng.normal(size=(20, 3)) * 2
    cal = by_logits.calibrate(zz)
    target = np.array([0.9, 0.2, 0.3])
    moved = by_logits.rank_logits(zz, by_logits.probabilities(zz, target)) - zz
    assert moved[:, 0].min() > 1 and np.allclose(moved, moved[0]) and np.allclose(moved[:, 1:], 0, atol=1e-9)
    np.testing.assert_allclose(by_logits.rank_logits(zz, cal), zz)
    assert by_probs.rank_logits(zz, cal) is None


def test_split_arrays_leave_soft_targets_and_other_splits_out():
    df = pd.DataFrame(
        {
            "id": list("abcd"),
            "split": ["val", "val", "test", "val"],
            "label": ["Indian", "Pacific", "Atlantic", "Atlantic"],
            "label_probs": [None, None, None, '{"Atlantic": 0.6, "Indian": 0.4}'],
        }
    )
    for j, c in enumerate(CLASSES):
        df["logit::" + c] = float(j)
    z, y = split_arrays(df, meta(), "val")
    assert y.tolist() == [1, 2] and z.shape == (2, 3)
    np.testing.assert_array_equal(class_logits(df, CLASSES[::-1])[0], [2.0, 1.0, 0.0])


def heldout(after: float, redraw: float) -> dict:
    """A held-out check (barloc.posthoc.heldout_shift) whose calls went from 0.5 to ``after``."""
    return {
        "metric": "accuracy",
        "before": 0.5,
        "after": after,
        "change": after - 0.5,
        "redraws": {"n": 50, "mean_change": redraw, "share_improved": 0.5},
    }


@pytest.mark.parametrize(
    "method, check, n, check_result, code",
    [
        ("none", True, 10, None, "not_requested"),
        ("em", True, 0, None, "no_query"),
        ("em", True, 10, heldout(0.4, 0.02), "check_failed"),  # worse on the group folds
        ("em", True, 10, heldout(0.5, 0.02), "applied"),  # no worse on the folds, better under label shift
        ("em", True, 10, heldout(0.6, -0.01), "check_failed"),  # worse under pure label shift
        ("em", False, 10, heldout(0.4, -0.01), "applied"),
        ("em", True, 10, heldout(0.6, 0.02), "applied"),
        ("known", True, 10, None, "applied"),
    ],
)
def test_prior_correction_decision_codes(method, check, n, check_result, code):
    from barloc.artifacts import DECISION_CODES
    from barloc.posthoc import decide

    applied, decision, reason = decide(method, check, n, check_result)
    assert decision["code"] == code and code in DECISION_CODES and applied == (code == "applied")
    if code == "check_failed":
        assert decision["before"] == 0.5 and decision["after"] == check_result["after"] and "0.500" in reason
        assert decision["split"] == "heldout" and "held-out" in reason
