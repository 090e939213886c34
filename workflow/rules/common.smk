import sys
from pathlib import Path

from snakemake.utils import min_version

from barloc.config import check_config, rule_config
from barloc.errors import InputError

min_version("8.20")


configfile: "config/config.yaml"


# Every key is checked against the JSON schema, which fills in its defaults, and cross-field
# rules are checked; a typo is named with a suggestion, and a user's config mistake ends with
# that one message rather than a traceback.
try:
    check_config(
        config,
        Path(workflow.current_basedir) / "../schemas/config.schema.yaml",
        "config/config.yaml",
    )
except InputError as err:
    sys.exit(f"barloc: error: {err}")

TASKS = list(config["tasks"])
SEED = config["seed"]


wildcard_constraints:
    task="|".join(TASKS),


def rule_cfg(rule):
    """Params function: the keys of the task block that ``rule`` reads, and no others, so a
    changed key reruns exactly the rules from its first reader on (barloc.config.RULE_KEYS)."""
    return lambda wildcards: rule_config(config["tasks"][wildcards.task], rule)


# The trainer block minus threads, which is the rules' threads: a new thread count needs no retrain.
TRAINER = {k: v for k, v in config["trainer"].items() if k != "threads"}


def report_tasks():
    """What the report shows of each task: its wording, cut-off and input files."""
    out = {}
    for name in TASKS:
        cfg = rule_config(config["tasks"][name], "report")
        out[name] = {
            "title": cfg.get("title", ""),  # the report titles an untitled task by its name
            "description": cfg["description"],
            "nouns": cfg["nouns"],
            "uncertain_below": cfg["uncertain_below"],
            "inputs": {k: cfg.get(k) for k in ("reference", "labels", "query")},
        }
    return out


def task_inputs(wildcards):
    """The user files a task reads: reference, optional labels sheet, optional query."""
    cfg = config["tasks"][wildcards.task]
    files = {"reference": cfg["reference"]}
    for key in ("labels", "query"):
        if cfg.get(key):
            files[key] = cfg[key]
    if cfg["format"] == "bold" and cfg["label"] == "ocean_basin":
        files["geo_table"] = config["geo_table"]
    return files


def ablation_tasks():
    """Multiclass tasks whose report compares the loss options (task key ablation, default true)."""
    return [t for t in TASKS if config["tasks"][t]["kind"] == "multiclass" and config["tasks"][t]["ablation"]]


def all_outputs():
    return ["results/report/index.html"] + expand(
        "results/{task}/{name}",
        task=TASKS,
        name=["metrics.json", "calls.tsv", "priors.json"],
    )
