#!/usr/bin/env bash
# Regenerate the adapters study (issue #15; README beside this file): 11 methods x 3 learning rates x
# 3 seeds on the built-in default, every run with its intruder counts and its post-hoc repair.
#   bash experiments/adapters_vs_forgetting/run.sh          # outputs under outputs/sweeps/adapters_*
#   FORGETLAB_OUTPUTS=/scratch/out bash experiments/adapters_vs_forgetting/run.sh
# Each line is one Hydra multirun (conf/experiment/adapters_vs_forgetting.yaml sets the seeds and the
# repair); relaunching skips completed jobs. LoRA's alpha is 2r throughout (Biderman et al. 2024).
# Each method gets the lr grid around its own preset: full ~1/10 of LoRA's, rsLoRA at r 128 scales its
# update by alpha/sqrt(r) = 22.6 instead of alpha/r = 2, so its grid sits ~10x lower again.
set -euo pipefail
OUT="${FORGETLAB_OUTPUTS:-outputs}"
HERE="$(cd "$(dirname "$0")" && pwd)"
run() { forgetlab -m experiment=adapters_vs_forgetting sweep_name="$1" "${@:2}" || echo "sweep $1 had failed jobs"; }
LORA_LR="strategy.optim.lr=1e-4,3e-4,1e-3"

run adapters_full strategy=full strategy.optim.lr=1e-5,3e-5,1e-4
for r in 8 32 128; do
  run "adapters_lora_r$r" strategy=lora,lora_all_linear strategy.params.peft.r=$r \
      strategy.params.peft.lora_alpha=$((2 * r)) "$LORA_LR"
done
# Variants of full-rank (r = d_model = 128) LoRA on every linear layer: one change each.
FULL_RANK="strategy.params.target_modules=all-linear strategy.params.peft.r=128 strategy.params.peft.lora_alpha=256"
run adapters_rslora strategy=rslora $FULL_RANK strategy.optim.lr=3e-6,1e-5,3e-5
run adapters_pissa strategy=pissa $FULL_RANK strategy.optim.lr=1e-5,3e-5,1e-4
run adapters_dora strategy=dora $FULL_RANK "$LORA_LR"
run adapters_ia3 strategy=ia3 strategy.optim.lr=1e-3,3e-3,1e-2

forgetlab-report "$OUT"/sweeps/adapters_* --out "$HERE/report"
