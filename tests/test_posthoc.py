"""barloc.posthoc: the calibration method chosen on out-of-fold logits, and the held-out check
that decides whether prior correction reaches the calls. Logits are synthetic: Gaussian
classes whose exact posteriors are known."""

from __future__ import annotations

import numpy as np
import pytest

from barloc import posthoc

TRAIN = np.array([0.5, 0.3, 0.2])
MEANS = np.eye(3) * 2.0


def gaussian(n: int, mix: np.ndarray, rng, looks_like: np.ndarray | None = None):
    """Exact log-posteriors under TRAIN of records drawn with class mix ``mix``; with
    ``looks_like``, each record's features come from that class instead of its own."""
    y = rng.choice(3, n, p=mix)
    src = y if looks_like is None else looks_like(y, rng)
    x = MEANS[src] + rng.normal(size=(n, 3))
    return -0.5 * ((x[:, None, :] - MEANS[None]) ** 2).sum(-1) + np.log(TRAIN), y


def folds_of(mixes, rng, n=400, looks_like=None):
    parts = [gaussian(n, np.asarray(m), rng, looks_like) for m in mixes]
    z = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return z, y, np.repeat(np.arange(len(mixes)), n)


def test_crossfitted_never_calibrates_a_fold_with_its_own_labels():
    rng = np.random.default_rng(0)
    z, y, folds = folds_of([TRAIN] * 3, rng)
    z = 3 * z  # over-confident
    a = posthoc.crossfitted("multiclass", "bcts", z, y, folds, np.zeros(3), TRAIN)
    y2 = y.copy()
    y2[folds == 0] = rng.permutation(y2[folds == 0])
    b = posthoc.crossfitted("multiclass", "bcts", z, y2, folds, np.zeros(3), TRAIN)
    np.testing.assert_array_equal(a[folds == 0], b[folds == 0])  # fold 0's fit never saw fold 0
    assert not np.allclose(a[folds == 1], b[folds == 1])  # but fold 1's fit did see it


def test_auto_takes_the_lowest_cross_validated_nll():
    rng = np.random.default_rng(1)
    z, y, folds = folds_of([TRAIN] * 4, rng)
    fitted, choice, _ = posthoc.choose_calibration("multiclass", "auto", 3 * z, y, folds, np.zeros(3), TRAIN)
    table = choice["candidates"]
    assert set(table) == {"none", "temperature", "bcts", "vector"}
    assert choice["chosen"] == min(table, key=lambda m: table[m]["nll"]) != "none"
    assert fitted["method"] == choice["chosen"] and table["none"]["nll"] > table["temperature"]["nll"]


def _fake_candidates(monkeypatch, n, nll, ece, calls, ece_per_fold=None):
    """crossfitted, nll_of, ECE and calls_score answering per method from the given tables
    (``ece_per_fold``: every fold's ECE, when it differs from the pooled one)."""
    current = {}

    def fake_crossfitted(kind, method, *a):
        current["m"] = method
        return np.full((n, 3), 1 / 3)

    folds_ece = ece if ece_per_fold is None else ece_per_fold
    monkeypatch.setattr(posthoc, "crossfitted", fake_crossfitted)
    monkeypatch.setattr(posthoc, "nll_of", lambda *a: nll[current["m"]])
    monkeypatch.setattr(posthoc, "_ece", lambda kind, p, y, bins: (ece if len(y) == n else folds_ece)[current["m"]])
    monkeypatch.setattr(posthoc, "calls_score", lambda *a: calls[current["m"]])


def test_auto_never_buys_nll_with_the_calls(monkeypatch):
    """A method with the lowest NLL whose calls lose more than 0.01 balanced accuracy against
    temperature scaling's is passed over."""
    z, y, folds = folds_of([TRAIN] * 3, np.random.default_rng(2))
    nll = {"none": 0.9, "temperature": 0.8, "bcts": 0.5, "vector": 0.7}
    calls = {m: (c, [c] * 3) for m, c in {"none": 0.60, "temperature": 0.60, "bcts": 0.58, "vector": 0.595}.items()}
    _fake_candidates(monkeypatch, len(y), nll, dict.fromkeys(nll, 0.05), calls)
    _, choice, _ = posthoc.choose_calibration("multiclass", "auto", z, y, folds, np.zeros(3), TRAIN)
    assert choice["chosen"] == "vector"  # bcts has the lowest NLL but loses 0.02 of the calls
    _, given, _ = posthoc.choose_calibration("multiclass", "bcts", z, y, folds, np.zeros(3), TRAIN)
    assert given["chosen"] == "bcts" and set(given["candidates"]) == {"temperature", "bcts"}


def test_auto_never_buys_nll_with_the_probabilities_ece(monkeypatch):
    """The lowest-NLL method whose ECE is above the uncalibrated probabilities' is passed over;
    when every fitted method raises ECE, the uncalibrated probabilities stay."""
    z, y, folds = folds_of([TRAIN] * 3, np.random.default_rng(4))
    calls = {m: (0.6, [0.6, 0.6, 0.6]) for m in posthoc.METHODS["multiclass"]}
    nll = {"none": 0.9, "temperature": 0.8, "bcts": 0.5, "vector": 0.7}
    _fake_candidates(monkeypatch, len(y), nll, {"none": 0.08, "temperature": 0.07, "bcts": 0.12, "vector": 0.05}, calls)
    _, choice, _ = posthoc.choose_calibration("multiclass", "auto", z, y, folds, np.zeros(3), TRAIN)
    assert choice["chosen"] == "vector" and "ECE" in choice["reason"]
    _fake_candidates(monkeypatch, len(y), nll, {"none": 0.08, "temperature": 0.19, "bcts": 0.12, "vector": 0.09}, calls)
    _, choice, _ = posthoc.choose_calibration("multiclass", "auto", z, y, folds, np.zeros(3), TRAIN)
    assert choice["chosen"] == "none" and choice["candidates"]["temperature"]["ece"] == 0.19


def test_auto_never_takes_a_method_whose_ece_rises_on_one_fold(monkeypatch):
    """A lower pooled ECE is not enough: a temperature that makes one fold's probabilities
    0.14 less reliable (a fold of confidently wrong groups set it) is passed over."""
    z, y, folds = folds_of([TRAIN] * 3, np.random.default_rng(8))
    calls = {m: (0.6, [0.6, 0.6, 0.6]) for m in posthoc.METHODS["multiclass"]}
    nll = {"none": 0.9, "temperature": 0.8, "bcts": 0.85, "vector": 0.95}
    pooled = {"none": 0.114, "temperature": 0.095, "bcts": 0.11, "vector": 0.2}
    per_fold = {"none": 0.16, "temperature": 0.30, "bcts": 0.15, "vector": 0.2}
    _fake_candidates(monkeypatch, len(y), nll, pooled, calls, per_fold)
    _, choice, _ = posthoc.choose_calibration("multiclass", "auto", z, y, folds, np.zeros(3), TRAIN)
    assert choice["chosen"] == "bcts"  # temperature has the lowest NLL and pooled ECE, but not on every fold


def test_auto_never_takes_a_method_that_loses_one_fold(monkeypatch):
    """Pooled calls within 0.01 of temperature scaling's are not enough: a method losing more
    than 0.02 on one fold is passed over (a bias fitted on a few groups can win the pool)."""
    z, y, folds = folds_of([TRAIN] * 3, np.random.default_rng(5))
    calls = {
        "none": (0.60, [0.60, 0.60, 0.60]),
        "temperature": (0.60, [0.60, 0.60, 0.60]),
        "bcts": (0.61, [0.66, 0.65, 0.57]),  # better pooled, 0.03 worse on the last fold
        "vector": (0.60, [0.61, 0.60, 0.59]),
    }
    nll = {"none": 0.9, "temperature": 0.8, "bcts": 0.5, "vector": 0.7}
    _fake_candidates(monkeypatch, len(y), nll, dict.fromkeys(nll, 0.05), calls)
    _, choice, _ = posthoc.choose_calibration("multiclass", "auto", z, y, folds, np.zeros(3), TRAIN)
    assert choice["chosen"] == "vector"


def test_auto_keeps_calibrated_logits_when_a_few_groups_are_confidently_wrong():
    """Exact posteriors, except two groups whose records all look like another class (a
    haplotype shared across basins): NLL then wants a temperature that softens every other
    call, which raises ECE; auto keeps the network's own probabilities."""
    rng = np.random.default_rng(6)
    z, y, folds = folds_of([TRAIN] * 4, rng, n=300)
    for g in range(2):  # 40 records of group g: class 0 by their features, class 1 by their label
        idx = np.flatnonzero((folds == g) & (y == 0))[:40]
        y[idx] = 1
        z[idx] = z[idx] * 2.5
    _, choice, _ = posthoc.choose_calibration("multiclass", "auto", z, y, folds, np.zeros(3), TRAIN)
    table = choice["candidates"]
    assert table["temperature"]["nll"] < table["none"]["nll"]  # NLL alone would soften
    assert table["temperature"]["ece"] > table["none"]["ece"]
    assert choice["chosen"] == "none"


PCFG = {"method": "em", "tol": 1e-6, "max_iter": 1000, "prior_strength": 0.0, "bootstrap": 0}


def test_em_passes_the_check_under_pure_label_shift():
    rng = np.random.default_rng(3)
    z, y, folds = folds_of([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]], rng)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    check = posthoc.heldout_shift("multiclass", probs, y, folds, TRAIN, PCFG, list("abc"), 0, redraws=20, n_boot=200)
    assert check["change"] > 0.02 and check["ci_low"] > 0 and check["redraws"]["mean_change"] > 0
    assert all(f["after"] >= f["before"] - 0.01 for f in check["folds"])
    assert posthoc.shift_helps(check)
    assert posthoc.decide("em", True, 10, check)[0]


def test_known_equal_priors_are_scored_by_balanced_accuracy_on_held_out_folds():
    """A known correction estimates nothing: its held-out effect is the calls' accuracy weighted
    to the configured priors (balanced accuracy for equal ones), which exact posteriors moved to
    equal priors raise; plain accuracy at the training mix would call it a loss."""
    rng = np.random.default_rng(7)
    z, y, folds = folds_of([TRAIN] * 3, rng, n=3000)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    known = {**PCFG, "method": "known", "target_priors": "equal"}
    equal = np.full(3, 1 / 3)
    args = ("multiclass", probs, y, folds, TRAIN, known, list("abc"), 0)
    check = posthoc.heldout_shift(*args, redraws=0, n_boot=200, target=equal)
    assert check["metric"] == "balanced_accuracy" and check["redraws"]["n"] == 0
    assert check["change"] > 0 and check["ci_low"] > 0
    plain = posthoc.heldout_shift(*args, redraws=0, n_boot=200)
    assert plain["metric"] == "accuracy" and plain["change"] < 0
    skewed = posthoc.heldout_shift(*args, redraws=0, n_boot=0, target=np.array([0.2, 0.2, 0.6]))
    assert skewed["metric"] == "accuracy_at_target_priors"


def test_em_fails_the_check_when_a_fold_looks_like_another_class():
    """Each fold's records mostly look like one class whatever their label (a project of
    haplotypes near another basin's): not label shift, and EM's estimate makes the calls worse."""
    rng = np.random.default_rng(4)

    def lookalike(target):
        return lambda y, r: np.where(r.random(len(y)) < 0.6, target, y)

    parts = [folds_of([TRAIN], rng, looks_like=lookalike(c)) for c in range(3)]
    z = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    folds = np.repeat(np.arange(3), 400)
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    check = posthoc.heldout_shift("multiclass", probs, y, folds, TRAIN, PCFG, list("abc"), 0, redraws=0, n_boot=200)
    assert check["change"] < 0 and check["ci_high"] < 0.01
    assert not posthoc.shift_helps(check)
    applied, decision, reason = posthoc.decide("em", True, 10, check)
    assert not applied and decision["code"] == "check_failed" and "held-out" in reason


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_hits_score_matches_the_calls_figures(kind):
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    if kind == "multiclass":
        probs, y = rng.dirichlet(np.ones(3), 50), rng.integers(0, 3, 50)
        hits = posthoc.call_hits(kind, probs, y)
        assert posthoc.hits_score(kind, hits) == pytest.approx((probs.argmax(1) == y).mean())
    else:
        probs, y = rng.random((50, 4)), (rng.random((50, 4)) < 0.3).astype(int)
        rule = (np.full(4, 0.5), 0.0)
        hits = posthoc.call_hits(kind, probs, y, rule)
        from barloc.metrics import predict_multilabel

        pred = predict_multilabel(probs, *rule)
        assert posthoc.hits_score(kind, hits) == pytest.approx(f1_score(y, pred, average="micro"))


def test_auto_fits_a_bias_when_the_loss_shifts_logits_the_offset_does_not_undo():
    """Sigmoid heads trained with the softmax term: auto takes only a method with a per-label
    bias (bcts), even where the uncalibrated probabilities would win on NLL (synthetic logits
    that are exact posteriors); the other methods are still scored."""
    from barloc.calibrate import offset_undoes_loss

    rng = np.random.default_rng(3)
    z = rng.normal(size=(1600, 3)) * 2
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(float)
    folds = np.repeat(np.arange(4), 400)
    args = ("multilabel", "auto", z, y, folds, np.zeros(3), y.mean(0), 0.0)
    _, plain, _ = posthoc.choose_calibration(*args)
    _, shifted, _ = posthoc.choose_calibration(*args, bias_refit=True)
    assert plain["chosen"] != "bcts" and shifted["chosen"] == "bcts"
    assert set(shifted["candidates"]) == {"none", "temperature", "bcts"}
    assert offset_undoes_loss("multilabel", {"softmax_weight": 0.0})
    assert not offset_undoes_loss("multilabel", {"softmax_weight": 1.0})
    assert offset_undoes_loss("multiclass", {})


def test_the_softmax_term_fits_and_checks_the_call_ratio_on_the_logits():
    """Sigmoid heads trained with the softmax term: calibration.json says the call ratio compares
    the logits (call_ratio_on), its ratio is fitted on them, and the held-out prior-shift check
    scores the calls the model makes, by that rule (synthetic logits)."""
    from sklearn.metrics import f1_score

    from barloc.artifacts import Calibration, ModelMeta
    from barloc.calling import correct
    from barloc.config import task_default
    from barloc.metrics import fit_calls, moved_logits, predict_multilabel

    rng = np.random.default_rng(5)
    n = 1200
    Y = np.eye(3, dtype=bool)[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    z = rng.normal(0, 0.8, (n, 3)) + 1.5 * Y - np.array([0.0, 0.0, 2.0])
    folds = np.repeat(np.arange(4), n // 4)
    ccfg = task_default("calibration")

    def fields(weight: float) -> dict:
        meta = ModelMeta(
            kind="multilabel",
            classes=["a", "b", "c"],
            alphabet="protein",
            encoder={"type": "cnn"},
            loss={"type": "bce", "pos_weight": False, "softmax_weight": weight},
            train_counts=Y.sum(0).tolist(),
            n_train=n,
            train_priors=Y.mean(0).tolist(),
        )
        return meta, posthoc.calibration_fit(meta, z, Y, folds, ccfg)[0]

    plain, term = fields(0.0)[1], fields(1.0)
    meta, got = term
    assert "call_ratio_on" not in plain and got["call_ratio_on"] == "logits" and got["method"] == "bcts"
    calib = Calibration(kind="multilabel", classes=meta.classes, **got)
    probs = posthoc.apply(z, "multilabel", calib.params())
    want = fit_calls(probs, Y, ccfg["call_ratio"], z)
    assert got["call_ratio"] == want["call_ratio"]
    # the method was chosen on the calls the rule makes
    crossfit = posthoc.crossfitted("multilabel", "bcts", z, Y, folds, np.zeros(3), meta.priors)
    scored = got["choice"]["candidates"]["bcts"]["micro_f1"]
    assert scored == pytest.approx(posthoc.calls_score("multilabel", crossfit, Y, folds, "auto", z)[0])
    assert scored != pytest.approx(posthoc.calls_score("multilabel", crossfit, Y, folds, "auto")[0])
    # the held-out prior-shift check scores them too, before and after EM, the logits moved with it
    pcfg = {**task_default("prior_shift"), "method": "em", "check_redraws": 2}
    check = posthoc.shift_check(meta, calib, z, Y, folds, pcfg, 0, probs)
    rule = calib.call_rule(3)
    assert check["before"] == pytest.approx(f1_score(Y, predict_multilabel(probs, *rule, z), average="micro"))
    by_probs = predict_multilabel(probs, *rule)  # not the same calls
    assert check["before"] != pytest.approx(f1_score(Y, by_probs, average="micro"))
    after, unmoved = np.zeros_like(Y), np.zeros_like(Y)
    quiet = {**pcfg, "bootstrap": 0}
    for f in range(4):
        held = folds == f
        corrected = correct("multilabel", probs[held], meta.priors, quiet, meta.classes, 0, None, rule[0])[0]
        after[held] = predict_multilabel(corrected, *rule, moved_logits(z[held], probs[held], corrected))
        unmoved[held] = predict_multilabel(corrected, *rule, z[held])
    assert check["after"] == pytest.approx(f1_score(Y, after, average="micro"))
    assert check["after"] != pytest.approx(f1_score(Y, unmoved, average="micro"))
