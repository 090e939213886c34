rule ingest:
    input:
        unpack(task_inputs),
    output:
        records="results/{task}/records.parquet",
    log:
        "results/logs/{task}/ingest.log",
    benchmark:
        "results/benchmarks/{task}/ingest.tsv"
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task="{task}",
        cfg=rule_cfg("ingest"),
    script:
        "../scripts/ingest.py"


rule split:
    input:
        records="results/{task}/records.parquet",
    output:
        splits="results/{task}/splits.tsv",
    log:
        "results/logs/{task}/split.log",
    benchmark:
        "results/benchmarks/{task}/split.tsv"
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        task="{task}",
        cfg=rule_cfg("split"),
        seed=SEED,
    script:
        "../scripts/split.py"
