# Description on the front page of `snakemake --report report.zip`.
report: "../report/workflow.rst"


rule report:
    input:
        metrics=expand("results/{task}/metrics.json", task=TASKS),
        calls=expand("results/{task}/calls.tsv", task=TASKS),
        priors=expand("results/{task}/priors.json", task=TASKS),
        history=expand("results/{task}/history.tsv", task=TASKS),
        # Also read by the page: model facts, reliability bins and reference counts.
        meta=expand("results/{task}/model.json", task=TASKS),
        calibration=expand("results/{task}/calibration.json", task=TASKS),
        records=expand("results/{task}/records.parquet", task=TASKS),
        # What class weighting and focal loss change, for multiclass tasks.
        ablation=expand("results/{task}/ablation.json", task=ablation_tasks()),
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tasks=report_tasks(),
    script:
        "../scripts/report.py"
