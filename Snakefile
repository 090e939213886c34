# barloc: calibrated fish-origin and protein-localization classifiers.
# The logic lives in src/barloc; the rules in workflow/rules only wire files together.


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
