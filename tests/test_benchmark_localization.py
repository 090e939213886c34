"""benchmarks/localization.py in quick mode on tiny real data: the partition protocol, the
composition floor, softmax and sparsemax versus sigmoid, the --cpu-full preset, and runs in
pieces merged into one result."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEEPLOC_DEMO, REPO

from barloc.io.deeploc import DEEPLOC_LOCATIONS

LOCATIONS = list(DEEPLOC_LOCATIONS)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_localization", REPO / "benchmarks" / "localization.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """24 real DeepLoc proteins a partition and a CNN small enough to train in a second."""
    where = tmp_path_factory.mktemp("loc_bench")
    demo = pd.read_csv(DEEPLOC_DEMO, dtype=str, keep_default_na=False)
    data = where / "deeploc_120.csv"
    demo.groupby("Partition", sort=True).head(24).to_csv(data, index=False)
    config = where / "tiny.yaml"
    config.write_text(
        "seed: 1\ntrainer: {accelerator: cpu, devices: 1, precision: 32-true, threads: 1}\n"
        "tasks:\n  localization:\n    kind: multilabel\n    alphabet: protein\n"
        f"    reference: {data}\n    format: deeploc\n"
        "    encoder: {type: cnn, embed_dim: 4, channels: 4, kernel_sizes: [3, 9], max_len: 120,"
        " attention_layers: 1, attention_heads: 2}\n"
        "    loss: {type: bce, pos_weight: true}\n"
        "    train: {max_epochs: 9, batch_size: 32, lr: 0.003, patience: 3, monitor: val_loss}\n"
        "    calibration: {method: bcts}\n"
    )
    return where, config


def test_composition_features_are_compositions():
    feats = _bench().composition_features(["ACDA", "MKX" + "L" * 60])
    assert feats.shape == (2, 460)
    assert np.allclose(feats[:, :20].sum(1), 1) and np.allclose(feats[:, 20:420].sum(1), 1)
    assert feats[0, 0] == 0.5  # A is half of ACDA
    assert feats[1, 420 + 9] == pytest.approx(47 / 49)  # first 50 residues: M, K, (X skipped), 47 L
    assert feats[1, 440 + 9] == 1.0  # last 50: all L


def test_rotation_uses_the_next_partition_for_thresholds():
    val, train = _bench().rotation(["0", "1", "2", "3", "4"], "4")
    assert val == "0" and train == ["1", "2", "3"]


def test_quick_run_in_pieces_merges_to_the_whole_protocol(tiny, tmp_path):
    where, config = tiny
    bench = _bench()
    a, b, merged = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "merged.json"
    common = ["--config", str(config), "--quick", "--max-epochs", "2", "--seed", "3", "--membrane-head"]
    ra = bench.main(["--out", str(a), "--partitions", "0", "1", *common])
    bench.main(["--out", str(b), "--partitions", "2", "3", "4", *common])
    out = bench.main(["--merge", str(a), str(b), "--out", str(merged)])
    assert json.loads(merged.read_text())["test_partitions"] == ["0", "1", "2", "3", "4"]

    assert ra["settings"]["quick"] and "QUICK RUN" in ra["settings"]["note"]
    assert ra["settings"]["max_epochs"] == 2 and ra["settings"]["n_proteins"] == 120
    for section in ("barloc", "floor"):
        s = out[section]
        assert set(s["mcc"]) == set(LOCATIONS)
        for key in ("micro_f1", "macro_f1", "jaccard", "accuracy"):
            per = [out["partitions"][k][section][key] for k in out["partitions"]]
            assert 0 <= s[key] <= 1 and s[key] == pytest.approx(np.mean(per), abs=1e-4)
    p = out["partitions"]["4"]
    assert (p["threshold_partition"], p["train_partitions"], p["n_test"]) == ("0", ["1", "2", "3"], 24)
    svs = out["softmax_vs_sigmoid"]
    assert set(svs) >= {"all", "multi_location", "single_location", "softmax_train_seconds"}
    assert svs["multi_location"]["softmax"]["mean_true_locations"] > 1
    assert svs["sparsemax_train_seconds"] > 0
    for subset in ("all", "multi_location", "single_location"):
        assert set(svs[subset]) == {"sigmoid", "softmax", "sparsemax"}
        sm = svs[subset]["sparsemax"]
        assert 0 <= sm["mean_zero_probabilities"] < len(LOCATIONS) and 0 <= sm["share_several_nonzero"] <= 1
        assert 0 <= sm["micro_f1"] <= 1 and set(sm["mcc"]) == set(LOCATIONS)
    assert set(out["extra_heads"]["membrane"]) == {"mcc", "accuracy", "f1"}
    assert out["partitions"]["4"]["extra_heads"]["membrane"]["n"] == 24
    assert out["device"].startswith("cpu") and out["peak_gpu_mem_gb"] is None
    assert out["train_seconds"] > 0 and out["train_proteins_per_second"] > 0 and out["predict_proteins_per_second"] > 0

    with pytest.raises(SystemExit, match="more than one file"):
        bench.main(["--merge", str(a), str(a), "--out", str(tmp_path / "dup.json")])


def test_floor_only_needs_no_training(tiny, tmp_path):
    where, config = tiny
    out = _bench().main(
        ["--config", str(config), "--floor-only", "--partitions", "1", "--out", str(tmp_path / "f.json")]
    )
    assert out["barloc"] is None and out["predict_proteins_per_second"] is None
    assert 0 <= out["floor"]["micro_f1"] <= 1 and out["partitions"]["1"]["threshold_partition"] == "2"


def test_cpu_full_preset_arguments():
    bench = _bench()
    args = bench.parse_args(["--cpu-full"])
    assert (args.device, args.partitions, args.threads) == ("cpu", ["4"], 2)
    assert args.out == REPO / "benchmarks" / "results" / "localization_cpu_full.json"
    assert args.per_partition is None and not args.quick and not args.floor_only
    args = bench.parse_args(["--cpu-full", "--threads", "1", "--out", "x.json", "--data", "d.csv"])
    assert (args.threads, str(args.out), str(args.data)) == (1, "x.json", "d.csv")
    for clash in (
        ["--quick"],
        ["--per-partition", "10"],
        ["--partitions", "3"],
        ["--floor-only"],
        ["--device", "cuda"],
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(["--cpu-full", *clash])
    with pytest.raises(SystemExit):  # --out may be left out with --cpu-full only
        bench.parse_args(["--quick"])


def test_cpu_full_runs_every_protein_on_partition_4_with_the_sparsemax_head(tiny, tmp_path):
    """The preset on the tiny set: no subsampling, test partition 4, the floor and the three heads,
    the top-level keys the other result files carry; the default --out moved into tmp_path. Then
    --heads-from: a rerun with other loss settings reuses those heads, and one with another seed
    is refused."""
    where, config = tiny
    bench = _bench()
    bench.CPU_FULL = {**bench.CPU_FULL, "out": tmp_path / "results" / "localization_cpu_full.json"}
    out = bench.main(["--cpu-full", "--config", str(config), "--threads", "1", "--max-epochs", "2"])
    saved = json.loads((tmp_path / "results" / "localization_cpu_full.json").read_text())
    for key in (
        "barloc",
        "floor",
        "locations_below_floor_mcc",
        "train_seconds",
        "predict_proteins_per_second",
        "softmax_vs_sigmoid",
    ):
        assert saved[key] is not None and key in out
    st = saved["settings"]
    assert st["cpu_full"] and not st["quick"] and st["per_partition"] is None and st["n_proteins"] == 120
    assert st["partitions"] == ["4"] and saved["test_partitions"] == ["4"] and "CPU FULL" in st["note"]
    assert saved["device"].startswith("cpu (") and "1 threads" in saved["device"]
    p = saved["partitions"]["4"]
    assert (p["n_train"], p["n_threshold"], p["n_test"]) == (72, 24, 24)
    sm = p["softmax_vs_sigmoid"]["all"]["sparsemax"]
    assert sm["n"] == 24 and 0 <= sm["mean_zero_probabilities"] < len(LOCATIONS)
    assert saved["softmax_vs_sigmoid"]["all"]["sparsemax"]["micro_f1"] == pytest.approx(sm["micro_f1"], abs=1e-4)

    # --heads-from: a run that changes only loss settings takes those heads and scores its own sigmoid
    earlier = tmp_path / "results" / "localization_cpu_full.json"
    term = tmp_path / "term.yaml"
    term.write_text(config.read_text().replace("pos_weight: true}", "pos_weight: true, softmax_weight: 1.0}"))
    again = bench.main(
        ["--cpu-full", "--config", str(term), "--threads", "1", "--max-epochs", "2", "--out", str(tmp_path / "b.json")]
        + ["--heads-from", str(earlier)]
    )
    for subset in ("all", "multi_location", "single_location"):
        for head in ("softmax", "sparsemax"):
            assert again["partitions"]["4"]["softmax_vs_sigmoid"][subset][head] == p["softmax_vs_sigmoid"][subset][head]
    sig = again["partitions"]["4"]["softmax_vs_sigmoid"]["all"]["sigmoid"]
    assert sig["micro_f1"] == pytest.approx(again["barloc"]["micro_f1"], abs=1e-4)
    assert again["settings"]["heads_from"] == str(earlier) and again["settings"]["loss"]["softmax_weight"] == 1.0
    with pytest.raises(SystemExit, match="seed differ"):
        bench.main(
            ["--cpu-full", "--config", str(term), "--seed", "7", "--out", str(tmp_path / "c.json")]
            + ["--heads-from", str(earlier)]
        )


def test_sparsemax_head_loss_leaves_rows_without_locations_out():
    import torch

    from barloc.losses import sparsemax_loss

    bench = _bench()
    x = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    loss = bench._sparsemax_rows_loss(x, y)
    assert loss.item() == pytest.approx(
        sparsemax_loss(x[[0, 2]], torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])).item()
    )
    assert bench._sparsemax_rows_loss(x, torch.zeros(3, 3)).item() == 0.0
    z = bench.sparsity(np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))
    assert z == {"mean_zero_probabilities": 1.5, "share_several_nonzero": 0.5}


def test_saved_model_predicts_the_scored_calls(tiny, tmp_path):
    """--save-model writes the scored sigmoid model as barloc predict loads it (a directory is
    enough), with the shipped recipe's options (composition, BLOSUM62 start, residue masking,
    the softmax term, auto calibration): its calls on the test partition give the micro-F1 the benchmark reported."""
    from barloc.inference import predict_file

    where, config = tiny
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        config.read_text()
        .replace("attention_heads: 2}", "attention_heads: 2, composition: true, embed_init: blosum62}")
        .replace("monitor: val_loss}", "monitor: val_loss, mask_residues: 0.1}")
        .replace("method: bcts", "method: auto")
        .replace("pos_weight: true}", "pos_weight: true, softmax_weight: 1.0}")
    )
    bench = _bench()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "priors.json").write_text("{}")  # a stale file of an older model is not kept
    out = tmp_path / "quick.json"
    bench.main(
        ["--quick", "--no-softmax", "--config", str(recipe), "--out", str(out), "--threads", "1"]
        + ["--max-epochs", "2", "--save-model", str(model_dir)]
    )
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == ["MODEL_CARD.md", "calibration.json", "model.ckpt", "model.json"]
    assert not (tmp_path / "model.partial").exists()
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["task"] == "localization" and meta["optim"]["mask_residues"] == 0.1
    assert meta["encoder"]["composition"] and meta["encoder"]["embed_init"] == "blosum62"
    card = (model_dir / "MODEL_CARD.md").read_text()
    result = json.loads(out.read_text())
    assert f"--save-model {model_dir}" in card and f"| {result['barloc']['micro_f1']:.3f} |" in card
    assert "`bcts`" in card and str(recipe) in card and "plus 1 × a softmax cross-entropy" in card
    assert meta["loss"]["softmax_weight"] == 1.0
    # the term's model calls by its logits' softmax ratio, as scored
    assert json.loads((model_dir / "calibration.json").read_text())["call_ratio_on"] == "logits"
    assert result["barloc"]["call_ratio_on"] == "logits" and "call ratio of the logits' softmax" in card
    data = pd.read_csv(where / "deeploc_120.csv", dtype=str, keep_default_na=False)
    test = data[data["Partition"] == "4"]
    fasta = tmp_path / "test.fasta"
    fasta.write_text("".join(f">{a}\n{s}\n" for a, s in zip(test["ACC"], test["Sequence"])))
    calls = tmp_path / "calls.tsv"
    predict_file(model_dir, fasta, calls, progress=False)
    got = pd.read_csv(calls, sep="\t", dtype=str, keep_default_na=False).set_index("id")
    truth = {
        a: {LOCATIONS[j] for j, v in enumerate(row) if float(v) > 0}
        for a, row in zip(test["ACC"], test[LOCATIONS].to_numpy())
    }
    tp = sum(len(set(got.loc[a, "call"].split(";")) & t) for a, t in truth.items())
    called = sum(len(got.loc[a, "call"].split(";")) for a in truth)
    true = sum(len(t) for t in truth.values())
    micro = 2 * tp / (called + true)
    assert micro == pytest.approx(result["barloc"]["micro_f1"], abs=1e-4)


def test_the_card_names_a_shipped_model_by_name():
    from barloc.inference import shipped_root

    bench = _bench()
    assert bench.model_ref(shipped_root() / "localization.partial") == "localization"
    assert bench.model_ref(Path("/elsewhere/mymodel.partial")) == "/elsewhere/mymodel"
    args = bench.parse_args(["--cpu-full", "--save-model", str(bench.REPO / "resources/models/localization")])
    assert args.save_model == shipped_root() / "localization"  # through the link, not over it


@pytest.mark.parametrize(
    "argv",
    [
        ["--floor-only", "--out", "x.json"],
        ["--quick", "--membrane-head", "--out", "x.json"],
        ["--quick", "--partitions", "3", "4", "--out", "x.json"],
        ["--out", "x.json"],  # all five partitions
    ],
)
def test_save_model_needs_one_trained_location_model(argv, capsys):
    with pytest.raises(SystemExit):
        _bench().parse_args([*argv, "--save-model", "m"])
    assert "--save-model" in capsys.readouterr().err
