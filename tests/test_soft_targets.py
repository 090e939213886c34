"""Soft targets: probability rows in a labels sheet, through ingest, training and evaluation.

All data here is synthetic (random DNA with a class motif), named so in the file names.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import STEP_FILES, run_small_pipeline

from barloc import soft
from barloc.config import with_defaults
from barloc.errors import InputError
from barloc.io import read_table
from barloc.io.labels import read_labels
from barloc.losses import make_loss, softmax_cross_entropy, softmax_focal_loss

CLASSES = ["Atlantic", "Indian", "Pacific"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


SHEET = (
    "id\tAtlantic\tIndian\tPacific\n"
    "r1\t1\t0\t0\n"
    "r2\t0.7\t0.3\t0\n"
    "r3\t0\t0\t0\n"
    "r4\t0.25\t0.25\t0.5\n"
    "r5\t0\t1.00\t0\n"
    "r6\t0.5\t0.5\t0\n"
    "r7\t0.33\t0.33\t0.33\n"
)


# --- the sheet ------------------------------------------------------------------------------


def test_probability_rows_become_soft_targets(tmp_path):
    df = read_labels(write(tmp_path, "synthetic_soft.tsv", SHEET))
    assert df["label"].tolist() == ["Atlantic", "Atlantic", None, "Pacific", "Indian", "Atlantic", "Atlantic"]
    probs = [soft.decode(c) for c in df[soft.SOFT]]
    assert probs[0] is None and probs[2] is None and probs[4] is None  # 0/1 rows stay hard
    assert probs[1] == pytest.approx({"Atlantic": 0.7, "Indian": 0.3})
    assert probs[3] == pytest.approx({"Atlantic": 0.25, "Indian": 0.25, "Pacific": 0.5})
    # A tie goes to the first column; rows within the tolerance are rescaled to sum to 1.
    assert probs[6] == pytest.approx({c: 1 / 3 for c in CLASSES}) and sum(probs[6].values()) == pytest.approx(
        1, abs=1e-12
    )


def test_a_sheet_of_flags_has_no_soft_column(tmp_path):
    df = read_labels(write(tmp_path, "synthetic_flags.tsv", "id\tA\tB\nr1\t1\t0\nr2\t1\t1\n"))
    assert soft.SOFT not in df.columns
    assert df["label"].tolist() == ["A", "A;B"]


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("r2\t0.7\t-0.1\t0.4", ("line 3", "'r2'", "column 'Indian' holds '-0.1'", "cannot be negative")),
        ("r2\t70\t30\t0", ("line 3", "'r2'", "column 'Atlantic' holds '70'", "between 0 and 1", "write 0.7")),
        ("r2\t1.5\t0\t0", ("line 3", "'r2'", "column 'Atlantic' holds '1.5'", "between 0 and 1")),
        ("r2\t0.7\t0.2\t0", ("line 3", "'r2'", "sum to 0.9", "must sum to 1")),
        ("r2\t1\t0.5\t0", ("line 3", "'r2'", "sum to 1.5")),
        ("r2\t0.7\tmaybe\t0.3", ("line 3", "'r2'", "column 'Indian' holds 'maybe'")),
        ("r2\t0.7\tnan\t0.3", ("line 3", "'r2'", "column 'Indian' holds 'nan'")),
    ],
)
def test_bad_probability_rows(tmp_path, row, words):
    sheet = write(tmp_path, "synthetic_bad.tsv", f"id\tAtlantic\tIndian\tPacific\nr1\t1\t0\t0\n{row}\n")
    with pytest.raises(InputError) as err:
        read_labels(sheet)
    msg = str(err.value)
    assert msg.startswith("synthetic_bad.tsv") or "synthetic_bad.tsv" in msg
    for word in words:
        assert word in msg, (word, msg)


def test_label_column_beside_a_class_column_is_refused(tmp_path):
    sheet = write(tmp_path, "synthetic_mixed.tsv", "id\tlabel\tAtlantic\tIndian\nr1\tAtlantic\t\t\nr2\t\t0.6\t0.4\n")
    with pytest.raises(
        InputError,
        match=r"line 1: the sheet has a 'label' column and also a column named after "
        r"the label 'Atlantic'",
    ):
        read_labels(sheet)
    # Other extra columns (notes, species) are still ignored, as before.
    ok = write(tmp_path, "synthetic_notes.tsv", "id\tlabel\tnotes\nr1\tAtlantic\tfrom a market\n")
    assert read_labels(ok)["label"].tolist() == ["Atlantic"]


def test_unknown_class_column_with_configured_classes(tmp_path):
    fasta = write(tmp_path, "synthetic.fasta", ">r1\nACGTACGTAC\n>r2\nACGTTTGTAC\n")
    sheet = write(tmp_path, "synthetic_unknown.tsv", "id\tAtlantic\tAtlantis\nr1\t1\t0\nr2\t0.5\t0.5\n")
    with pytest.raises(
        InputError, match=r"synthetic_unknown.tsv, line 1: column 'Atlantis' is not one of the task's classes"
    ):
        read_table(fasta, "fasta", "dna", labels=sheet, allowed_labels=CLASSES)
    ok = read_table(fasta, "fasta", "dna", labels=sheet)  # no configured classes: its columns are the classes
    assert ok["label"].tolist() == ["Atlantic", "Atlantic"] and soft.decode(ok.at[1, soft.SOFT]) == {
        "Atlantic": 0.5,
        "Atlantis": 0.5,
    }


def test_soft_targets_refused_for_a_multilabel_task(tmp_path):
    from barloc.steps import ingest

    write(tmp_path, "synthetic.fasta", ">r1\nACGTACGTAC\n>r2\nACGTTTGTAC\n")
    write(tmp_path, "synthetic_soft.tsv", "id\tNucleus\tCytoplasm\nr1\t1\t1\nr2\t0.5\t0.5\n")
    cfg = {
        "kind": "multilabel",
        "alphabet": "dna",
        "reference": str(tmp_path / "synthetic.fasta"),
        "format": "fasta",
        "labels": str(tmp_path / "synthetic_soft.tsv"),
        "min_class_size": 1,
    }
    with pytest.raises(
        InputError, match=r"record 'r2': row has probabilities \(a soft target\), which only a multiclass"
    ):
        ingest.run(NS(), NS(records=str(tmp_path / "records.parquet")), NS(task="t", cfg=with_defaults(cfg)))


def test_rare_class_leaves_the_soft_targets(tmp_path):
    from barloc.records import drop_rare_classes

    df = pd.DataFrame(
        {  # object columns holding str or None, as the readers make them
            "id": ["a", "b", "c", "d"],
            "label": pd.Series(["Atlantic", "Atlantic", "Atlantic", "Indian"], dtype=object),
            soft.SOFT: pd.Series(
                [
                    None,
                    soft.encode({"Atlantic": 0.6, "Pacific": 0.4}),
                    None,
                    soft.encode({"Indian": 0.8, "Pacific": 0.2}),
                ],
                dtype=object,
            ),
        }
    )
    out = drop_rare_classes(df, "multiclass", 2)  # Indian has 1 record, Pacific none of its own
    assert out["label"].tolist() == ["Atlantic", "Atlantic", "Atlantic", None]
    assert soft.decode(out.at[1, soft.SOFT]) == {"Atlantic": 1.0}
    assert out.at[3, soft.SOFT] is None


# --- the loss -------------------------------------------------------------------------------


def _soft_batch(n=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g, requires_grad=True)
    q = torch.softmax(torch.randn(n, k, generator=g) * 2, dim=1)
    return x, q


def test_gradient_of_cross_entropy_against_a_soft_target_is_p_minus_q():
    x, q = _soft_batch()
    softmax_cross_entropy(x, q).backward()
    expected = (torch.softmax(x, 1) - q) / len(q)
    assert torch.allclose(x.grad, expected.detach(), atol=1e-6)


def test_weighted_soft_gradient_pulls_towards_the_tilted_target():
    """With class weights w the gradient of a soft row is (q.w)(p - q~) / sum_i (q_i.w), with
    q~ proportional to w*q: the minimum is p proportional to w*q, the log w shift that
    calibration's offset removes, as for hard labels."""
    x, q = _soft_batch()
    w = torch.tensor([0.5, 2.0, 1.0])
    softmax_cross_entropy(x, q, weight=w).backward()
    omega = (q * w).sum(1, keepdim=True)
    tilted = q * w / omega
    expected = omega * (torch.softmax(x, 1) - tilted) / omega.sum()
    assert torch.allclose(x.grad, expected.detach(), atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_loss_is_the_expected_hard_loss(gamma, smoothing):
    """A soft row q counts as every class c at once, with sample weight q_c: the same number as
    the hard loss on the rows repeated once per class, weighted by q (and by w)."""
    x, q = _soft_batch(n=5, k=4, seed=3)
    w = torch.tensor([0.3, 1.0, 2.5, 0.2])
    n, k = q.shape
    xs = x.detach().repeat_interleave(k, 0)
    ys = torch.arange(k).repeat(n)
    sample_w = q.reshape(-1) * w[ys]
    logp = F.log_softmax(xs, 1)
    focal = (1 - logp.exp()).pow(gamma) * logp
    target = F.one_hot(ys, k).float() * (1 - smoothing) + smoothing / k
    hard = -(target * focal).sum(1)
    expected = (sample_w * hard).sum() / sample_w.sum()
    got = softmax_focal_loss(x.detach(), q, gamma, w, smoothing)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    "loss",
    [
        {"type": "cross_entropy"},
        {"type": "cross_entropy", "class_weights": "inverse", "label_smoothing": 0.1},
        {"type": "focal", "gamma": 2.0, "class_weights": "effective"},
    ],
)
def test_one_hot_rows_give_exactly_the_hard_loss(loss):
    """Hard labels are untouched by soft-target support: a one-hot float row gives the same
    bits as its class index."""
    torch.manual_seed(1)
    x, y = torch.randn(40, 3), torch.randint(0, 3, (40,))
    fn = make_loss("multiclass", loss, np.array([30, 8, 2]), 40)
    assert torch.equal(fn(x, y), fn(x, F.one_hot(y, 3).float()))


def test_targets_for_training():
    hard = pd.DataFrame({"label": pd.Series(["Indian", "Atlantic", None], dtype=object)})
    out = soft.targets(hard, CLASSES, "multiclass")
    assert out.dtype == np.int64 and out.tolist() == [1, 0, -1]
    mixed = hard.assign(
        **{soft.SOFT: pd.Series([None, soft.encode({"Atlantic": 0.7, "Pacific": 0.3}), None], dtype=object)}
    )
    Y = soft.targets(mixed, CLASSES, "multiclass")
    assert Y.dtype == np.float32
    np.testing.assert_allclose(Y, [[0, 1, 0], [0.7, 0, 0.3], [0, 0, 0]], atol=1e-7)


# --- end to end on synthetic barcodes -------------------------------------------------------

MOTIF = {"Atlantic": "GATTACAGATTACA", "Indian": "CCGGTTAACCGGTT", "Pacific": "TTTTGGGGCCCCAA"}


def synthetic_inputs(
    where: Path, sizes: tuple[int, ...] = (40, 40, 40), seed: int = 0, motif_len: int | None = None
) -> tuple[Path, Path]:
    """Random 150-base DNA with a class motif planted twice; every sixth record gets a
    probability vector (its true class 0.7, or 0.6 for Indian, the next class the rest)
    instead of a 0/1 row. ``sizes``: records per class; ``motif_len`` plants only that much of
    each motif (a harder task)."""
    rng = np.random.default_rng(seed)
    fasta, rows = [], ["id\tgroup\t" + "\t".join(CLASSES)]
    i = 0
    for ci, c in enumerate(CLASSES):
        motif = MOTIF[c][:motif_len]
        for j in range(sizes[ci]):
            seq = list(rng.choice(list("ACGT"), 150))
            for start in (20, 90):
                seq[start : start + len(motif)] = motif
            rid = f"syn{i:03d}"
            fasta.append(f">{rid}\n{''.join(seq)}\n")
            if i % 6 == 5:
                vec = [0.0] * 3
                top = 0.6 if c == "Indian" else 0.7  # not symmetric, so expected counts are not whole
                vec[ci], vec[(ci + 1) % 3] = top, round(1 - top, 1)
            else:
                vec = [1.0 if k == ci else 0.0 for k in range(3)]
            rows.append(f"{rid}\tG{j % 10}\t" + "\t".join(f"{v:g}" for v in vec))
            i += 1
    (where / "synthetic_ref.fasta").write_text("".join(fasta))
    (where / "synthetic_labels.tsv").write_text("\n".join(rows) + "\n")
    return where / "synthetic_ref.fasta", where / "synthetic_labels.tsv"


def synthetic_cfg(ref: Path, labels: Path, max_epochs: int) -> dict:
    """A multiclass task config over synthetic_inputs' files: small k-mer model, weighted CE."""
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "reference": str(ref),
        "format": "fasta",
        "labels": str(labels),
        "min_class_size": 5,
        "split": {"method": "grouped", "n_folds": 5, "test_fold": 0},
        "encoder": {"type": "kmer", "k": 4, "hidden": 16, "dropout": 0.0},
        "loss": {"type": "cross_entropy", "class_weights": "inverse"},
        "train": {"max_epochs": max_epochs, "batch_size": 16, "lr": 0.01, "patience": 8},
        "prior_shift": {"method": "em", "bootstrap": 0},
    }


def _pipeline(cfg: dict, out: Path) -> dict:
    """Every step from ingest to evaluate; file name -> path."""
    run_small_pipeline(cfg, out, seed=5, task="synthetic_origin", geo_table=None, to_evaluate=True)
    return {name: str(out / name) for name in STEP_FILES}


@pytest.fixture(scope="module")
def soft_run(tmp_path_factory):
    where = tmp_path_factory.mktemp("synthetic_soft")
    ref, labels = synthetic_inputs(where)
    return _pipeline(synthetic_cfg(ref, labels, max_epochs=8), where), ref, labels


def test_a_sheet_with_soft_rows_trains_end_to_end(soft_run):
    f, _, _ = soft_run
    records = pd.read_parquet(f["records.parquet"])
    is_soft = records[soft.SOFT].notna()
    assert is_soft.sum() == 20  # every sixth of 120
    first = records[is_soft].iloc[0]
    assert soft.decode(first[soft.SOFT]) == pytest.approx({"Atlantic": 0.7, "Indian": 0.3})
    assert first["label"] == "Atlantic"

    meta = json.loads(Path(f["model.json"]).read_text())
    splits = pd.read_csv(f["splits.tsv"], sep="\t")
    train = records.merge(splits, on="id").query("split == 'train'")
    # Class counts (and so the class weights and priors) are expected counts under the vectors.
    expected = soft.targets(train, meta["classes"], "multiclass").sum(axis=0)
    assert meta["classes"] == CLASSES
    assert np.allclose(meta["train_counts"], expected) and not np.allclose(expected, np.round(expected))

    metrics = json.loads(Path(f["metrics.json"]).read_text())
    logits = pd.read_parquet(f["logits.parquet"])
    test = logits[logits["split"] == "test"]
    assert metrics["n_test_soft"] == int(test[soft.SOFT].notna().sum()) > 0
    assert metrics["n_test"] == int(test[soft.SOFT].isna().sum())  # soft rows are left out of the metrics
    assert sum(map(sum, metrics["confusion"]["matrix"])) == metrics["n_test"]
    # The motif is easy: the model learns it through the soft rows too.
    assert metrics["calibrated"]["balanced_accuracy"] > 0.8


def test_soft_rows_change_training_and_hard_rows_do_not(soft_run, tmp_path):
    """The same records with every soft row replaced by its most probable class: a sheet of 0/1
    rows, hence no label_probs column anywhere, and different class counts."""
    f, ref, labels = soft_run
    sheet = pd.read_csv(labels, sep="\t", dtype=str)
    vals = sheet[CLASSES].astype(float).to_numpy()
    hard = (vals == vals.max(axis=1, keepdims=True)).astype(int)
    sheet[CLASSES] = hard.astype(str)
    hard_labels = tmp_path / "synthetic_hard.tsv"
    sheet.to_csv(hard_labels, sep="\t", index=False)
    g = _pipeline(synthetic_cfg(ref, hard_labels, max_epochs=2), tmp_path)
    assert soft.SOFT not in pd.read_parquet(g["records.parquet"]).columns
    assert soft.SOFT not in pd.read_parquet(g["logits.parquet"]).columns
    assert "n_test_soft" not in json.loads(Path(g["metrics.json"]).read_text())
    # Same nominal labels, so the same splits.
    assert Path(g["splits.tsv"]).read_text() == Path(f["splits.tsv"]).read_text()
    hard_counts = json.loads(Path(g["model.json"]).read_text())["train_counts"]
    soft_counts = json.loads(Path(f["model.json"]).read_text())["train_counts"]
    assert all(float(c).is_integer() for c in hard_counts) and not np.allclose(hard_counts, soft_counts)


def test_early_stopping_metric_scores_one_hot_rows_only():
    """A soft row's most probable class is not its class: the validation metric that early
    stopping watches leaves it out, as the test metrics do."""
    from barloc.models.classifier import _val_metric

    logits = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0]])
    hard = np.eye(3, dtype=np.float32)
    right = _val_metric("multiclass", logits[:3], np.arange(3))
    assert right == 1.0
    # A fourth row, soft, whose argmax (Indian, 0.6) the model misses: still 1.0.
    target = np.vstack([hard, [[0.4, 0.6, 0.0]]]).astype(np.float32)
    assert _val_metric("multiclass", logits, target) == 1.0
    # The same row given as a hard Indian label does count.
    target[3] = [0, 1, 0]
    assert _val_metric("multiclass", logits, target) < 1.0
    # With no one-hot row at all, rows are scored by their most probable class (never NaN,
    # which would end training at once).
    assert _val_metric("multiclass", logits[3:], np.array([[0.6, 0.4, 0.0]], dtype=np.float32)) == 1.0


def test_out_of_fold_leaves_soft_rows_out_of_scores_and_calibration(tmp_path, monkeypatch):
    """barloc.cv (the benchmarks' cross-validation) trains on soft rows but returns, and
    calibrates on, hard rows only."""
    from barloc import cv
    from barloc.records import load_reference

    ref, labels = synthetic_inputs(tmp_path, sizes=(25, 25, 25))
    cfg = synthetic_cfg(ref, labels, max_epochs=2)
    labelled = load_reference(with_defaults(cfg), None)
    is_soft = labelled[soft.SOFT].notna().to_numpy()
    folds = np.arange(len(labelled)) % 3
    calibrated_on = []
    calibration_fit = cv.calibration_fit
    monkeypatch.setattr(cv, "calibration_fit", lambda *a: calibrated_on.append(len(a[2])) or calibration_fit(*a))
    oof, info = cv.out_of_fold(
        labelled, cfg, {"accelerator": "cpu", "precision": "32-true", "threads": 1}, 3, seed=1, folds=folds
    )
    assert is_soft.sum() > 0
    assert sorted(oof["id"]) == sorted(labelled.loc[~is_soft, "id"])
    # Test fold k's calibration is fitted on the other folds' out-of-fold rows: hard records only.
    assert calibrated_on == [int(((folds != k) & ~is_soft).sum()) for k in range(3)]
    # Soft records still train: each record is in the refit model of the two folds it is not tested in.
    assert sum(i["meta"].n_train for i in info) == 2 * len(labelled)
