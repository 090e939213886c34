"""Scale: wall time and peak memory of the fish workflow, of ``barloc predict`` and of the
localization model as the inputs grow, and the growth exponents (log-log slopes).

Inputs are SYNTHETIC, made from the bundled tuna BOLD export (resources/barcodes): each
synthetic project copies one real labelled record's row (so ingest labels it from the same
geography), draws 1-3 haplotypes of its barcode (point substitutions), and gives each of its
records that haplotype with further substitutions, an occasional 1-3 base indel and ends
trimmed by up to 30 bases. Proteins for the localization model are the bundled DeepLoc demo
sequences with 5% of residues substituted.

Each workflow run is ``snakemake --cores 2`` on the fish task of config/config.yaml with only
the reference and query paths changed and ``train.max_epochs`` fixed (--epochs). Peak RSS is
the largest single process's (GNU time's maximum resident set size over the process tree);
per-step figures are Snakemake's ``benchmark:`` files; ``train_epoch`` is the median epoch
seconds in train.log. Growth exponents are the slope of log(time) on log(records) from 10,000
to 100,000.

    python benchmarks/scale.py --out benchmarks/results/scale.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
BOLD = REPO / "resources" / "barcodes" / "tuna_bold_v4.tsv"
GEO = REPO / "resources" / "geo" / "country_basin.tsv"
DEEPLOC_DEMO = REPO / "resources" / "protein" / "deeploc2_demo.csv"
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
AMINO = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
EPOCH_LINE = re.compile(r"epoch \d+/\d+, .*?([\d.]+) s(?:,|$)")


def labelled_sources() -> tuple[pd.DataFrame, pd.Series]:
    """The bundled export's rows (as text, columns kept) whose barcode ingest labels, and their labels."""
    from barloc.config import check_config

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    check_config(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml", "config/config.yaml")
    from barloc.records import load_reference

    task = {**cfg["tasks"]["fish_origin"], "reference": str(BOLD)}
    rec = load_reference(task, str(GEO))
    rec = rec[rec["label"].notna()]
    raw = pd.read_csv(BOLD, sep="\t", dtype=str, keep_default_na=False, encoding="latin-1")
    raw = raw[raw["processid"].isin(rec["id"])].reset_index(drop=True)
    return raw, rec.set_index("id").loc[raw["processid"], "label"].reset_index(drop=True)


def mutate(seq: np.ndarray, rate: float, rng: np.random.Generator, alphabet: np.ndarray = BASES) -> np.ndarray:
    out = seq.copy()
    hits = np.flatnonzero(rng.random(len(out)) < rate)
    out[hits] = alphabet[rng.integers(0, len(alphabet), len(hits))]
    return out


def synthetic_barcode(hap: np.ndarray, rng: np.random.Generator) -> str:
    """A record of haplotype ``hap``: 0.3% substitutions, a 1-3 base indel in 10% of records,
    and each end trimmed by 0-30 bases."""
    s = mutate(hap, 0.003, rng)
    if rng.random() < 0.1:
        at, n = int(rng.integers(0, len(s))), int(rng.integers(1, 4))
        s = (
            np.delete(s, range(at, min(at + n, len(s))))
            if rng.random() < 0.5
            else np.insert(s, at, BASES[rng.integers(0, 4, n)])
        )
    a, b = int(rng.integers(0, 31)), int(rng.integers(0, 31))
    return s[a : max(a + 100, len(s) - b)].tobytes().decode()


def project_code(p: int) -> str:
    """SYN plus letters only: BOLD's project code is the processid before its first digit."""
    letters = ""
    for _ in range(4):
        p, r = divmod(p, 26)
        letters += chr(65 + r)
    return "SYN" + letters


def synthetic_references(n: int, seed: int) -> pd.DataFrame:
    """``n`` SYNTHETIC BOLD rows in projects of 5-150 records (about 40 on average)."""
    raw, _ = labelled_sources()
    rng = np.random.default_rng(seed)
    rows, p = [], 0
    while len(rows) < n:
        src = raw.iloc[int(rng.integers(0, len(raw)))]
        base = np.frombuffer(src["nucleotides"].upper().replace("-", "").encode(), dtype=np.uint8)
        base = np.where(np.isin(base, BASES), base, BASES[0]).astype(np.uint8)
        haps = [mutate(base, 0.004, rng) for _ in range(int(rng.integers(1, 4)))]
        size = int(min(150, max(5, rng.geometric(1 / 40))))
        code = project_code(p)
        for j in range(min(size, n - len(rows))):
            row = src.copy()
            row["processid"] = f"{code}{j + 1}-26"
            row["sampleid"] = row["recordID"] = f"{code}-{j + 1}"
            row["nucleotides"] = synthetic_barcode(haps[int(rng.integers(0, len(haps)))], rng)
            rows.append(row)
        p += 1
    return pd.DataFrame(rows).reset_index(drop=True)


def write_fasta_barcodes(path: Path, n: int, seed: int) -> None:
    """``n`` SYNTHETIC query barcodes, streamed to a FASTA file."""
    raw, _ = labelled_sources()
    seqs = [
        np.where(np.isin(b, BASES), b, BASES[0]).astype(np.uint8)
        for b in (np.frombuffer(s.upper().replace("-", "").encode(), dtype=np.uint8) for s in raw["nucleotides"])
    ]
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f">synq{i}\n{synthetic_barcode(seqs[int(rng.integers(0, len(seqs)))], rng)}\n")


def write_fasta_proteins(path: Path, n: int, seed: int) -> None:
    """``n`` SYNTHETIC proteins: bundled DeepLoc demo sequences with 5% of residues substituted."""
    seqs = pd.read_csv(DEEPLOC_DEMO)["Sequence"].tolist()
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for i in range(n):
            s = np.frombuffer(seqs[int(rng.integers(0, len(seqs)))].encode(), dtype=np.uint8)
            fh.write(f">synp{i}\n{mutate(s, 0.05, rng, AMINO).tobytes().decode()}\n")


def timed(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Run ``cmd`` under GNU time: wall seconds and peak RSS (MB) of its largest process."""
    stats = log.with_suffix(".time")
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(stats), *cmd], cwd=cwd, stdout=fh, stderr=fh)
    wall = time.monotonic() - t0
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed (rc {proc.returncode}); see {log}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(int(stats.read_text().split()[-1]) / 1024, 1)}


def workflow_config(ref: Path, query: Path, epochs: int, encoder: dict | None, batch_size: int | None = None) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    task = cfg["tasks"]["fish_origin"]
    task.update(reference=str(ref), query=str(query))
    task["train"]["max_epochs"] = epochs
    if batch_size:
        task["train"]["batch_size"] = batch_size
    if encoder:
        task["encoder"] = {**task["encoder"], **encoder}
    cfg["tasks"] = {"fish_origin": task}
    cfg["geo_table"] = str(GEO)
    return cfg


def run_workflow(
    n: int, work: Path, epochs: int, seed: int, encoder: dict | None = None, batch_size: int | None = None
) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    ref, query = work / "reference.tsv", work / "query.fasta"
    synthetic_references(n, seed).to_csv(ref, sep="\t", index=False)
    write_fasta_barcodes(query, 1000, seed + 1)
    (work / "config").mkdir(exist_ok=True)
    cfg = workflow_config(ref, query, epochs, encoder, batch_size)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = timed(
        ["snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", "--quiet", "all"], work, work / "snakemake.log"
    )
    steps = {}
    for f in sorted((work / "results" / "benchmarks").rglob("*.tsv")):
        b = pd.read_csv(f, sep="\t").iloc[0]
        steps[f.stem] = {"wall_s": round(float(b["s"]), 2), "peak_rss_mb": round(float(b["max_rss"]), 1)}
    epochs_s = [
        float(m.group(1)) for m in EPOCH_LINE.finditer((work / "results/logs/fish_origin/train.log").read_text())
    ]
    metrics = json.loads((work / "results" / "fish_origin" / "metrics.json").read_text())
    model = json.loads((work / "results" / "fish_origin" / "model.json").read_text())
    return out | {
        "references": int(model["n_reference"]),
        "epochs": epochs,
        "steps": steps,
        "train_epoch_s": statistics.median(epochs_s) if epochs_s else None,
        "test_balanced_accuracy": metrics["calibrated"]["balanced_accuracy"],
    }


def run_predict(model_dir: Path, n: int, work: Path, seed: int, proteins: bool = False) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    fasta = work / f"query_{n}.fasta"
    (write_fasta_proteins if proteins else write_fasta_barcodes)(fasta, n, seed)
    out = timed(
        [
            shutil.which("barloc") or "barloc",
            "predict",
            "--model",
            str(model_dir / "model.ckpt"),
            "--input",
            str(fasta),
            "--out",
            str(work / f"calls_{n}.tsv"),
            "--quiet",
        ],
        work,
        work / f"predict_{n}.log",
    )
    fasta.unlink()
    return out | {"records_per_s": round(n / out["wall_s"], 1)}


def slope(points: dict, key: str, lo: int = 10_000, hi: int = 100_000) -> float | None:
    """log-log slope of ``key`` between sizes ``lo`` and ``hi`` (None if either is missing)."""
    a, b = points.get(str(lo), {}), points.get(str(hi), {})
    if not a.get(key) or not b.get(key):
        return None
    return round(math.log(b[key] / a[key]) / math.log(hi / lo), 3)


def nearest_recall(model_dir: Path, n: int, seed: int) -> dict:
    """How often the index's distance equals a full comparison's: on ``n`` SYNTHETIC query
    barcodes (no group), and on ``n`` of the model's own references scored as training scores
    them (outside their own project, whose references often fill the nearest lists)."""
    import torch

    from barloc.data import EncodedDataset, group_ids
    from barloc.io.fasta import iter_sequences
    from barloc.modelio import load_model

    model, meta = load_model(model_dir / "model.ckpt", model_dir / "model.json")
    enc = model.encoder
    fasta = model_dir.parent / "recall.fasta"
    write_fasta_barcodes(fasta, n, seed)
    queries = EncodedDataset([s for _, s, _ in iter_sequences(fasta, "dna", "fasta")], meta.encoder, "dna")
    fasta.unlink()
    records = pd.read_parquet(model_dir / "records.parquet")
    records = records[records["role"] == "reference"].sample(n, random_state=seed)
    labelled = EncodedDataset(
        records["sequence"].tolist(), meta.encoder, "dna", groups=group_ids(records, meta.reference_groups)
    )
    out = {"queries": n, "nprobe": enc.nprobe, "lists": int(len(enc.list_class))}
    for name, ds in (("query", queries), ("reference_outside_own_project", labelled)):
        nprobe = enc.nprobe
        t0 = time.monotonic()
        indexed = enc.distances(ds.features, ds.groups)[:, : enc.n_classes]
        t_index = time.monotonic() - t0
        enc.nprobe = 1 << 30
        t0 = time.monotonic()
        exact = enc.distances(ds.features, ds.groups)[:, : enc.n_classes]
        t_exact = time.monotonic() - t0
        enc.nprobe = nprobe
        same = torch.isclose(indexed, exact, atol=1e-5)
        out[name] = {
            "exact_fraction": round(float(same.float().mean()), 4),
            "calls_same_nearest_class": round(float((indexed.argmin(1) == exact.argmin(1)).float().mean()), 4),
            "mean_excess_distance": round(float((indexed - exact).mean()), 6),
            "index_s": round(t_index, 2),
            "exhaustive_s": round(t_exact, 2),
        }
    return out


def plot(result: dict, path: Path) -> None:
    """Log-log plot of each step's seconds against records, with a slope-1 guide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wf = {int(n): r for n, r in result["workflow"].items() if "steps" in r}
    pr = {int(n): r for n, r in result["predict"].items() if n.isdigit()}
    series = {
        "workflow, ingest to report": (list(wf), [r["wall_s"] for r in wf.values()]),
        "ingest": (list(wf), [r["steps"]["ingest"]["wall_s"] for r in wf.values()]),
        "train (cross-fitting, all models)": (list(wf), [r["steps"]["train"]["wall_s"] for r in wf.values()]),
        "one training epoch": (list(wf), [r["train_epoch_s"] for r in wf.values()]),
        "barloc predict": (list(pr), [r["wall_s"] for r in pr.values()]),
    }
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o", label=name)
    lo, hi = 1000, max(max(x) for x, _ in series.values())
    ax.plot([lo, hi], [0.05, 0.05 * hi / lo], ls=":", color="grey", label="slope 1 (linear)")
    ax.set(xscale="log", yscale="log", xlabel="records (references; query barcodes for predict)", ylabel="seconds")
    ax.set_title("barloc on 2 CPU cores, synthetic barcodes", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--predict-sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--proteins", type=int, default=100_000)
    ap.add_argument("--k8", type=int, default=100_000, help="references for the k = 8 workflow run (0: skip)")
    ap.add_argument(
        "--try-sizes",
        type=int,
        nargs="*",
        default=[300_000],
        help="workflow sizes run last, after predict; one that fails (memory, time) is recorded as failed",
    )
    ap.add_argument("--epochs", type=int, default=5, help="train.max_epochs of every workflow run")
    ap.add_argument("--batch-size", type=int, help="train.batch_size of every workflow run (default: the config's)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/barloc_scale"))
    ap.add_argument("--localization-model", type=Path, default=REPO / "results" / "localization")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--plot", type=Path, help="log-log plot (PNG) of the figures")
    ap.add_argument("--plot-only", type=Path, metavar="JSON", help="only draw --plot from a result JSON")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(args.plot_only.read_text()), args.plot)
        return
    shutil.rmtree(args.work, ignore_errors=True)
    t_start = time.monotonic()
    result = {"command": "python benchmarks/" + " ".join([Path(__file__).name, *sys.argv[1:]]), "cores": os.cpu_count()}
    result["workflow"] = {}

    def workflow(n: int, name: str, encoder: dict | None = None) -> dict:
        return run_workflow(n, args.work / name, args.epochs, args.seed, encoder, args.batch_size)

    for n in args.sizes:
        result["workflow"][str(n)] = workflow(n, f"workflow_{n}")
        print(n, result["workflow"][str(n)], flush=True)
    if args.k8:
        result["workflow_k8"] = {str(args.k8): workflow(args.k8, f"workflow_k8_{args.k8}", {"k": 8})}
        print("k8", result["workflow_k8"], flush=True)
    biggest = args.work / f"workflow_{max(args.sizes)}" / "results" / "fish_origin"
    result["nearest_index"] = nearest_recall(biggest, 2000, args.seed + 7)
    result["predict"] = {"model_references": result["workflow"][str(max(args.sizes))]["references"]}
    for n in args.predict_sizes:
        result["predict"][str(n)] = run_predict(biggest, n, args.work / "predict", args.seed + 2)
        print("predict", n, result["predict"][str(n)], flush=True)
    if args.proteins and (args.localization_model / "model.ckpt").exists():
        result["localization_predict"] = {
            "model": str(args.localization_model.relative_to(REPO)),
            str(args.proteins): run_predict(
                args.localization_model, args.proteins, args.work / "proteins", args.seed, True
            ),
        }
    for n in args.try_sizes:
        try:
            result["workflow"][str(n)] = workflow(n, f"workflow_{n}")
        except SystemExit as failed:
            result["workflow"][str(n)] = {"failed": str(failed)}
        print(n, result["workflow"][str(n)], flush=True)
        shutil.rmtree(args.work / f"workflow_{n}", ignore_errors=True)
    wf = result["workflow"]
    ingest = {n: {"wall_s": r.get("steps", {}).get("ingest", {}).get("wall_s")} for n, r in wf.items()}
    epoch = {n: {"s": r.get("train_epoch_s")} for n, r in wf.items()}
    result["growth_exponent"] = {
        "ingest": slope(ingest, "wall_s"),
        "train_epoch": slope(epoch, "s"),
        "predict": slope(result["predict"], "wall_s"),
        "workflow": slope(wf, "wall_s"),
    }
    pr = result["predict"]
    if "10000" in pr and "1000000" in pr:
        result["predict_memory_ratio_1M_vs_10k"] = round(pr["1000000"]["peak_rss_mb"] / pr["10000"]["peak_rss_mb"], 3)
    result["seconds"] = round(time.monotonic() - t_start)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.plot:
        plot(result, args.plot)


if __name__ == "__main__":
    main()
