rule train:
    input:
        records="results/{task}/records.parquet",
        splits="results/{task}/splits.tsv",
    output:
        model="results/{task}/model.ckpt",
        meta="results/{task}/model.json",
        history="results/{task}/history.tsv",
        # every non-test record scored by the cross-fitting fold model that never trained on it
        oof_logits="results/{task}/oof_logits.parquet",
    log:
        "results/logs/{task}/train.log",
    benchmark:
        "results/benchmarks/{task}/train.tsv"
    conda:
        "../../envs/barloc.yaml"
    threads: config["trainer"]["threads"]
    resources:
        mem_mb=8000,
        # minutes; a retry after a time-out gets twice as long and resumes from last.ckpt
        runtime=lambda wildcards, attempt: 120 * attempt,
    params:
        task="{task}",
        cfg=rule_cfg("train"),
        seed=SEED,
        trainer=TRAINER,
    script:
        "../scripts/train.py"


rule ablation:
    input:
        records="results/{task}/records.parquet",
        splits="results/{task}/splits.tsv",
    output:
        ablation="results/{task}/ablation.json",
    log:
        "results/logs/{task}/ablation.log",
    benchmark:
        "results/benchmarks/{task}/ablation.tsv"
    conda:
        "../../envs/barloc.yaml"
    threads: config["trainer"]["threads"]
    resources:
        mem_mb=8000,
        runtime=lambda wildcards, attempt: 120 * attempt,
    params:
        task="{task}",
        cfg=rule_cfg("ablation"),
        seed=SEED,
        trainer=TRAINER,
    script:
        "../scripts/ablation.py"


rule predict:
    input:
        records="results/{task}/records.parquet",
        splits="results/{task}/splits.tsv",
        model="results/{task}/model.ckpt",
        meta="results/{task}/model.json",
        oof_logits="results/{task}/oof_logits.parquet",
    output:
        logits="results/{task}/logits.parquet",
    log:
        "results/logs/{task}/predict.log",
    benchmark:
        "results/benchmarks/{task}/predict.tsv"
    conda:
        "../../envs/barloc.yaml"
    threads: config["trainer"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        task="{task}",
        cfg=rule_cfg("predict"),
    script:
        "../scripts/predict.py"


rule calibrate:
    input:
        logits="results/{task}/logits.parquet",
        meta="results/{task}/model.json",
    output:
        calibration="results/{task}/calibration.json",
    log:
        "results/logs/{task}/calibrate.log",
    benchmark:
        "results/benchmarks/{task}/calibrate.tsv"
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        task="{task}",
        cfg=rule_cfg("calibrate"),
    script:
        "../scripts/calibrate.py"


rule prior_shift:
    input:
        logits="results/{task}/logits.parquet",
        meta="results/{task}/model.json",
        calibration="results/{task}/calibration.json",
    output:
        priors="results/{task}/priors.json",
        calls=report(
            "results/{task}/calls.tsv",
            caption="../report/calls.rst",
            category="Calls",
            subcategory="{task}",
        ),
    log:
        "results/logs/{task}/prior_shift.log",
    benchmark:
        "results/benchmarks/{task}/prior_shift.tsv"
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        task="{task}",
        cfg=rule_cfg("prior_shift"),
        seed=SEED,
    script:
        "../scripts/prior_shift.py"


rule evaluate:
    input:
        logits="results/{task}/logits.parquet",
        meta="results/{task}/model.json",
        calibration="results/{task}/calibration.json",
        priors="results/{task}/priors.json",
    output:
        metrics=report(
            "results/{task}/metrics.json",
            caption="../report/metrics.rst",
            category="Metrics",
            subcategory="{task}",
        ),
    log:
        "results/logs/{task}/evaluate.log",
    benchmark:
        "results/benchmarks/{task}/evaluate.tsv"
    conda:
        "../../envs/barloc.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        task="{task}",
        cfg=rule_cfg("evaluate"),
    script:
        "../scripts/evaluate.py"
