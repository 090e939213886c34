rule ingest:
    input:
        unpack(task_inputs),
    output:
        records="results/{task}/records.parquet",
    params:
        task="{task}",
        cfg=rule_cfg("ingest"),
    log:
        "results/logs/{task}/ingest.log",
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/ingest.py"


rule split:
    input:
        records="results/{task}/records.parquet",
    output:
        splits="results/{task}/splits.tsv",
    params:
        task="{task}",
        cfg=rule_cfg("split"),
        seed=SEED,
    log:
        "results/logs/{task}/split.log",
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/split.py"
