"""Command line: `barloc <command> ...`. Input problems end as one `barloc: error:` line, exit 2.

Add a command by writing `add_arguments(parser)` and `handler(args) -> int` and registering
them in COMMANDS.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from barloc import __version__
from barloc.errors import InputError

EXIT_INPUT_ERROR = 2
_TOP_LABELS = 15
_TOP_GROUPS = 5


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


class _Collect(logging.Handler):
    """Keeps warnings from the readers so `validate` can print them in its summary."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# --- validate ---------------------------------------------------------------------------


def _add_validate(parser: argparse.ArgumentParser) -> None:
    from barloc.config import task_default
    from barloc.io import FORMATS

    parser.add_argument("file", help="BOLD TSV, FASTA/FASTQ (plain or gzip) or DeepLoc CSV")
    parser.add_argument("--format", choices=FORMATS, help="default: guessed from the content")
    parser.add_argument(
        "--labels",
        metavar="SHEET",
        help="TSV/CSV sheet of id -> label (and group); overrides labels in the file",
    )
    parser.add_argument(
        "--alphabet",
        choices=("dna", "protein"),
        help="default: dna for bold, protein for deeploc, else guessed from the first records",
    )
    markers = task_default("markers")
    parser.add_argument(
        "--markers",
        default=",".join(markers) if isinstance(markers, list) else markers,
        help="BOLD markers to keep, comma-separated, or 'all' (default: %(default)s)",
    )
    parser.add_argument(
        "--label",
        default=task_default("label"),
        help="BOLD only: ocean_basin (from geography, as ingest does) or a BOLD column such as species "
        "(default: %(default)s)",
    )
    parser.add_argument("--basin-level", choices=("basin", "subbasin"), default=task_default("basin_level"))
    parser.add_argument("--geo-table", help="country/province -> basin TSV (default: the bundled one)")


def _parse_markers(text: str) -> list[str] | None:
    if text.strip().lower() == "all":
        return None
    return [m.strip() for m in text.split(",") if m.strip()]


def _label_counts(labels: pd.Series) -> Counter[str]:
    counts: Counter[str] = Counter()
    for label in labels.dropna():
        counts.update(str(label).split(";"))
    return counts


def _run_validate(args: argparse.Namespace) -> int:
    from barloc.io import detect_format
    from barloc.io.fasta import guess_alphabet
    from barloc.records import load_reference

    collect = _Collect()
    pkg_log = logging.getLogger("barloc")
    pkg_log.addHandler(collect)
    try:
        fmt = args.format or detect_format(args.file)
        alphabet = args.alphabet or {"bold": "dna", "deeploc": "protein"}.get(fmt)
        if alphabet is None:
            alphabet = guess_alphabet(args.file, fmt)
        # The same reading and labelling as the workflow's ingest step.
        markers = _parse_markers(args.markers)
        cfg = {
            "reference": args.file,
            "format": fmt,
            "alphabet": alphabet,
            "labels": args.labels,
            "markers": "all" if markers is None else markers,
            "label": args.label,
            "basin_level": args.basin_level,
        }
        df = load_reference(cfg, args.geo_table)
    finally:
        pkg_log.removeHandler(collect)

    warnings = list(collect.messages)
    n = len(df)
    labelled = int(df["label"].notna().sum())
    counts = _label_counts(df["label"])
    multilabel = bool(df["label"].dropna().astype(str).str.contains(";").any())
    groups = df["group"].dropna()
    lengths = df["sequence"].str.len()

    out = [
        f"file:             {args.file}",
        f"format:           {fmt}" + (f" (BOLD v{df['bold_version'].iloc[0]})" if fmt == "bold" else ""),
        f"alphabet:         {alphabet}",
        f"records:          {n}",
        f"labelled records: {labelled} ({100 * labelled / n:.1f}%)" + (" (multi-label)" if multilabel else ""),
    ]
    if "label_probs" in df and df["label_probs"].notna().any():
        n_soft = int(df["label_probs"].notna().sum())
        out.append(f"soft targets:     {n_soft} (probability rows; counted below by their most probable class)")
    if "label_rule" in df:
        rules = df["label_rule"].value_counts()
        out.append("labelled by:      " + ", ".join(f"{r} {c}" for r, c in rules.items()))
    if counts:
        out.append(f"labels:           {len(counts)} classes")
        for label, count in counts.most_common(_TOP_LABELS):
            out.append(f"  {label:<30} {count}")
        if len(counts) > _TOP_LABELS:
            out.append(f"  ... and {len(counts) - _TOP_LABELS} more")
        rare = [label for label, c in counts.items() if c < 5]
        if rare:
            warnings.append(f"{len(rare)} label(s) have fewer than 5 records: {', '.join(sorted(rare)[:5])}")
    else:
        warnings.append("no record has a label: this file can only be used as query samples")
    if len(groups):
        top = ", ".join(f"{g} ({c})" for g, c in groups.value_counts().head(_TOP_GROUPS).items())
        out.append(f"groups:           {groups.nunique()} (largest: {top})")
        if groups.nunique() == 1:
            warnings.append("all records are in one group: grouped splits are impossible")
    else:
        out.append("groups:           none")
    out.append(f"sequence length:  min {int(lengths.min())}, median {int(lengths.median())}, max {int(lengths.max())}")
    out.append(f"warnings:         {len(warnings) or 'none'}")
    out.extend(f"  - {w}" for w in warnings)
    print("\n".join(out))
    return 0


# --- predict ----------------------------------------------------------------------------


def _add_predict(parser: argparse.ArgumentParser) -> None:
    from barloc.config import task_default
    from barloc.inference import DEFAULT_CHUNK

    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="results/{task}/model.ckpt, a model directory, or the name of a model shipped with barloc "
        "(localization: DeepLoc 2.0 locations, see its MODEL_CARD.md); "
        "model.json and calibration.json must sit beside the checkpoint",
    )
    parser.add_argument("--input", required=True, metavar="FILE", help="FASTA or FASTQ, plain or gzip, any size")
    parser.add_argument(
        "--out",
        required=True,
        metavar="TSV",
        help="calls table (same columns as the workflow's calls.tsv, so membrane_prob and "
        "membrane_call too when the model has the membrane head)",
    )
    parser.add_argument("--format", choices=("fasta", "fastq"), help="default: detected from the first record")
    priors = parser.add_mutually_exclusive_group()
    priors.add_argument(
        "--priors",
        metavar="TSV",
        help="known query priors, a TSV with columns class and prior; corrects the probabilities to them",
    )
    priors.add_argument(
        "--estimate-priors",
        action="store_true",
        help="estimate the query priors by EM over the whole input and correct to them "
        "(two passes; memory grows by 4 bytes per record and class)",
    )
    parser.add_argument(
        "--prior-strength",
        type=float,
        default=task_default("prior_shift")["prior_strength"],
        metavar="N",
        help="with --estimate-priors: MAP-EM pseudo-samples at the training priors (default: %(default)s, plain EM)",
    )
    parser.add_argument(
        "--uncertain-below",
        type=float,
        default=None,
        metavar="P",
        help=f"multiclass: flag calls whose probability is below P (default: {task_default('uncertain_below')}); "
        "multilabel models use their calibrated per-label thresholds",
    )
    parser.add_argument(
        "--batch-size", type=int, default=128, metavar="N", help="sequences per forward pass (default: 128)"
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK,
        metavar="N",
        help=f"records read, predicted and written at a time (default: {DEFAULT_CHUNK})",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda", "auto"),
        help="where the model runs (default: cpu; auto: cuda when available)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def _run_predict(args: argparse.Namespace) -> int:
    from barloc import inference

    if args.uncertain_below is not None and not 0.0 <= args.uncertain_below <= 1.0:
        raise InputError(None, f"--uncertain-below must be between 0 and 1, not {args.uncertain_below}")
    device = args.device
    if device != "cpu":
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif not torch.cuda.is_available():
            raise InputError(None, "--device cuda was given but no CUDA device is available")
    if not args.debug:
        logging.basicConfig(level=logging.WARNING, format="barloc: %(levelname)s: %(message)s")
    result = inference.predict_file(
        args.model,
        args.input,
        args.out,
        fmt=args.format,
        priors=args.priors,
        estimate_priors=args.estimate_priors,
        uncertain_below=args.uncertain_below,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        prior_strength=args.prior_strength,
        device=device,
        progress=False if args.quiet else None,
    )
    if not args.quiet:
        print(inference.summary(result, args.out), file=sys.stderr)
    return 0


COMMANDS: dict[str, Command] = {
    "validate": Command(
        help="check an input file and summarise its records, labels and groups",
        add_arguments=_add_validate,
        handler=_run_validate,
    ),
    "predict": Command(
        help="calibrated calls for a FASTA/FASTQ file with a trained model, without Snakemake",
        add_arguments=_add_predict,
        handler=_run_predict,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="barloc",
        description="Calibrated DNA-barcode origin and protein-localization classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"barloc {__version__}")
    parser.add_argument("--debug", action="store_true", help="log details and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the return value is the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command].handler(args)
    except BrokenPipeError:  # `barloc validate ... | head` closed the pipe early: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except InputError as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # exactly one line, whatever the file held
        print(f"barloc: error: {message}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
