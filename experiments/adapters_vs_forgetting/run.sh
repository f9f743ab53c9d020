#!/usr/bin/env bash
# Regenerate the adapters study (issue #15; README beside this file): 11 methods x 3 learning rates x
# 3 seeds on the built-in default, every run with its intruder counts and its post-hoc repair.
#   bash experiments/adapters_vs_forgetting/run.sh          # outputs under outputs/sweeps/adapters_*
#   FORGETLAB_OUTPUTS=/scratch/out bash experiments/adapters_vs_forgetting/run.sh
# Each `run` line is one Hydra multirun (conf/experiment/adapters_vs_forgetting.yaml sets the seeds and the
# repair); relaunching skips completed jobs. A line sweeps one strategy preset: Hydra composes a multirun's
# shared config before the sweep, so `strategy.params.peft.r` must not meet a swept `strategy=full,...`.
# LoRA's alpha is 2r throughout (Biderman et al. 2024). Each method gets the lr grid around its own preset:
# full ~1/10 of LoRA's (plus 3e-4, so its curve spans the gains the adapters reach); rsLoRA at r 128 scales its update by alpha/sqrt(r) = 22.6 instead of alpha/r = 2,
# so its grid sits ~10x lower again.
set -euo pipefail
OUT="${FORGETLAB_OUTPUTS:-outputs}"
HERE="$(cd "$(dirname "$0")" && pwd)"
run() { forgetlab -m experiment=adapters_vs_forgetting sweep_name="$1" "${@:2}" || echo "sweep $1 had failed jobs"; }

run adapters_full strategy=full strategy.optim.lr=1e-5,3e-5,1e-4,3e-4
# LoRA r 8, 32, 128 on the attention projections (the preset's targets) and on every linear layer
run adapters_lora_r8 strategy=lora strategy.params.peft.r=8 strategy.params.peft.lora_alpha=16 strategy.optim.lr=1e-4,3e-4,1e-3
run adapters_lora_r32 strategy=lora strategy.params.peft.r=32 strategy.params.peft.lora_alpha=64 strategy.optim.lr=1e-4,3e-4,1e-3
run adapters_lora_r128 strategy=lora strategy.params.peft.r=128 strategy.params.peft.lora_alpha=256 strategy.optim.lr=1e-4,3e-4,1e-3
run adapters_all_linear_r8 strategy=lora_all_linear strategy.params.peft.r=8 strategy.params.peft.lora_alpha=16 strategy.optim.lr=1e-4,3e-4,1e-3
run adapters_all_linear_r32 strategy=lora_all_linear strategy.params.peft.r=32 strategy.params.peft.lora_alpha=64 strategy.optim.lr=1e-4,3e-4,1e-3
run adapters_all_linear_r128 strategy=lora_all_linear strategy.params.peft.r=128 strategy.params.peft.lora_alpha=256 strategy.optim.lr=1e-4,3e-4,1e-3
# Variants of full-rank (r = d_model = 128) LoRA on every linear layer, one change each
run adapters_rslora strategy=rslora strategy.params.target_modules=all-linear strategy.params.peft.r=128 strategy.params.peft.lora_alpha=256 strategy.optim.lr=3e-6,1e-5,3e-5
run adapters_pissa strategy=pissa strategy.params.target_modules=all-linear strategy.params.peft.r=128 strategy.params.peft.lora_alpha=256 strategy.optim.lr=1e-5,3e-5,1e-4
run adapters_dora strategy=dora strategy.params.target_modules=all-linear strategy.params.peft.r=128 strategy.params.peft.lora_alpha=256 strategy.optim.lr=1e-4,3e-4,1e-3
run adapters_ia3 strategy=ia3 strategy.optim.lr=1e-3,3e-3,1e-2

forgetlab-report "$OUT"/sweeps/adapters_* --out "$HERE/report"
