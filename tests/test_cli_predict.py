"""`barloc predict`: calls for a FASTA without Snakemake, identical to the workflow's.

The models here are tiny and trained in the test on SYNTHETIC sequences (random DNA whose
GC content depends on the class; random proteins whose composition depends on the labels);
calibration.json is written by hand.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO

from barloc import shift
from barloc.artifacts import Calibration, ModelMeta
from barloc.calibrate import apply
from barloc.calling import calls_table, correct
from barloc.cli import main
from barloc.config import task_default
from barloc.data import EncodedDataset, predict_logits, targets_for
from barloc.inference import Progress, predict_file
from barloc.metrics import moved_logits
from barloc.modelio import build_model, save_model

BASINS = ["Atlantic", "Indian", "Pacific"]
PLACES = ["Cytoplasm", "Nucleus", "Mitochondrion"]
GC = {"Atlantic": 0.3, "Indian": 0.5, "Pacific": 0.7}
AMINO = "ACDEFGHIKLMNPQRSTVWY"


# --------------------------------------------------------------------------- synthetic data


def synthetic_dna(rng: np.random.Generator, label: str, n: int = 120) -> str:
    gc = GC[label]
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return "".join(rng.choice(list("ACGT"), size=n, p=p))


def synthetic_protein(rng: np.random.Generator, labels: list[str]) -> str:
    """Nucleus proteins are K/R-rich, mitochondrial ones L-rich at the N-terminus."""
    body = "".join(rng.choice(list(AMINO), size=int(rng.integers(20, 60))))
    if "Nucleus" in labels:
        body = "PKKKRKV" + body + "KRKRK"
    if "Mitochondrion" in labels:
        body = "MLSRLLRLL" + body
    return body


def write_fasta(path: Path, ids, seqs, wrap: int = 60) -> Path:
    with open(path, "w") as fh:
        for i, s in zip(ids, seqs):
            fh.write(f">{i} synthetic\n")
            for k in range(0, len(s), wrap):
                fh.write(s[k : k + wrap] + "\n")
    return path


def _train(model, ds: EncodedDataset, y: np.ndarray, steps: int = 60) -> None:
    from barloc.data import collate

    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    batch = collate([ds[i] for i in range(len(ds))])
    target = torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = model.loss_fn(model(batch), target)
        loss.backward()
        opt.step()
    model.eval()


def _write_task(task_dir: Path, model, meta: dict, calibration: dict) -> Path:
    task_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, ModelMeta(**meta), task_dir / "model.ckpt", task_dir / "model.json")
    (task_dir / "calibration.json").write_text(json.dumps(calibration))
    return task_dir / "model.ckpt"


@pytest.fixture(scope="module")
def fish(tmp_path_factory) -> dict:
    """A k-mer multiclass model trained on synthetic barcodes, and a synthetic query FASTA."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("predict_fish")
    labels = [BASINS[i] for i in rng.choice(3, 150, p=[0.5, 0.2, 0.3])]
    seqs = [synthetic_dna(rng, lab) for lab in labels]
    counts = [labels.count(c) for c in BASINS]
    meta = {
        "task": "fish_origin",
        "kind": "multiclass",
        "classes": BASINS,
        "alphabet": "dna",
        "encoder": {"type": "kmer", "k": 3, "hidden": 16, "dropout": 0.0},
        "loss": {"type": "cross_entropy", "class_weights": "none"},
        "optim": {"lr": 0.01},
        "n_features": 64,
        "train_counts": counts,
        "n_train": len(labels),
        "train_priors": (np.array(counts) / len(labels)).tolist(),
    }
    model = build_model(ModelMeta(**meta))
    _train(model, EncodedDataset(seqs, meta["encoder"], "dna"), targets_for(labels, BASINS, "multiclass"))
    calibration = {
        "kind": "multiclass",
        "classes": BASINS,
        "method": "temperature",
        "offset": [0.1, -0.2, 0.1],
        "temperature": 1.7,
    }
    ckpt = _write_task(root / "fish_origin", model, meta, calibration)
    # Query: mostly Pacific, so prior correction has something to do; some short ones.
    qlabels = [BASINS[i] for i in rng.choice(3, 57, p=[0.1, 0.1, 0.8])]
    qseqs = [synthetic_dna(rng, lab, int(rng.integers(30, 160))) for lab in qlabels]
    qids = [f"Q{i:03d}" for i in range(len(qseqs))]
    fasta = write_fasta(root / "samples.fasta", qids, qseqs)
    return {
        "ckpt": ckpt,
        "meta": meta,
        "calibration": calibration,
        "model": model,
        "ids": qids,
        "seqs": qseqs,
        "fasta": fasta,
        "root": root,
    }


@pytest.fixture(scope="module")
def loc(tmp_path_factory) -> dict:
    """A CNN multilabel model trained on synthetic proteins, with per-label thresholds."""
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("predict_loc")
    labels = []
    for _ in range(60):
        chosen = [c for c in PLACES if rng.random() < 0.35] or [PLACES[int(rng.integers(3))]]
        labels.append(chosen)
    seqs = [synthetic_protein(rng, lab) for lab in labels]
    y = targets_for([";".join(lab) for lab in labels], PLACES, "multilabel")
    meta = {
        "task": "localization",
        "kind": "multilabel",
        "classes": PLACES,
        "alphabet": "protein",
        "encoder": {
            "type": "cnn",
            "embed_dim": 8,
            "channels": 8,
            "kernel_sizes": [3, 5],
            "max_len": 80,
            "dropout": 0.0,
        },
        "loss": {"type": "bce", "pos_weight": False},
        "optim": {"lr": 0.01},
        "train_counts": y.sum(axis=0).tolist(),
        "n_train": len(labels),
        "train_priors": y.mean(axis=0).tolist(),
    }
    model = build_model(ModelMeta(**meta))
    _train(model, EncodedDataset(seqs, meta["encoder"], "protein"), y, steps=12)
    calibration = {
        "kind": "multilabel",
        "classes": PLACES,
        "method": "bcts",
        "offset": [0.0, 0.0, 0.0],
        "temperature": [1.2, 0.9, 1.5],
        "bias": [0.1, -0.1, 0.0],
        "thresholds": [0.4, 0.5, 0.3],
        "call_ratio": 0.7,
    }
    ckpt = _write_task(root / "localization", model, meta, calibration)
    qlabels = [[c for c in PLACES if rng.random() < 0.4] or ["Cytoplasm"] for _ in range(45)]
    qseqs = [synthetic_protein(rng, lab) for lab in qlabels]
    qids = [f"P{i:03d}" for i in range(len(qseqs))]
    fasta = write_fasta(root / "proteins.fasta", qids, qseqs)
    return {
        "ckpt": ckpt,
        "meta": meta,
        "calibration": calibration,
        "model": model,
        "ids": qids,
        "seqs": qseqs,
        "fasta": fasta,
        "root": root,
    }


def workflow_calls(task: dict, threshold: float = 0.6, batch_size: int = 64, probs_hook=None) -> pd.DataFrame:
    """What the workflow writes for these sequences: predict -> calibrate.apply -> calls_table."""
    meta, calib = task["meta"], task["calibration"]
    ds = EncodedDataset(task["seqs"], meta["encoder"], meta["alphabet"])
    z = predict_logits(task["model"], ds, batch_size)
    probs = calibrated = apply(z, meta["kind"], calib)
    if probs_hook is not None:
        probs = probs_hook(probs)
    thresholds, ratio = Calibration(**calib).call_rule(len(meta["classes"]))
    rank = moved_logits(z, calibrated, probs) if calib.get("call_ratio_on") == "logits" else None
    return calls_table(task["ids"], probs, meta["classes"], meta["kind"], threshold, thresholds, ratio, rank)


def read_calls(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False)


def assert_same_calls(got: pd.DataFrame, want: pd.DataFrame, atol: float = 2e-6) -> None:
    # Round-trip `want` through the TSV format, as the workflow writes it.
    buf = io.StringIO()
    want.to_csv(buf, sep="\t", index=False)
    buf.seek(0)
    want = pd.read_csv(buf, sep="\t", keep_default_na=False)
    assert list(got.columns) == list(want.columns)
    assert got["id"].tolist() == want["id"].tolist()
    assert got["call"].tolist() == want["call"].tolist()
    assert got["uncertain"].tolist() == want["uncertain"].tolist()
    num = ["probability"] + [c for c in got.columns if c.startswith("p::")]
    np.testing.assert_allclose(got[num].to_numpy(float), want[num].to_numpy(float), atol=atol)


def run_cli(*argv: str) -> int:
    return main(["predict", *map(str, argv)])


# --------------------------------------------------------------------------- equality with the workflow


def test_multiclass_calls_equal_the_workflows(fish, tmp_path, capsys):
    out = tmp_path / "calls.tsv"
    assert run_cli("--model", fish["ckpt"], "--input", fish["fasta"], "--out", out) == 0
    got = read_calls(out)
    assert len(got) == len(fish["ids"])
    assert_same_calls(got, workflow_calls(fish))
    err = capsys.readouterr().err
    assert f"{len(got)} calls written" in err and "without prior correction" in err
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    assert not list(tmp_path.glob(".*tmp"))


def test_multilabel_calls_equal_the_workflows(loc, tmp_path):
    out = tmp_path / "calls.tsv"
    assert run_cli("--model", loc["ckpt"], "--input", loc["fasta"], "--out", out, "--quiet") == 0
    got = read_calls(out)
    assert_same_calls(got, workflow_calls(loc))
    # Each call is the top label plus every label at or above its calibrated threshold and at
    # least call_ratio times the top label's probability.
    p = got[[f"p::{c}" for c in PLACES]].to_numpy()
    dropped = 0
    for row, probs in zip(got["call"], p):
        called = set(row.split(";"))
        top = PLACES[int(np.argmax(probs))]
        above = {c for c, v, t in zip(PLACES, probs, loc["calibration"]["thresholds"]) if v >= t}
        kept = {c for c in above if probs[PLACES.index(c)] >= 0.7 * probs.max()}
        assert called == kept | {top}
        dropped += len(above - kept - {top})
    assert dropped > 0, "the ratio never removed a call: this test no longer checks it"


@pytest.mark.parametrize("chunk", ["1", "7", "2000"])
def test_chunk_size_does_not_change_the_calls(fish, tmp_path, chunk):
    out = tmp_path / "calls.tsv"
    assert (
        run_cli(
            "--model",
            fish["ckpt"],
            "--input",
            fish["fasta"],
            "--out",
            out,
            "--chunk-size",
            chunk,
            "--batch-size",
            "5",
            "--quiet",
        )
        == 0
    )
    assert_same_calls(read_calls(out), workflow_calls(fish), atol=2e-6)


def test_chunk_size_does_not_change_multilabel_calls(loc, tmp_path):
    outs = []
    for chunk in ("3", "1000"):
        out = tmp_path / f"calls_{chunk}.tsv"
        assert (
            run_cli("--model", loc["ckpt"], "--input", loc["fasta"], "--out", out, "--chunk-size", chunk, "--quiet")
            == 0
        )
        outs.append(read_calls(out))
    assert_same_calls(outs[0], outs[1])


def test_gzipped_input_and_uncertain_threshold(fish, tmp_path):
    gz = tmp_path / "samples.fasta.gz"
    gz.write_bytes(gzip.compress(fish["fasta"].read_bytes()))
    out = tmp_path / "calls.tsv"
    assert run_cli("--model", fish["ckpt"], "--input", gz, "--out", out, "--uncertain-below", "0.9", "--quiet") == 0
    got = read_calls(out)
    assert_same_calls(got, workflow_calls(fish, threshold=0.9))
    assert (got["uncertain"] == (got["probability"] < 0.9)).all()


# --------------------------------------------------------------------------- priors


def test_known_priors_reweight_the_calibrated_probabilities(fish, tmp_path):
    priors = tmp_path / "known.tsv"
    priors.write_text("class\tprior\nAtlantic\t0.05\nIndian\t0.05\nPacific\t0.90\n")
    out_plain, out_known = tmp_path / "plain.tsv", tmp_path / "known_calls.tsv"
    assert run_cli("--model", fish["ckpt"], "--input", fish["fasta"], "--out", out_plain, "--quiet") == 0
    assert (
        run_cli(
            "--model",
            fish["ckpt"],
            "--input",
            fish["fasta"],
            "--out",
            out_known,
            "--priors",
            priors,
            "--chunk-size",
            "10",
            "--quiet",
        )
        == 0
    )
    train = np.asarray(fish["meta"]["train_priors"])
    target = np.array([0.05, 0.05, 0.90])
    want = workflow_calls(fish, probs_hook=lambda p: shift.reweight(p, train, target))
    got = read_calls(out_known)
    assert_same_calls(got, want)
    plain = read_calls(out_plain)
    # Raising Pacific's prior from ~30% to 90% raises every Pacific probability and its calls.
    assert (got["p::Pacific"] >= plain["p::Pacific"] - 1e-9).all()
    assert (got["call"] == "Pacific").sum() > (plain["call"] == "Pacific").sum()
    assert not ((plain["call"] == "Pacific") & (got["call"] != "Pacific")).any()


def test_known_priors_multilabel_keep_unnamed_labels_at_training_rates(loc, tmp_path):
    priors = tmp_path / "known.tsv"
    priors.write_text("class\tprior\nNucleus\t0.9\n")
    out = tmp_path / "calls.tsv"
    assert run_cli("--model", loc["ckpt"], "--input", loc["fasta"], "--out", out, "--priors", priors, "--quiet") == 0
    train = np.asarray(loc["meta"]["train_priors"])
    target = train.copy()
    target[PLACES.index("Nucleus")] = 0.9
    want = workflow_calls(loc, probs_hook=lambda p: shift.reweight_multilabel(p, train, target))
    assert_same_calls(read_calls(out), want)


@pytest.mark.parametrize("priors", ["estimated", "known"])
def test_a_call_ratio_on_the_logits_follows_the_prior_correction(loc, tmp_path, priors):
    """A sigmoid model whose call ratio compares its logits' softmax (trained with the softmax
    term): both prediction paths, EM's two passes and known priors, call as the workflow does,
    the logits moved as the correction moved each label's probability; and the rule changes
    calls against the same model reading its probabilities."""
    task = {**loc, "calibration": {**loc["calibration"], "call_ratio_on": "logits"}}
    ckpt = _write_task(tmp_path / "model", loc["model"], loc["meta"], task["calibration"])
    train = np.asarray(loc["meta"]["train_priors"])
    if priors == "estimated":
        flags = ["--estimate-priors", "--chunk-size", "8"]

        def hook(p):
            pcfg = {**task_default("prior_shift"), "method": "em", "bootstrap": 0}
            return correct("multilabel", p.astype(np.float32).astype(np.float64), train, pcfg, PLACES, 0)[0]
    else:
        known = tmp_path / "known.tsv"
        known.write_text("class\tprior\nNucleus\t0.9\n")
        flags = ["--priors", known]
        target = train.copy()
        target[PLACES.index("Nucleus")] = 0.9

        def hook(p):
            return shift.reweight_multilabel(p, train, target)

    out = tmp_path / "calls.tsv"
    assert run_cli("--model", ckpt, "--input", loc["fasta"], "--out", out, "--quiet", *flags) == 0
    got = read_calls(out)
    assert_same_calls(got, workflow_calls(task, probs_hook=hook), atol=1e-5)
    assert got["call"].tolist() != workflow_calls(loc, probs_hook=hook)["call"].tolist()


def test_estimated_priors_equal_em_on_all_samples(fish, tmp_path, capsys):
    out = tmp_path / "calls.tsv"
    assert (
        run_cli(
            "--model", fish["ckpt"], "--input", fish["fasta"], "--out", out, "--estimate-priors", "--chunk-size", "8"
        )
        == 0
    )
    train = np.asarray(fish["meta"]["train_priors"])
    info = {}

    def em(p):
        corrected, i = correct(
            "multiclass",
            p.astype(np.float32).astype(np.float64),
            train,
            {**task_default("prior_shift"), "bootstrap": 0},
            BASINS,
            0,
        )
        info.update(i)
        return corrected

    assert_same_calls(read_calls(out), workflow_calls(fish, probs_hook=em), atol=1e-5)
    err = capsys.readouterr().err
    assert "estimated by EM" in err and f"Pacific {info['query_priors'][2]:.3f}" in err
    assert info["query_priors"][2] > train[2]  # the synthetic query is mostly Pacific


def test_progress_bar_draws_only_when_enabled():
    quiet, shown = io.StringIO(), io.StringIO()
    for stream, enabled in ((quiet, None), (shown, True)):
        bar = Progress("predicting", stream=stream, enabled=enabled, every=0.0)
        bar.update(2000)
        bar.update(500)
        bar.close()
    assert quiet.getvalue() == ""  # a StringIO is not a terminal
    assert "\r" in shown.getvalue() and "2,500 records" in shown.getvalue()


# --------------------------------------------------------------------------- errors: one line, exit 2


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("barloc: error: ")
    return err[0]


def test_priors_naming_unknown_classes(fish, tmp_path, capsys):
    priors = tmp_path / "known.tsv"
    priors.write_text("class\tprior\nAtlantic\t0.5\nArctic\t0.5\n")
    out = tmp_path / "calls.tsv"
    assert run_cli("--model", fish["ckpt"], "--input", fish["fasta"], "--out", out, "--priors", priors) == 2
    line = _one_error_line(capsys)
    assert "Arctic" in line and "known.tsv" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "content, words",
    [
        ("class\tprior\nAtlantic\t0.5\nIndian\t0.5\n", "lacks the prior of Pacific"),
        ("class\tprior\nAtlantic\tlots\nIndian\t0.5\nPacific\t0.2\n", "not a number"),
        ("name\tvalue\nAtlantic\t1\n", "columns class and prior"),
    ],
)
def test_bad_priors_files(fish, tmp_path, capsys, content, words):
    priors = tmp_path / "known.tsv"
    priors.write_text(content)
    assert (
        run_cli("--model", fish["ckpt"], "--input", fish["fasta"], "--out", tmp_path / "c.tsv", "--priors", priors) == 2
    )
    assert words in _one_error_line(capsys)


def test_protein_file_for_a_dna_model(fish, loc, tmp_path, capsys):
    out = tmp_path / "calls.tsv"
    assert run_cli("--model", fish["ckpt"], "--input", loc["fasta"], "--out", out) == 2
    line = _one_error_line(capsys)
    assert "look like protein" in line and "expects dna" in line
    assert not out.exists()


def test_dna_file_for_a_protein_model(fish, loc, tmp_path, capsys):
    assert run_cli("--model", loc["ckpt"], "--input", fish["fasta"], "--out", tmp_path / "c.tsv") == 2
    assert "expects protein" in _one_error_line(capsys)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_input(fish, tmp_path, capsys, content):
    empty = tmp_path / "empty.fasta"
    empty.write_text(content)
    assert run_cli("--model", fish["ckpt"], "--input", empty, "--out", tmp_path / "c.tsv") == 2
    assert "empty" in _one_error_line(capsys)
    assert not (tmp_path / "c.tsv").exists()


@pytest.mark.parametrize("missing", ["model.json", "calibration.json", "model.ckpt"])
def test_missing_model_files(fish, tmp_path, capsys, missing):
    task = tmp_path / "task"
    task.mkdir()
    for name in ("model.ckpt", "model.json", "calibration.json"):
        if name != missing:
            (task / name).write_bytes((fish["ckpt"].parent / name).read_bytes())
    assert run_cli("--model", task / "model.ckpt", "--input", fish["fasta"], "--out", tmp_path / "c.tsv") == 2
    line = _one_error_line(capsys)
    assert missing.replace(".ckpt", "") in line or "model file not found" in line


def test_weights_that_do_not_fit_the_model_json(fish, loc, tmp_path, capsys):
    task = tmp_path / "task"
    task.mkdir()
    (task / "model.ckpt").write_bytes(loc["ckpt"].read_bytes())
    for name in ("model.json", "calibration.json"):
        (task / name).write_bytes((fish["ckpt"].parent / name).read_bytes())
    assert run_cli("--model", task / "model.ckpt", "--input", fish["fasta"], "--out", tmp_path / "c.tsv") == 2
    assert "cannot load the model weights" in _one_error_line(capsys)


def test_a_bad_record_late_in_the_file_leaves_no_output(fish, tmp_path, capsys):
    bad = tmp_path / "bad.fasta"
    bad.write_text(fish["fasta"].read_text() + ">late_bad\nACGT!!ACGT\n")
    out = tmp_path / "calls.tsv"
    out.write_text("an older table\n")
    assert run_cli("--model", fish["ckpt"], "--input", bad, "--out", out, "--chunk-size", "5") == 2
    line = _one_error_line(capsys)
    assert "late_bad" in line and "position 5" in line
    assert out.read_text() == "an older table\n"  # untouched: the new table never replaced it
    assert not list(tmp_path.glob(".*tmp"))


def test_priors_and_estimate_priors_exclude_each_other(fish, tmp_path, capsys):
    priors = tmp_path / "known.tsv"
    priors.write_text("class\tprior\nAtlantic\t1\nIndian\t1\nPacific\t1\n")
    code = run_cli(
        "--model",
        fish["ckpt"],
        "--input",
        fish["fasta"],
        "--out",
        tmp_path / "c.tsv",
        "--priors",
        priors,
        "--estimate-priors",
    )
    assert code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_predict_file_returns_counts(fish, tmp_path):
    res = predict_file(fish["ckpt"], fish["fasta"], tmp_path / "c.tsv", progress=False)
    assert res.n == len(fish["ids"]) and res.method == "none"
    assert res.n_uncertain == int(read_calls(tmp_path / "c.tsv")["uncertain"].sum())


def test_chunks_clip_or_refuse_like_ingest(tmp_path):
    """Synthetic: the model's length_limit applies to queries exactly as ingest applied it."""
    from barloc.errors import InputError as Err
    from barloc.inference import iter_chunks

    fa = tmp_path / "long.fasta"
    fa.write_text(">short\nACGTACGT\n>long\n" + "ACGT" * 10 + "\n")
    clip = list(iter_chunks(fa, "dna", None, 10, {"max_length": 12, "on_long": "clip"}))
    assert clip == [(["short", "long"], ["ACGTACGT", "ACGTACGTACGT"])]
    with pytest.raises(Err, match="over max_length"):
        list(iter_chunks(fa, "dna", None, 10, {"max_length": 12, "on_long": "refuse"}))
    assert list(iter_chunks(fa, "dna", None, 10, {"max_length": None}))[0][1][1] == "ACGT" * 10


def test_shipped_localization_model_predicts_the_demo_queries(tmp_path):
    """The shipped model (package data, linked from resources/models/localization) loads by its
    name the safe way, stays under 20 MB, carries its card, and calls real proteins with the
    workflow's calls.tsv columns."""
    from barloc.inference import shipped_model, shipped_models

    model = REPO / "resources" / "models" / "localization"
    assert "localization" in shipped_models() and shipped_model("localization").resolve() == model.resolve()
    assert model.is_dir(), (
        "the shipped model is missing: python benchmarks/localization.py --cpu-full --save-model " + str(model)
    )
    files = {p.name: p.stat().st_size for p in model.iterdir()}
    assert {"model.ckpt", "model.json", "calibration.json", "MODEL_CARD.md"} <= set(files)
    assert sum(files.values()) <= 20e6
    meta = json.loads((model / "model.json").read_text())
    assert meta["kind"] == "multilabel" and len(meta["classes"]) == 10 and meta["n_train"] > 15000
    out = tmp_path / "calls.tsv"
    assert (
        run_cli(
            "--model",
            "localization",
            "--input",
            REPO / "resources" / "protein" / "query.fasta",
            "--out",
            out,
            "--quiet",
        )
        == 0
    )
    got = read_calls(out)
    assert len(got) == 300 and got["call"].str.len().gt(0).all()
    p = got[[f"p::{c}" for c in meta["classes"]]].to_numpy()
    assert ((p >= 0) & (p <= 1)).all() and len(set(got["call"])) > 3


def test_shipped_models_are_package_data():
    """Every file of every shipped model matches pyproject's package-data, so a wheel carries
    it and ``--model localization`` works after a plain ``pip install``."""
    import tomllib

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["barloc"]
    package = REPO / "src" / "barloc"
    shipped = {p.relative_to(package).as_posix() for p in (package / "trained").rglob("*") if p.is_file()}
    packaged = {p.relative_to(package).as_posix() for g in globs for p in package.glob(g) if p.is_file()}
    assert "trained/localization/model.ckpt" in shipped
    assert shipped - {s for s in shipped if ".partial/" in s} <= packaged


def test_a_local_folder_that_is_not_a_model_does_not_hide_the_shipped_one(tmp_path, monkeypatch):
    from barloc.inference import shipped_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "localization").mkdir()
    assert shipped_model("localization").resolve() == (REPO / "resources/models/localization").resolve()
    assert shipped_model("localization/") is not None
    (tmp_path / "localization" / "model.ckpt").write_bytes(b"")  # a model of the user's own: it wins
    assert shipped_model("localization") is None


def test_a_name_that_is_neither_a_path_nor_a_shipped_model_is_refused(tmp_path, capsys):
    assert run_cli("--model", "no_such_model", "--input", tmp_path / "q.fa", "--out", tmp_path / "o.tsv") != 0
    err = capsys.readouterr().err
    assert "no_such_model" in err and "shipped with barloc: localization" in err and "Traceback" not in err
