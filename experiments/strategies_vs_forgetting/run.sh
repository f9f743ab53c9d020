#!/usr/bin/env bash
# Regenerate this study (about 20 minutes on a 2-core CPU once the base stage is cached):
#   bash experiments/strategies_vs_forgetting/run.sh            # outputs under outputs/sweeps/study_*
#   FORGETLAB_OUTPUTS=/scratch/out bash experiments/strategies_vs_forgetting/run.sh
# Each line is one Hydra multirun on the built-in default; relaunching skips completed jobs.
set -euo pipefail
OUT="${FORGETLAB_OUTPUTS:-outputs}"
HERE="$(cd "$(dirname "$0")" && pwd)"
run() { forgetlab -m sweep_name="$1" "${@:2}" || echo "sweep $1 had failed jobs (see its sweep_summary.json)"; }

# 1. Seeds: full fine-tuning vs the two data remedies, 3 seeds each (mean +- std).
run study_seeds strategy=full,replay,multitask seed=0,1,2
# 2. Learning-forgetting curves: sweep the knob that sets how far each strategy moves the model.
run study_full_lr strategy=full strategy.optim.lr=1e-5,1e-4,3e-4 seed=0,1,2
run study_lora_lr strategy=lora strategy.optim.lr=1e-4,3e-4,1e-3,3e-3 seed=0,1,2
run study_ia3_lr strategy=ia3 strategy.optim.lr=1e-3,1e-2 seed=0,1,2
run study_prompt_lr strategy=prompt_tuning strategy.optim.lr=1e-3,3e-2 seed=0,1,2
run study_l2sp strategy=l2sp strategy.penalty.alpha=0.1,1,10 seed=0,1,2
run study_ewc strategy=ewc strategy.penalty.lam=1e3,1e4,1e5 seed=0,1,2

forgetlab-report "$OUT"/sweeps/study_* --out "$HERE/report"
