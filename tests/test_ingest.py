"""The ingest step stops bad input with one clear error and leaves no output behind."""

from __future__ import annotations

import gzip
from types import SimpleNamespace as NS

import pandas as pd
import pytest

from barloc.config import rule_config, with_defaults
from barloc.errors import InputError
from barloc.steps import ingest

GOOD_FASTA = ">s1 synthetic\nACGTACGTTAGC\n>s2\nACGTTTGACCAR\n>s3\nTTGACCANNACG\n"
GOOD_LABELS = "id\tlabel\ts1\tAtlantic\ns2\tPacific\ns3\tAtlantic\n".replace("\ts1", "\ns1")


def task(tmp_path, fasta: bytes | str = GOOD_FASTA, labels: str = GOOD_LABELS, gz: bool = False, **extra) -> dict:
    """A synthetic FASTA + labels-sheet task; ``fasta`` is written as given (bytes or text)."""
    ref = tmp_path / ("ref.fasta.gz" if gz else "ref.fasta")
    data = fasta.encode() if isinstance(fasta, str) else fasta
    ref.write_bytes(gzip.compress(data) if gz else data)
    sheet = tmp_path / "labels.tsv"
    sheet.write_text(labels)
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "reference": str(ref),
        "format": "fasta",
        "labels": str(sheet),
        "min_class_size": 1,
        **extra,
    }


def run(tmp_path, cfg: dict):
    out = tmp_path / "results" / "records.parquet"
    ingest.run(NS(), NS(records=str(out)), NS(task="t", cfg=rule_config(with_defaults(cfg), "ingest")))
    return out


def test_good_input_is_ingested(tmp_path):
    out = run(tmp_path, task(tmp_path))
    df = pd.read_parquet(out)
    assert df["id"].tolist() == ["s1", "s2", "s3"] and df["label"].tolist() == ["Atlantic", "Pacific", "Atlantic"]
    assert (df["role"] == "reference").all()


def truncated_gzip(tmp_path):
    cfg = task(tmp_path, gz=True)
    path = tmp_path / "ref.fasta.gz"
    path.write_bytes(path.read_bytes()[:-12])
    return cfg


CASES = {
    "empty file": (lambda p: task(p, fasta=""), ["ref.fasta", "empty"]),
    "non-FASTA file": (lambda p: task(p, fasta="just some notes\nnot a sequence file\n"), ["ref.fasta", "not a FASTA"]),
    "invalid character": (lambda p: task(p, fasta=">s1\nACGTJACG\n"), ["ref.fasta", "s1", "position 5"]),
    "duplicate ids": (lambda p: task(p, fasta=GOOD_FASTA + ">s2\nACGT\n"), ["ref.fasta", "s2", "duplicate"]),
    "labels sheet misses ids": (lambda p: task(p, labels="id\tlabel\ns1\tAtlantic\n"), ["labels.tsv", "s2"]),
    "unknown label": (
        lambda p: task(p, classes=["Atlantic", "Pacific"], labels=GOOD_LABELS.replace("s3\tAtlantic", "s3\tAtlantis")),
        ["labels.tsv", "Atlantis"],
    ),
    "truncated gzip": (truncated_gzip, ["ref.fasta.gz", "truncated"]),
    "query with zero records": (lambda p: task(p, query=str(_empty(p)), query_format="fasta"), ["query.fasta"]),
}


def _empty(p):
    q = p / "query.fasta"
    q.write_text("")
    return q


@pytest.mark.parametrize("case", CASES)
def test_bad_input_stops_with_a_clear_error_and_no_output(tmp_path, case):
    make, words = CASES[case]
    with pytest.raises(InputError) as err:
        run(tmp_path, make(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)
    assert not (tmp_path / "results" / "records.parquet").exists()
    assert not list((tmp_path / "results").glob("*")) if (tmp_path / "results").exists() else True


# --- max_length / on_long ------------------------------------------------------------------

LONG_DNA = "ACGT" * 10 + "TTTTGGGGCC"  # 50 bases; the last 10 show which end was kept
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVV"


def test_long_dna_is_clipped_to_its_first_bases_with_a_warning(tmp_path, caplog):
    fasta = f">s1\n{LONG_DNA}\n>s2\nACGTTTGACCAR\n>s3\n{LONG_DNA[::-1]}\n"
    out = run(tmp_path, task(tmp_path, fasta=fasta, max_length=40))
    df = pd.read_parquet(out).set_index("id")
    assert df.loc["s1", "sequence"] == LONG_DNA[:40]
    assert df.loc["s2", "sequence"] == "ACGTTTGACCAR"
    assert df.loc["s3", "sequence"] == LONG_DNA[::-1][:40]
    assert "clipped 2 of 3 sequences longer than max_length 40 (kept the first 40 bases" in caplog.text


def test_long_protein_keeps_both_ends(tmp_path, caplog):
    fasta = f">p1\n{PROTEIN}\n>p2\nMKV\n>p3\nMKTAYIAKQR\n"
    labels = "id\tlabel\np1\tNucleus\np2\tCytoplasm\np3\tNucleus\n"
    cfg = task(tmp_path, fasta=fasta, labels=labels, alphabet="protein", kind="multilabel", max_length=10)
    df = pd.read_parquet(run(tmp_path, cfg)).set_index("id")
    assert df.loc["p1", "sequence"] == PROTEIN[:5] + PROTEIN[-5:]
    assert df.loc["p2", "sequence"] == "MKV" and df.loc["p3", "sequence"] == "MKTAYIAKQR"
    assert "clipped 1 of 3" in caplog.text and "first 5 and last 5 residues" in caplog.text


def test_long_query_is_clipped_too(tmp_path):
    query = tmp_path / "query.fasta"
    query.write_text(f">q1\n{LONG_DNA}\n")
    cfg = task(tmp_path, max_length=12, query=str(query), query_format="fasta")
    df = pd.read_parquet(run(tmp_path, cfg)).set_index("id")
    assert df.loc["q1", "sequence"] == LONG_DNA[:12] and df.loc["q1", "role"] == "query"


def test_long_sequence_refused_when_configured(tmp_path):
    fasta = GOOD_FASTA + f">s4\n{LONG_DNA}\n"
    labels = GOOD_LABELS + "s4\tPacific\n"
    with pytest.raises(InputError) as err:
        run(tmp_path, task(tmp_path, fasta=fasta, labels=labels, max_length=40, on_long="refuse"))
    assert str(err.value) == (
        f"{tmp_path / 'ref.fasta'}, record 's4': sequence is 50 bases long, over max_length 40 "
        "(1 such record(s); set on_long: clip to clip them instead)"
    )
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_no_max_length_keeps_every_residue(tmp_path):
    fasta = f">s1\n{LONG_DNA * 40}\n>s2\nACGT\n>s3\nACGT\n"
    df = pd.read_parquet(run(tmp_path, task(tmp_path, fasta=fasta)))
    assert df["sequence"].str.len().max() == 2000


# --- no partial outputs ---------------------------------------------------------------------


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_ingest_failing_mid_write_leaves_no_output_and_no_temp_file(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    real = pq.write_table

    def half_then_crash(table, where, *args, **kwargs):
        real(table, where, *args, **kwargs)
        data = open(where, "rb").read()
        open(where, "wb").write(data[: len(data) // 2])  # a torn write, as a full disk leaves it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half_then_crash)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path, task(tmp_path))
    assert _leftovers(tmp_path / "results") == []


def test_a_failed_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    from barloc import runtime

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(runtime.os, "replace", refuse)
    with pytest.raises(PermissionError):
        run(tmp_path, task(tmp_path))
    assert _leftovers(tmp_path / "results") == []


def test_split_failing_mid_write_keeps_the_previous_output_whole(tmp_path, monkeypatch):
    from barloc.steps import split

    records = run(tmp_path, task(tmp_path))
    target = tmp_path / "results" / "splits.tsv"
    target.write_text("id\tsplit\nold\ttrain\n")  # a finished output from an earlier run

    real = pd.DataFrame.to_csv

    def crash_after_writing(self, where, *args, **kwargs):
        real(self.head(1), where, *args, **kwargs)
        raise KeyboardInterrupt  # the user pressed Ctrl-C half-way

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash_after_writing)
    params = NS(task="t", seed=1, cfg={"split": {"method": "given", "test_groups": ["x"]}})
    monkeypatch.setattr(
        split, "assign_splits", lambda *a: pd.DataFrame({"id": ["s1", "s2"], "split": ["train", "val"]})
    )
    with pytest.raises(KeyboardInterrupt):
        split.run(NS(records=str(records)), NS(splits=str(target)), params)
    assert target.read_text() == "id\tsplit\nold\ttrain\n"
    assert _leftovers(tmp_path / "results") == ["records.parquet", "splits.tsv"]


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    out = run(tmp_path, task(tmp_path))
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


WRITERS = {"to_parquet", "to_csv", "write_text", "write_bytes", "save", "savefig", "write_table", "dump"}


def unsafe_writes(text: str) -> list[str]:
    """Output-writing calls whose target is not a path bound by ``with atomic_path(...) as x``."""
    import ast

    problems = []
    for fn in ast.walk(ast.parse(text)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        atomic_names = {
            item.optional_vars.id
            for node in ast.walk(fn)
            if isinstance(node, ast.With)
            for item in node.items
            if isinstance(item.context_expr, ast.Call)
            and getattr(item.context_expr.func, "id", None) == "atomic_path"
            and isinstance(item.optional_vars, ast.Name)
        }
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            if call.func.attr not in WRITERS:
                continue
            if isinstance(call.func.value, ast.Name) and call.func.value.id in atomic_names:
                continue  # tmp.write_text(...)
            target = call.args[0] if call.args else None
            if isinstance(target, ast.Name) and target.id in atomic_names:
                continue  # df.to_csv(tmp)
            problems.append(f"line {call.lineno}: {ast.unparse(call)[:80]}")
    return problems


def test_the_atomic_write_check_catches_a_direct_write():
    bad = "def run(inputs, outputs, params):\n    df.to_csv(outputs.splits, sep='\\t')\n"
    good = "def run(inputs, outputs, params):\n    with atomic_path(outputs.splits) as tmp:\n        df.to_csv(tmp)\n"
    assert unsafe_writes(bad) == ["line 2: df.to_csv(outputs.splits, sep='\\t')"]
    assert unsafe_writes(good) == []


def test_every_step_writes_only_through_atomic_path():
    """Each output-writing call in src/barloc/steps/*.py targets a path bound by
    ``with atomic_path(...) as tmp``; everything else goes through a helper that does
    (artifacts.write_json / write_parquet / write_tsv, modelio.save_model, report.build_report)."""
    from pathlib import Path

    steps = Path(__file__).resolve().parents[1] / "src" / "barloc" / "steps"
    problems = [f"{src.name} {p}" for src in sorted(steps.glob("*.py")) for p in unsafe_writes(src.read_text())]
    assert problems == [], "steps writing outside atomic_path: " + "; ".join(problems)
