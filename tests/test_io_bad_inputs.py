"""The table of bad inputs in docs/bad-inputs.md, each case run for real.

Every row of the doc is produced by running its case here (in a scratch directory, with
relative file names, so the messages read as a user's would). The doc must match what the
code says today; after changing a message, regenerate it with

    python tests/test_io_bad_inputs.py

User mistakes reach the user two ways: ``barloc validate FILE`` (exit 2 and one
``barloc: error:`` line) and the workflow's steps, whose scripts go through
``barloc.runtime.run_step`` (the same line, exit 2, and the rule's log). Config mistakes are
caught when the Snakefile loads the config.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import yaml

from barloc.config import rule_config, with_defaults

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "bad-inputs.md"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BARLOC = Path(sys.executable).parent / "barloc"

COI = "AACCTTATATTTAATTTTTGGTGCCTGAGCCGGAATAGTAGGCACTGCCCTAAGCCTACTCATCCGAGCAGAACTTAGCCAACCCGGCGCCC"
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVV"
LABELS = "id\tlabel\nfish1\tAtlantic\nfish2\tPacific\nfish3\tAtlantic\n"
FASTA = f">fish1 Thunnus obesus\n{COI}\n>fish2\n{COI[:60]}\n>fish3\n{COI[10:]}\n"
# One column per class: 0/1 rows are sure labels, fish2's row is a probability vector.
SOFT_LABELS = "id\tAtlantic\tPacific\tIndian\nfish1\t1\t0\t0\nfish2\t0.7\t0.3\t0\nfish3\t0\t0\t1\n"


@dataclass
class Case:
    """One row: the files to write, how the user meets them, and what must be said."""

    title: str
    files: dict[str, str | bytes]
    via: str  # "validate" (argv after `barloc validate`), "ingest" (task config) or "config"
    args: list[str] | dict = field(default_factory=list)
    accepted: bool = False
    warns: bool = False  # accepted, and says so in a warning
    expect: tuple[str, ...] = ()  # must appear in the message (errors) or a warning (accepted)


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def _task(**extra) -> dict:
    return {
        "kind": "multiclass",
        "alphabet": "dna",
        "reference": "ref.fasta",
        "format": "fasta",
        "labels": "labels.tsv",
        "min_class_size": 1,
        **extra,
    }


CASES: list[Case] = [
    Case("Missing file", {}, "validate", ["missing.fasta"], expect=("missing.fasta", "file not found")),
    Case("Empty file", {"empty.fasta": ""}, "validate", ["empty.fasta"], expect=("empty.fasta", "file is empty")),
    Case("Only blank lines", {"blank.fasta": "\n  \r\n\n"}, "validate", ["blank.fasta"], expect=("file is empty",)),
    Case(
        "Binary file (an image named .fasta)",
        {"photo.fasta": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)},
        "validate",
        ["photo.fasta"],
        expect=("photo.fasta", "binary data"),
    ),
    Case(
        "Text that is not a sequence file",
        {"notes.fasta": "sample sheet for run 7\nplate A\n"},
        "validate",
        ["notes.fasta"],
        expect=("notes.fasta", "line 1", "not a FASTA or FASTQ"),
    ),
    Case(
        "FASTA header without a sequence",
        {"ref.fasta": f">fish1\n{COI}\n>fish2\n>fish3\n{COI}\n"},
        "validate",
        ["ref.fasta"],
        expect=("ref.fasta", "line 3", "'fish2'", "no sequence"),
    ),
    Case(
        "FASTA header without an id",
        {"ref.fasta": f">\n{COI}\n"},
        "validate",
        ["ref.fasta"],
        expect=("line 1", "no id"),
    ),
    Case(
        "Invalid character in a sequence",
        {"ref.fasta": f">fish1\n{COI}\n>fish2\nACGTACGTTAGC\nACGJT\n"},
        "validate",
        ["ref.fasta", "--alphabet", "dna"],
        expect=("ref.fasta", "'fish2'", "'J'", "position 16"),
    ),
    Case(
        "Stop codon inside a protein",
        {"prot.fasta": f">P1\n{PROTEIN[:30]}*{PROTEIN[30:]}*\n"},
        "validate",
        ["prot.fasta", "--alphabet", "protein"],
        expect=("'P1'", "position 31", "only at the end"),
    ),
    Case(
        "Protein where DNA is expected",
        {"ref.fasta": f">fish1\n{COI}\n>P1\n{PROTEIN}\n"},
        "validate",
        ["ref.fasta", "--alphabet", "dna"],
        expect=("'P1'", "looks like a protein"),
    ),
    Case(
        "DNA where protein is expected",
        {"prot.fasta": f">P1\n{PROTEIN}\n>fish1\n{COI}\n"},
        "validate",
        ["prot.fasta", "--alphabet", "protein"],
        expect=("'fish1'", "looks like DNA"),
    ),
    Case(
        "Lowercase and soft-masked sequences",
        {"ref.fasta": f">fish1\n{COI.lower()}\n>fish2\nACGTacgtnnACGT\n"},
        "validate",
        ["ref.fasta"],
        accepted=True,
        expect=("records:          2",),
    ),
    Case(
        "Windows line endings (CRLF)",
        {"ref.fasta": FASTA.replace("\n", "\r\n")},
        "validate",
        ["ref.fasta"],
        accepted=True,
        expect=("records:          3",),
    ),
    Case(
        "Classic Mac line endings (CR only)",
        {"ref.fasta": FASTA, "labels.tsv": LABELS.replace("\n", "\r")},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        accepted=True,
        expect=("labelled records: 3",),
    ),
    Case(
        "Truncated gzip",
        {"ref.fasta.gz": _gz(FASTA)[:-20]},
        "validate",
        ["ref.fasta.gz"],
        expect=("ref.fasta.gz", "truncated or corrupt"),
    ),
    Case(
        "Duplicate ids",
        {"ref.fasta": FASTA + f">fish2\n{COI}\n"},
        "validate",
        ["ref.fasta"],
        expect=("'fish2'", "duplicate id", "line 3", "line 7"),
    ),
    Case(
        "FASTQ quality line of the wrong length",
        {"reads.fastq": "@r1\nACGTACGT\n+\nIIII\n"},
        "validate",
        ["reads.fastq"],
        expect=("'r1'", "quality length 4 differs from sequence length 8"),
    ),
    Case(
        "Sequence ids missing from the labels sheet",
        {"ref.fasta": FASTA, "labels.tsv": LABELS.replace("fish2\tPacific\n", "")},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        expect=("labels.tsv", "'fish2'", "not in the labels sheet"),
    ),
    Case(
        "Labels for ids not in the FASTA",
        {"ref.fasta": FASTA, "labels.tsv": LABELS + "fish9\tIndian\n"},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        accepted=True,
        warns=True,
        expect=("1 id(s) in the labels sheet have no sequence",),
    ),
    Case(
        "Labels sheet saved as UTF-16 by Excel",
        {"ref.fasta": FASTA, "labels.tsv": LABELS.encode("utf-16")},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        expect=("labels.tsv", "UTF-16"),
    ),
    Case(
        "Comma-separated labels sheet named .tsv",
        {"ref.fasta": FASTA, "labels.tsv": LABELS.replace("\t", ",")},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        expect=("labels.tsv", "must be named .csv"),
    ),
    Case(
        "Unknown label (not in the task's classes)",
        {"ref.fasta": FASTA, "labels.tsv": LABELS.replace("fish3\tAtlantic", "fish3\tAtlantis")},
        "ingest",
        _task(classes=["Atlantic", "Pacific", "Indian"]),
        expect=("labels.tsv", "'fish3'", "unknown label 'Atlantis'"),
    ),
    Case(
        "Labels sheet with probability rows (soft targets)",
        {"ref.fasta": FASTA, "labels.tsv": SOFT_LABELS},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        accepted=True,
        expect=("soft targets:     1",),
    ),
    Case(
        "Soft target with a negative probability",
        {"ref.fasta": FASTA, "labels.tsv": SOFT_LABELS.replace("0.7\t0.3\t0", "-0.1\t1.1\t0")},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        expect=("labels.tsv", "line 3", "'fish2'", "cannot be negative"),
    ),
    Case(
        "Soft target written as percentages",
        {"ref.fasta": FASTA, "labels.tsv": SOFT_LABELS.replace("0.7\t0.3\t0", "70\t30\t0")},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        expect=("labels.tsv", "line 3", "'fish2'", "write 0.7"),
    ),
    Case(
        "Soft target that does not sum to 1",
        {"ref.fasta": FASTA, "labels.tsv": SOFT_LABELS.replace("0.7\t0.3\t0", "0.6\t0.3\t0")},
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        expect=("labels.tsv", "line 3", "'fish2'", "sum to 0.9"),
    ),
    Case(
        "Probability column that is not one of the task's classes",
        {"ref.fasta": FASTA, "labels.tsv": SOFT_LABELS.replace("Indian", "Atlantis")},
        "ingest",
        _task(classes=["Atlantic", "Pacific", "Indian"]),
        expect=("labels.tsv", "line 1", "'Atlantis'"),
    ),
    Case(
        "A 'label' column mixed with per-class columns",
        {
            "ref.fasta": FASTA,
            "labels.tsv": "id\tlabel\tAtlantic\tPacific\nfish1\tAtlantic\t\t\nfish2\t\t0.7\t0.3\nfish3\tAtlantic\t\t\n",
        },
        "validate",
        ["ref.fasta", "--labels", "labels.tsv"],
        expect=("labels.tsv", "line 1", "'label' column and also"),
    ),
    Case(
        "Soft targets in a multilabel task",
        {"ref.fasta": FASTA, "labels.tsv": SOFT_LABELS},
        "ingest",
        _task(kind="multilabel"),
        expect=("labels.tsv", "'fish2'", "only a multiclass task"),
    ),
    Case(
        "BOLD file with neither a v4 nor a v5 header",
        {"bold.tsv": f"sampleid\tmarker\tsequence\nX1\tCOI-5P\t{COI}\n"},
        "validate",
        ["bold.tsv"],
        expect=("bold.tsv", "not a BOLD v4 or v5", "markercode", "marker_code"),
    ),
    Case(
        "BOLD row with a missing tab",
        {"bold.tsv": f"processid\tmarkercode\tnucleotides\nAB1-19\tCOI-5P\t{COI}\nAB2-19\t{COI}\n"},
        "validate",
        ["bold.tsv"],
        expect=("line 3", "row has 2 tab-separated fields"),
    ),
    Case(
        "Sequence longer than max_length, on_long: clip (default)",
        {"ref.fasta": FASTA, "labels.tsv": LABELS},
        "ingest",
        _task(max_length=85),
        accepted=True,
        warns=True,
        expect=("clipped 1 of 3 sequences longer than max_length 85",),
    ),
    Case(
        "Sequence longer than max_length, on_long: refuse",
        {"ref.fasta": FASTA, "labels.tsv": LABELS},
        "ingest",
        _task(max_length=80, on_long="refuse"),
        expect=("ref.fasta", "'fish1'", f"{len(COI)} bases long", "max_length 80"),
    ),
    Case(
        "Query set with zero usable records",
        {"ref.fasta": FASTA, "labels.tsv": LABELS, "query.fasta": "\n"},
        "ingest",
        _task(query="query.fasta"),
        expect=("query.fasta", "file is empty"),
    ),
    Case(
        "Query file of the wrong format",
        {"ref.fasta": FASTA, "labels.tsv": LABELS, "query.fasta": f"@q1\n{COI[:8]}\n+\nIIIIIIII\n"},
        "ingest",
        _task(query="query.fasta", query_format="fasta"),
        expect=("query.fasta", "looks like FASTQ"),
    ),
    Case(
        "Typo in a config key",
        {},
        "config",
        {"max_lenght": 800},
        expect=("config/config.yaml", "unknown key 'max_lenght' (did you mean 'max_length'?)"),
    ),
    Case(
        "Config value out of range",
        {},
        "config",
        {"on_long": "truncate"},
        expect=("config/config.yaml", "'truncate' is not one of ['clip', 'refuse']"),
    ),
]


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_case(case: Case, where: Path) -> tuple[int, str]:
    """Run ``case`` in ``where`` (the working directory) -> (exit code, what the user reads).

    For an error that is the ``barloc: error:`` line; for an accepted input, the summary or
    warning lines that the case expects.
    """
    for name, content in case.files.items():
        (where / name).write_bytes(content.encode() if isinstance(content, str) else content)
    old = Path.cwd()
    os.chdir(where)
    try:
        if case.via == "validate":
            code, out, err = _validate(case.args)
        elif case.via == "ingest":
            code, out, err = _ingest(case.args)
        else:
            code, out, err = _config(case.args)
    finally:
        os.chdir(old)
    if code != 0:
        return code, err.strip()
    shown = [line.strip(" -") for line in out.splitlines() if any(e in line for e in case.expect)]
    return code, "\n".join(shown)


def _validate(args: list[str]) -> tuple[int, str, str]:
    from barloc.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", *args])
    return code, out.getvalue(), err.getvalue()


def _ingest(cfg: dict) -> tuple[int, str, str]:
    """The workflow's ingest rule, through run_step exactly as workflow/scripts/ingest.py does
    (minus the log-file setup, which would take over this process's logging)."""
    import torch

    from barloc import runtime
    from barloc.steps import ingest

    smk = NS(
        log=[],
        threads=torch.get_num_threads(),
        input=NS(),
        output=NS(records="results/records.parquet"),
        params=NS(task="fish_origin", cfg=rule_config(with_defaults(cfg), "ingest")),
    )
    collect = _Warnings()
    logging.getLogger("barloc").addHandler(collect)
    err = io.StringIO()
    real_setup = runtime.setup_logging
    runtime.setup_logging = lambda *a, **k: None
    try:
        with contextlib.redirect_stderr(err):
            runtime.run_step(smk, ingest.run)
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        runtime.setup_logging = real_setup
        logging.getLogger("barloc").removeHandler(collect)
    if code == 0:
        assert Path("results/records.parquet").is_file()
    else:
        assert not Path("results").exists() or not any(Path("results").iterdir()), "partial output left"
    return code, "\n".join(collect.messages), err.getvalue()


def _config(task_extra: dict) -> tuple[int, str, str]:
    """The Snakefile's config check on the demo config with ``task_extra`` in fish_origin."""
    from barloc.config import check_config
    from barloc.errors import InputError

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["tasks"]["fish_origin"].update(task_extra)
    try:
        check_config(config, SCHEMA, "config/config.yaml")
    except InputError as err:
        return 1, "", f"barloc: error: {err}"  # workflow/rules/common.smk: sys.exit(f"barloc: error: {err}")
    return 0, "", ""


# --- the doc -------------------------------------------------------------------------------

HEADER = """\
# Bad inputs and what barloc says

Each row is a real run: `tests/test_io_bad_inputs.py` writes the input, runs it, and checks
that this page shows exactly the message the code gives (regenerate the page with
`python tests/test_io_bad_inputs.py` after changing a message).

- **validate** — `barloc validate FILE [--labels SHEET] [--alphabet …]`, the check to run
  before a workflow. A user mistake exits with code 2 and one line on stderr naming the file,
  the line and record where known, and the problem; `barloc --debug validate …` shows the
  traceback instead.
- **ingest** — the workflow's first step (`snakemake`), reading the files named in
  `config/config.yaml`. A user mistake ends the rule with exit code 2 and the same one line
  on stderr (the message is also in `results/logs/{task}/ingest.log`); no `records.parquet`,
  and no partial or temporary file, is left behind. Warnings go to stderr and that log.
- **config** — checked against `workflow/schemas/config.schema.yaml` when Snakemake starts,
  before any rule runs (exit code 1 from Snakemake).

Sequences longer than a task's `max_length` are handled by `on_long`: `clip` (the default)
keeps the first `max_length` bases of DNA (barcodes are read from their 5' end) and both ends
of a protein (half from the N-terminus, half from the C-terminus, where targeting signals
sit); `refuse` stops at the first over-long record.

| input | where | result | what the user sees |
|---|---|---|---|
"""


def _cell(text: str) -> str:
    return "<br>".join(f"`{line}`" for line in text.replace("|", "\\|").splitlines()) or "(nothing)"


def render(results: list[tuple[Case, int, str]]) -> str:
    rows = []
    for case, code, message in results:
        if code == 0:
            result = "accepted, with a warning" if case.warns else "accepted"
        else:
            result = f"refused (exit {code})"
        rows.append(f"| {case.title} | {case.via} | {result} | {_cell(message)} |")
    return HEADER + "\n".join(rows) + "\n"


def run_all(base: Path) -> list[tuple[Case, int, str]]:
    results = []
    for i, case in enumerate(CASES):
        where = base / f"case{i:02d}"
        where.mkdir(parents=True)
        code, message = run_case(case, where)
        results.append((case, code, message))
    return results


# --- tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[tuple[Case, int, str]]:
    return run_all(tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.title for c in CASES])
def test_case_is_handled_as_documented(results, index):
    case, code, message = results[index]
    if case.accepted:
        assert code == 0, message
    else:
        assert code == (1 if case.via == "config" else 2), message
        assert message.startswith("barloc: error: ") and "\n" not in message, message
        assert "Traceback" not in message
    for word in case.expect:
        assert word in message, (word, message)


def test_doc_matches_real_runs(results):
    assert DOC.read_text() == render(results), (
        "docs/bad-inputs.md is out of date: run `python tests/test_io_bad_inputs.py`"
    )


SUBPROCESS_CASES = ["Invalid character in a sequence", "Truncated gzip", "BOLD file with neither a v4 nor a v5 header"]


@pytest.mark.parametrize("title", SUBPROCESS_CASES)
def test_console_script_prints_one_line_and_exits_2(tmp_path, results, title):
    case, _, documented = next(r for r in results if r[0].title == title)
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    proc = subprocess.run(
        [str(BARLOC), "validate", *case.args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [documented]
    if title != SUBPROCESS_CASES[0]:
        return
    debug = subprocess.run(
        [str(BARLOC), "--debug", "validate", *case.args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "barloc.errors.InputError" in debug.stderr


def test_workflow_script_exits_2_with_one_line(tmp_path):
    """The ingest rule's own script, run as Snakemake runs it (a `snakemake` object in its
    globals), on a refused over-long sequence."""
    case = next(c for c in CASES if c.title.endswith("on_long: refuse"))
    for name, content in case.files.items():
        (tmp_path / name).write_text(content)
    script = REPO / "workflow" / "scripts" / "ingest.py"
    code = (
        "import runpy, sys, json; from types import SimpleNamespace as NS\n"
        "from barloc.config import rule_config, with_defaults\n"
        "cfg = rule_config(with_defaults(json.loads(sys.argv[1])), 'ingest')\n"
        "smk = NS(log=['ingest.log'], threads=1, input=NS(), output=NS(records='results/records.parquet'),\n"
        "         params=NS(task='t', cfg=cfg))\n"
        "runpy.run_path(sys.argv[2], init_globals={'snakemake': smk})\n"
    )
    import json

    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(case.args), str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("barloc: error: ")]
    assert len(error_lines) == 1 and "'fish1'" in error_lines[0] and "max_length 80" in error_lines[0]
    assert "max_length 80" in (tmp_path / "ingest.log").read_text()
    assert not (tmp_path / "results" / "records.parquet").exists()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        DOC.write_text(render(run_all(Path(tmp))))
    print(f"wrote {DOC.relative_to(REPO)}")
