import sys
from pathlib import Path

from snakemake.utils import min_version

from barloc.config import check_config
from barloc.errors import InputError

min_version("8.20")


configfile: "config/config.yaml"


# Every key is checked against the JSON schema; a typo is named with a suggestion, and a
# user's config mistake ends with that one message rather than a traceback.
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


def task_cfg(wildcards):
    return config["tasks"][wildcards.task]


def task_inputs(wildcards):
    """The user files a task reads: reference, optional labels sheet, optional query."""
    cfg = config["tasks"][wildcards.task]
    files = {"reference": cfg["reference"]}
    for key in ("labels", "query"):
        if cfg.get(key):
            files[key] = cfg[key]
    if cfg["format"] == "bold" and cfg.get("label", "ocean_basin") == "ocean_basin":
        files["geo_table"] = config["geo_table"]
    return files


def ablation_tasks():
    """Multiclass tasks whose report compares the loss options (task key ablation, default true)."""
    return [
        t
        for t in TASKS
        if config["tasks"][t]["kind"] == "multiclass"
        and config["tasks"][t].get("ablation", True)
    ]


def all_outputs():
    return ["results/report/index.html"] + expand(
        "results/{task}/{name}",
        task=TASKS,
        name=["metrics.json", "calls.tsv", "priors.json"],
    )
