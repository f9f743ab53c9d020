"""`forgetlab` console script: the Hydra app over conf/train.yaml.

    forgetlab                                   # one run on the built-in default
    forgetlab model=tiny_gpt strategy=full      # choose components by override
    forgetlab -m seed=0,1,2                     # a sweep (Hydra multirun)
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from forgetlab.run import METRICS_FILE, run_experiment
from forgetlab.utils.io import write_json

log = logging.getLogger(__name__)


def run_and_record(cfg: DictConfig) -> dict:
    """Run, and whatever happens leave a metrics.json that says how it ended; always close W&B."""
    run_dir = Path(cfg.paths.output_dir)
    try:
        return run_experiment(cfg)
    except BaseException as err:
        write_json(run_dir / METRICS_FILE, {
            "status": "failed",
            "run_name": cfg.get("run_name"),
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        })
        raise
    finally:
        try:
            import wandb

            if wandb.run is not None:
                wandb.finish()
        except Exception as err:  # closing W&B must never hide the run's own outcome
            log.warning("could not close the W&B run: %s", err)


@hydra.main(version_base="1.3", config_path="pkg://forgetlab.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = run_and_record(cfg)
    log.info("target gain %.1f, mean forgetting %.1f -> %s", metrics["target_gain"], metrics["mean_forgetting"],
             Path(cfg.paths.output_dir) / METRICS_FILE)
    return metrics["mean_forgetting"]


if __name__ == "__main__":
    main()
