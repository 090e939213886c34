"""The configuration: checked against the schema (the one home of every key and its default),
defaults filled in from it, cross-field rules checked, and each rule's share of a task block.

Each workflow rule receives only the keys it reads (:data:`RULE_KEYS`), so that Snakemake's
params trigger reruns exactly the rules from a changed key's first reader on.
"""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from barloc.errors import InputError

#: The schema ships inside the package (workflow/schemas/config.schema.yaml links to it), so
#: that barloc predict and the library fill defaults after a plain pip install too.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"

#: What training reads of a task (fit also records max_length and on_long in model.json for barloc predict).
_TRAINING = ("kind", "alphabet", "classes", "encoder", "loss", "train", "max_length", "on_long")

#: Task keys each rule reads ("a.b" for one key of a block). The report rule's keys are listed
#: too; the trainer block and the seed are passed separately where used.
RULE_KEYS: dict[str, tuple[str, ...]] = {
    "ingest": (
        *("kind", "alphabet", "reference", "format", "labels", "markers", "label", "basin_level", "classes"),
        *("min_class_size", "query", "query_format", "max_length", "on_long"),
    ),
    "split": ("split",),
    "train": (*_TRAINING, "membrane_head"),
    # ablation trains one model per loss on one fold split and writes no model.json, so it reads no length limit
    "ablation": (
        *("kind", "alphabet", "classes", "encoder", "loss", "calibration.method"),
        *(
            f"train.{k}"
            for k in ("max_epochs", "batch_size", "lr", "weight_decay", "patience", "monitor", "mask_residues")
        ),
        *("train.early_stopping", "train.augment"),
    ),
    "predict": ("train.batch_size",),
    "calibrate": (
        *("calibration.method", "calibration.ece_bins", "calibration.call_ratio"),
        *("prior_shift.method", "prior_shift.target_priors"),
    ),
    "prior_shift": ("prior_shift", "uncertain_below"),
    "evaluate": ("calibration.ece_bins",),
    "report": ("title", "description", "nouns", "uncertain_below", "reference", "labels", "query"),
}


@functools.cache
def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _explain(err: jsonschema.ValidationError) -> str:
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        hints = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{where}: " + "; ".join(hints) + f"; allowed keys: {', '.join(allowed)}"
    return f"{where}: {err.message}"


def _resolve(node: dict, root: dict) -> dict:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def fill_defaults(instance: Any, node: dict, root: dict) -> Any:
    """``instance`` with every absent key that the schema gives a ``default`` filled in, at any
    depth (objects under ``properties`` and ``additionalProperties``; ``if``/``then``/``else``
    in ``allOf`` for defaults that depend on a sibling, such as the encoder type's dropout).
    An object key with no default and no value stays absent."""
    node = _resolve(node, root)
    if not isinstance(instance, dict):
        return instance
    props = node.get("properties", {})
    for key, sub in props.items():
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            instance[key] = fill_defaults(instance[key], sub, root)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in [k for k in instance if k not in props]:
            instance[key] = fill_defaults(instance[key], extra, root)
    for rule in node.get("allOf", []):
        if "if" in rule:
            branch = (
                rule.get("then") if jsonschema.Draft202012Validator(rule["if"]).is_valid(instance) else rule.get("else")
            )
            if branch:
                fill_defaults(instance, branch, root)
    return instance


#: largest k-mer MLP (first layer with AdamW's two moments and a gradient, plus one dense
#: batch of profiles) a config may ask for; see :func:`kmer_encoder_bytes`
KMER_ENCODER_MAX_BYTES = 8 * 2**30


def kmer_encoder_bytes(enc: dict, batch_size: int) -> int:
    """float32 bytes a k-mer MLP needs that grow with 4^k (``type: kmer``, or ``nearest`` with
    ``hidden > 0``; 0 otherwise): its first layer (4^k x hidden, or the head's 4^k x classes
    with hidden 0, counted as 4^k x 16) four times over (weights, gradient, two AdamW moments)
    and a dense batch of profiles."""
    kind = enc.get("type")
    if "k" not in enc or not (kind == "kmer" or (kind == "nearest" and enc.get("hidden", 0) > 0)):
        return 0
    width = 4 ** int(enc["k"])
    return 4 * width * (4 * (int(enc.get("hidden", 256)) or 16) + int(batch_size))


def cross_checks(config: dict) -> list[str]:
    """Rules that span several keys, which a JSON schema says poorly: one line a problem. A rule
    whose keys a (partial) task block lacks is not checked, so a rule's share of a block passes."""
    from barloc.calibrate import BIAS_METHODS, offset_undoes_loss  # calibrate reads defaults from here

    problems = []
    for name, task in config.get("tasks", {}).items():
        kind, alphabet, fmt = task.get("kind"), task.get("alphabet"), task.get("format")
        enc = task.get("encoder", {})
        where = f"tasks.{name}"
        if enc.get("type") == "nearest" and (kind != "multiclass" or alphabet != "dna"):
            problems.append(
                f"{where}.encoder.type: nearest compares DNA k-mer profiles for a softmax head: "
                "it needs kind: multiclass and alphabet: dna"
            )
        kmer_bytes = kmer_encoder_bytes(enc, task.get("train", {}).get("batch_size", 32))
        if kmer_bytes > KMER_ENCODER_MAX_BYTES:
            problems.append(
                f"{where}.encoder: a k-mer MLP at k = {enc['k']} reads 4^{enc['k']} = {4 ** enc['k']:,} features, "
                f"about {kmer_bytes / 2**30:.0f} GiB for its first layer, optimiser state and a dense batch "
                f"(limit {KMER_ENCODER_MAX_BYTES / 2**30:.0f} GiB): lower k, hidden or train.batch_size, or use "
                "type: nearest with hidden: 0, whose memory grows with the k-mers present, not with 4^k"
            )
        if task.get("membrane_head") and (kind not in (None, "multilabel") or fmt not in (None, "deeploc")):
            problems.append(
                f"{where}.membrane_head: needs kind: multilabel and format: deeploc (the DeepLoc CSV's Membrane column)"
            )
        if fmt == "deeploc" and alphabet != "protein":
            problems.append(f"{where}.alphabet: a DeepLoc CSV holds proteins: set alphabet: protein")
        if fmt == "bold" and alphabet != "dna":
            problems.append(f"{where}.alphabet: a BOLD export holds DNA barcodes: set alphabet: dna")
        if enc.get("embed_init") == "blosum62" and (alphabet != "protein" or enc.get("type", "cnn") != "cnn"):
            problems.append(
                f"{where}.encoder.embed_init: BLOSUM62 starts a cnn encoder's amino-acid embedding; "
                "it needs encoder.type: cnn and alphabet: protein"
            )
        cnn_only = [key for key in ("dilations", "terminal_pool") if enc.get(key)]
        if cnn_only and enc.get("type", "cnn") != "cnn":
            problems.append(
                f"{where}.encoder.{cnn_only[0]}: shapes a cnn encoder's convolutions and pooling; set encoder.type: cnn"
            )
        if enc.get("terminal_pool") and enc.get("max_len") and enc["terminal_pool"] > enc["max_len"] // 2:
            problems.append(
                f"{where}.encoder.terminal_pool: {enc['terminal_pool']} is more than half of max_len "
                f"({enc['max_len']}), so a clipped sequence's C-terminal window would cross into its N-terminal half"
            )
        if task.get("train", {}).get("mask_residues") and enc.get("type", "cnn") != "cnn":
            problems.append(
                f"{where}.train.mask_residues: masks the residues a cnn encoder reads; set encoder.type: cnn"
            )
        if task.get("train", {}).get("augment", {}).get("copies") and alphabet not in (None, "dna"):
            problems.append(f"{where}.train.augment: augmentation alters DNA barcodes; it is for alphabet: dna")
        loss = task.get("loss", {})
        if kind == "multiclass" and loss.get("type") == "bce":
            problems.append(
                f"{where}.loss.type: bce is for sigmoid heads (kind: multilabel); use cross_entropy or focal"
            )
        if kind == "multiclass" and loss.get("softmax_weight"):
            problems.append(
                f"{where}.loss.softmax_weight: adds a softmax term to sigmoid heads (kind: multilabel); "
                "a multiclass head is a softmax already"
            )
        method = task.get("calibration", {}).get("method")
        if (
            kind != "multiclass"
            and not offset_undoes_loss("multilabel", loss)
            and method not in (None, "auto", *BIAS_METHODS)
        ):
            problems.append(
                f"{where}.calibration.method: {method} keeps the weighting offset as the only bias, "
                "but loss.softmax_weight shifts each label's logit by its own amount: use bcts (Platt scaling) or auto"
            )
        pcfg = task.get("prior_shift", {})
        if pcfg.get("method") == "known" and "target_priors" not in pcfg:
            problems.append(f"{where}.prior_shift: method known needs target_priors")
        if pcfg.get("target_priors") == "equal" and kind not in (None, "multiclass"):
            problems.append(
                f"{where}.prior_shift.target_priors: equal is for a softmax (multiclass) task; "
                "give each label's prevalence instead"
            )
        split = task.get("split", {})
        if split.get("method") == "given" and not split.get("test_groups"):
            problems.append(f"{where}.split: method given needs test_groups")
        if split["method"] == "grouped" and split["test_fold"] >= split["n_folds"]:
            problems.append(f"{where}.split.test_fold: {split['test_fold']} is not a fold of 0..{split['n_folds'] - 1}")
        heads, chans = enc.get("attention_heads"), enc.get("channels", 0) * len(enc.get("kernel_sizes", []))
        if enc.get("type") == "cnn" and enc.get("attention_layers") and heads and chans % heads:
            problems.append(
                f"{where}.encoder.attention_heads: {heads} does not divide channels x number of kernel_sizes ({chans})"
            )
    return problems


def check_config(config: dict, schema_path: str | Path = SCHEMA_PATH, source: str = "config") -> dict:
    """Validate ``config`` in place: raise InputError listing every schema violation and every
    cross-field problem, one per line, most specific first; fill in the schema's defaults."""
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise InputError(source, "invalid configuration: " + " | ".join(_explain(e) for e in errors))
    fill_defaults(config, schema, schema)
    problems = cross_checks(config)
    if problems:
        raise InputError(source, "invalid configuration: " + " | ".join(problems))
    return config


def with_defaults(task: dict, name: str = "task") -> dict:
    """A copy of one task block with the schema's defaults filled in and the cross-field rules
    checked, for callers that build a task in code (benchmarks, tests, cross-validation)
    rather than from a checked config."""
    schema = load_schema()
    filled = fill_defaults(copy.deepcopy(task), schema["$defs"]["task"], schema)
    problems = cross_checks({"tasks": {name: filled}})
    if problems:
        raise InputError(None, "invalid task: " + " | ".join(problems))
    return filled


def block_defaults(block: str, values: dict | None) -> dict:
    """A copy of one task block (``encoder``, ``loss``, ...) with the schema's defaults filled in."""
    schema = load_schema()
    return fill_defaults(copy.deepcopy(dict(values or {})), schema["$defs"]["task"]["properties"][block], schema)


def task_default(key: str):
    """The schema's default of one task key, nested defaults filled in (e.g. the whole
    ``prior_shift`` block, or ``uncertain_below``)."""
    schema = load_schema()
    return fill_defaults({}, schema["$defs"]["task"], schema)[key]


def trainer_defaults(trainer: dict | None = None) -> dict:
    """A copy of a ``trainer`` block with the schema's defaults filled in."""
    schema = load_schema()
    return fill_defaults(copy.deepcopy(trainer or {}), schema["properties"]["trainer"], schema)


def rule_config(task: dict, rule: str) -> dict:
    """The part of a (checked) task block that ``rule`` reads (:data:`RULE_KEYS`), nested as in the block."""
    out: dict = {}
    for key in RULE_KEYS[rule]:
        block, _, sub = key.partition(".")
        if block not in task:
            continue
        if sub:
            if sub in task[block]:
                out.setdefault(block, {})[sub] = task[block][sub]
        else:
            out[block] = task[block]
    return out
