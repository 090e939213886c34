"""benchmarks/localization.py in quick mode on tiny real data: the partition protocol, the
composition floor, softmax versus sigmoid, and runs in pieces merged into one result."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from conftest import DEEPLOC_DEMO, REPO

LOCATIONS = [
    "Cytoplasm",
    "Nucleus",
    "Extracellular",
    "Cell membrane",
    "Mitochondrion",
    "Plastid",
    "Endoplasmic reticulum",
    "Lysosome/Vacuole",
    "Golgi apparatus",
    "Peroxisome",
]


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
    assert set(svs) >= {"all", "multi_location", "single_location"}
    assert svs["multi_location"]["softmax"]["mean_true_locations"] > 1
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
