"""`forgetlab` console app: the Hydra app over conf/train.yaml.

    forgetlab                                   # one run on the built-in default
    forgetlab model=tiny_gpt strategy=full      # choose components by override
    forgetlab -m seed=0,1,2                     # a sweep (Hydra multirun)
    forgetlab -m experiment=compare_strategies  # strategy presets x seeds; see docs/sweeps.md
    forgetlab experiment=continual              # a sequence of stages (forgetlab.continual_run)

Under `-m` a failing job is recorded (metrics.json says `failed`) and the sweep goes on; the exit status
is non-zero if any job of the launch failed (as the sweep's sweep_summary.json records). Relaunching the
same sweep skips completed jobs.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import NoReturn

import hydra
from omegaconf import DictConfig

from forgetlab.run_dirs import INTERPOLATION_FILE, METRICS_FILE, REPAIR_FILE, run_state, shown
from forgetlab.utils import sweep
from forgetlab.utils.io import write_json

log = logging.getLogger(__name__)
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM


def run_and_record(cfg: DictConfig) -> dict | None:
    """Run, and whatever happens leave a metrics.json that says how it ended; always close W&B.

    W&B (when `logger=wandb`): one run per call, opened and closed by the `WandbSession` around the run,
    so a failure never lets the next job log into this job's run.
    """
    from forgetlab.continual_run import has_sequence, run_continual
    from forgetlab.run import run_experiment
    from forgetlab.training.distributed import is_global_zero
    from forgetlab.training.preemption import exit_status, is_interruption
    from forgetlab.utils.timing import process_age_s
    from forgetlab.utils.wandb_run import WandbSession

    if not is_global_zero():  # another process of a DDP run: it trains, rank 0 records (and opens W&B)
        return run_continual(cfg, None) if has_sequence(cfg) else run_experiment(cfg, None)
    run_dir = Path(cfg.paths.output_dir)
    with WandbSession(cfg) as wandb:
        try:
            # start-up = the process's age, for a single run; the jobs of a sweep share one start-up
            startup = None if sweep.is_multirun() else process_age_s()
            metrics = run_continual(cfg, wandb) if has_sequence(cfg) else run_experiment(cfg, wandb, startup_s=startup)
        except BaseException as err:
            interrupted = is_interruption(err)
            write_json(run_dir / METRICS_FILE, {
                "status": "interrupted" if interrupted else "failed",
                "run_name": cfg.get("run_name"),
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(),
            })
            if interrupted:
                # SIGTERMException is a SystemExit with code None (exit 0); a scheduler must see non-zero.
                log.warning("interrupted; the same command resumes from %s", shown(run_dir / "checkpoints"))
                raise SystemExit(exit_status(err, EXIT_INTERRUPTED)) from err
            raise
        wandb.log_results(metrics)
        return metrics


def result_line(cfg: DictConfig, metrics: dict) -> str:
    """One line per job: what it learned, what it forgot, how long it took, where the numbers are."""
    wall = (metrics.get("timing") or {}).get("wall_time_s")
    took = f", {wall:.0f} s" if isinstance(wall, (int, float)) else ""
    where = shown(Path(cfg.paths.output_dir) / METRICS_FILE)
    continual = metrics.get("continual")
    if isinstance(continual, dict):  # a sequence: its own headline numbers
        bwt = continual.get("backward_transfer")
        return (f"{cfg.get('run_name')}: {len(continual['stages'])} stages, final average "
                f"{continual['final_average_trained']:.1f}, BWT {'n/a' if bwt is None else f'{bwt:.1f}'}, "
                f"forgetting on untrained tasks {metrics['mean_forgetting']:.1f}{took} -> {where}")
    return (f"{cfg.get('run_name')}: target gain {metrics['target_gain']:.1f}, mean forgetting "
            f"{metrics['mean_forgetting']:.1f}{took} -> {where}")


def finish_repair(cfg: DictConfig, run_dir: Path) -> None:
    """A completed job killed during its post-hoc steps (repair, interpolation) gets the missing ones on
    relaunch."""
    alphas = cfg.get("diagnostics", {}).get("interpolate")
    if alphas and not (run_dir / INTERPOLATION_FILE).is_file():
        from forgetlab.strategies.interpolate import interpolate_run  # lazy, as below

        log.info("interpolating %s (its interpolation step had not finished)", shown(run_dir))
        interpolate_run(run_dir, list(alphas), list(cfg.select.budgets), bool(cfg.diagnostics.get("extrapolate")))
    lambdas = cfg.get("diagnostics", {}).get("repair_lambdas")
    if lambdas and not (run_dir / REPAIR_FILE).is_file():
        from forgetlab.strategies.repair import repair_run  # lazy: torch stays unimported for --help

        log.info("repairing %s (its repair step had not finished)", shown(run_dir))
        repair_run(run_dir, list(lambdas), cfg.diagnostics.get("repair_budget"))


@hydra.main(version_base="1.3", config_path="pkg://forgetlab.conf", config_name="train")
def hydra_main(cfg: DictConfig) -> float | list[float] | None:
    """The task function. Returns mean forgetting, or the `optimized_metrics` values (for Optuna)."""
    run_dir = Path(cfg.paths.output_dir)
    multirun = sweep.is_multirun()
    if multirun and cfg.get("skip_completed", True):
        state = run_state(run_dir)
        if state.completed:
            try:
                result = sweep.objectives(cfg, state.metrics)
                finish_repair(cfg, run_dir)
                log.info("skipping %s: already completed (relaunch of the same sweep)", shown(run_dir))
                return result
            except (KeyError, TypeError, ValueError) as err:
                log.info("rerunning %s: its metrics.json lacks the objective %s", shown(run_dir), err)
        elif state.status != "missing":
            log.info("rerunning %s: %s", shown(run_dir), state.reason)
    try:
        metrics = run_and_record(cfg)
    except Exception as err:
        if not multirun:
            raise
        log.error("job failed, recorded in %s; the sweep goes on: %s: %s", shown(run_dir / METRICS_FILE),
                  type(err).__name__, err)
        if sweep.sweeper_marks_failures():
            raise  # Optuna records the trial as failed and goes on (NaN would crash optuna 2.x's tell)
        return sweep.objectives(cfg, None)
    if metrics is None:  # a DDP process other than rank 0: nothing to report
        return None
    log.info("%s", result_line(cfg, metrics))
    return sweep.objectives(cfg, metrics)


def main() -> NoReturn:
    """Console entry point; ends the process. A failed single run exits 1 (Hydra); a multirun whose
    sweep_summary.json names a failed job of this launch exits 1 (SweepSummary); otherwise 0. The exit
    skips the interpreter's teardown of torch & co. (~1.5 s a run; see utils/process_exit.py)."""
    from forgetlab.utils.process_exit import exit_now

    try:
        hydra_main()
    except SystemExit as done:
        exit_now(done.code)
    exit_now(0)


if __name__ == "__main__":
    main()
