# emoflow: video -> audio + faces -> HDF5 shards -> audio/visual branches -> fusion -> report.
# Run: snakemake --cores N  (own data: --configfile my.yaml; cluster: --profile workflow/profiles/slurm)
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the demo's config. A run given --configfile reads that file alone, over the
# schema's defaults: the demo's speed settings are never merged under another corpus's config.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/fuse.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True


rule features:
    input:
        feature_outputs(),
