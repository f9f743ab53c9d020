#!/usr/bin/env bash
# Regenerate the methods study (issue #24; README beside this file): on the built-in default, 11 methods x
# 3 learning rates x 3 seeds (full fine-tuning 5 lrs), interpolation curves for full fine-tuning and LoRA;
# then the same 11 methods x 3 seeds at one lr each on the real checkpoint stories260K. About 40 minutes on a
# 2-core CPU once the base stage is cached.
#   bash experiments/methods_vs_forgetting/run.sh           # outputs under outputs/sweeps/methods_*
#   FORGETLAB_OUTPUTS=/scratch/out bash experiments/methods_vs_forgetting/run.sh
# Each `run` line is one Hydra multirun (conf/experiment/methods_vs_forgetting.yaml sets the seeds);
# relaunching skips completed jobs. Each method sweeps the lr grid around its own preset: methods that train
# every weight (or a penalised/filtered version of it) 3e-5, 1e-4, 3e-4, LoRA ~10x (Biderman et al. 2024),
# BitFit's norm scales ~100x. Full fine-tuning adds 3e-6 and 1e-5 so its curve spans the low gains the
# slower methods reach. Every method at its preset's settings (EWC lambda 1e4, L2-SP alpha 1: the schema's
# defaults, written out where a line sweeps them).
set -euo pipefail
OUT="${FORGETLAB_OUTPUTS:-outputs}"
HERE="$(cd "$(dirname "$0")" && pwd)"
run() { forgetlab -m experiment=methods_vs_forgetting sweep_name="$1" "${@:2}" || echo "sweep $1 had failed jobs"; }

# 1. The built-in default (tiny T5; forgetting on its five base tasks)
run methods_full strategy=full strategy.optim.lr=3e-6,1e-5,3e-5,1e-4,3e-4 'diagnostics.interpolate=[0,0.25,0.5,0.75,1]'
run methods_lora strategy=lora strategy.optim.lr=1e-4,3e-4,1e-3 'diagnostics.interpolate=[0,0.25,0.5,0.75,1]'
run methods_replay strategy=replay strategy.optim.lr=3e-5,1e-4,3e-4
run methods_ewc strategy=ewc strategy.penalty.lam=1e4 strategy.optim.lr=3e-5,1e-4,3e-4
run methods_l2sp strategy=l2sp strategy.optim.lr=3e-5,1e-4,3e-4
run methods_lwf strategy=lwf strategy.optim.lr=3e-5,1e-4,3e-4
run methods_sdft strategy=sdft strategy.optim.lr=3e-5,1e-4,3e-4
run methods_partial_top strategy=partial_top strategy.optim.lr=3e-5,1e-4,3e-4
run methods_hft strategy=hft strategy.optim.lr=3e-5,1e-4,3e-4
run methods_mofo strategy=mofo strategy.optim.lr=3e-5,1e-4,3e-4
run methods_bitfit strategy=bitfit strategy.optim.lr=1e-3,3e-3,1e-2
forgetlab-report "$OUT"/sweeps/methods_* --out "$HERE/report"

# 2. The real checkpoint stories260K (conf/experiment/stories260k.yaml: it learns a colour question it does not
# know; forgetting is the drop of its held-out stories' score, 100 / perplexity), 3 seeds, one lr per method:
# the experiment's 1e-3 for every method that trains whole weights; LoRA 3e-3 and BitFit 1e-2, the two that
# train few parameters (the lowest lr of a seed-0 probe that reached their task-loss floor: README); full
# fine-tuning also at 3e-4 and 3e-3 for a curve; EWC at the default's lambda 1e4 and at 100 (stories260K's
# Fisher is larger: one lambda does not carry over).
srun() { forgetlab -m experiment=stories260k sweep_name="$1" seed=0,1,2 "${@:2}" || echo "sweep $1 had failed jobs"; }
srun stories_methods_full strategy=full strategy.optim.lr=3e-4,1e-3,3e-3 'diagnostics.interpolate=[0,0.25,0.5,0.75,1]'
srun stories_methods_lora strategy=lora strategy.optim.lr=3e-3 'diagnostics.interpolate=[0,0.25,0.5,0.75,1]'
srun stories_methods_ewc strategy=ewc strategy.penalty.lam=1e4,100 strategy.optim.lr=1e-3
srun stories_methods_replay strategy=replay strategy.optim.lr=1e-3
srun stories_methods_l2sp strategy=l2sp strategy.optim.lr=1e-3
srun stories_methods_lwf strategy=lwf strategy.optim.lr=1e-3
srun stories_methods_sdft strategy=sdft strategy.optim.lr=1e-3
srun stories_methods_partial_top strategy=partial_top strategy.optim.lr=1e-3
srun stories_methods_hft strategy=hft strategy.optim.lr=1e-3
srun stories_methods_mofo strategy=mofo strategy.optim.lr=1e-3
srun stories_methods_bitfit strategy=bitfit strategy.optim.lr=1e-2
forgetlab-report "$OUT"/sweeps/stories_methods_* --out "$HERE/report_stories260k"
python "$HERE/analyse.py" "$OUT"/sweeps/methods_* --stories "$OUT"/sweeps/stories_methods_* \
  --out "$HERE/analysis.md" --plot "$HERE/methods_vs_full.png"
