"""`forgetlab` console script: the Hydra app over conf/train.yaml.

    forgetlab                                   # one run on the built-in default
    forgetlab model=tiny_gpt strategy=full      # choose components by override
    forgetlab -m seed=0,1,2                     # a sweep (Hydra multirun)
    forgetlab -m experiment=compare_strategies  # strategy presets x seeds; see docs/sweeps.md

Under `-m` a failing job is recorded (metrics.json says `failed`) and the sweep goes on; the exit status
is non-zero if any job of the launch failed. Relaunching the same sweep skips completed jobs.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from forgetlab.run import METRICS_FILE, run_experiment
from forgetlab.utils import sweep, wandb_run
from forgetlab.utils.io import write_json

log = logging.getLogger(__name__)


def run_and_record(cfg: DictConfig) -> dict:
    """Run, and whatever happens leave a metrics.json that says how it ended; always close W&B.

    W&B (when `logger=wandb`): one run per call, started here and finished in `finally`, so a failure
    never lets the next job log into this job's run; the summary and per-task table come at the end.
    """
    run_dir = Path(cfg.paths.output_dir)
    error: BaseException | None = None
    try:
        wandb_run.start(cfg)
        metrics = run_experiment(cfg)
        wandb_run.log_results(metrics)
        return metrics
    except BaseException as err:
        error = err
        write_json(run_dir / METRICS_FILE, {
            "status": "failed",
            "run_name": cfg.get("run_name"),
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        })
        raise
    finally:
        wandb_run.finish(error)


def is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001
        return False


@hydra.main(version_base="1.3", config_path="pkg://forgetlab.conf", config_name="train")
def hydra_main(cfg: DictConfig) -> float | list[float] | None:
    """The task function. Returns mean forgetting, or the `optimized_metrics` values (for Optuna)."""
    run_dir = Path(cfg.paths.output_dir)
    multirun = is_multirun()
    if multirun and cfg.get("skip_completed", True):
        done = sweep.completed_metrics(run_dir)
        if done is not None:
            log.info("skipping %s: its metrics.json says completed (relaunch of the same sweep)", run_dir)
            return sweep.objectives(cfg, done)
    try:
        metrics = run_and_record(cfg)
    except Exception as err:
        if not multirun:
            raise
        log.error("job failed, recorded in %s; the sweep goes on: %s: %s", run_dir / METRICS_FILE,
                  type(err).__name__, err)
        return sweep.objectives(cfg, None)
    log.info("target gain %.1f, mean forgetting %.1f -> %s", metrics["target_gain"], metrics["mean_forgetting"],
             run_dir / METRICS_FILE)
    return sweep.objectives(cfg, metrics)


def main() -> int:
    """Console entry point: run the Hydra app; 1 if a job of a multirun failed, else 0."""
    sweep.state["failed_jobs"] = []
    hydra_main()
    return 1 if sweep.state["failed_jobs"] else 0


if __name__ == "__main__":
    sys.exit(main())
