rule report:
    input:
        metrics=expand("results/{task}/metrics.json", task=TASKS),
        calls=expand("results/{task}/calls.tsv", task=TASKS),
        priors=expand("results/{task}/priors.json", task=TASKS),
        history=expand("results/{task}/history.tsv", task=TASKS),
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
    params:
        tasks=TASKS,
        config=config,
    log:
        "results/logs/report.log",
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/report.py"
