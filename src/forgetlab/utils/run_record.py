"""`run_record.json`: everything that determines a run's result, written into its run directory.

It holds the resolved config and the command-line overrides (so `forgetlab-reproduce RUN_DIR` can rerun
it), the seeds, torch threads and determinism flag, the git commit of the source tree (with the diff in
`git_diff.patch` when the tree is dirty), package versions, the content hashes of every task split, the
base checkpoint's hash, and the hardware. `record["command"]` is the command that reruns the run:

    forgetlab experiment=tiny seed=3
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from forgetlab.config import resolved_container
from forgetlab.run_dirs import RECORD_FILE
from forgetlab.utils.io import write_json

log = logging.getLogger(__name__)

DIFF_FILE = "git_diff.patch"
RECORD_VERSION = 1
PACKAGES = ("python", "torch", "transformers", "peft", "lightning", "hydra-core", "datasets", "wandb",
            "forgetlab")


def hydra_overrides() -> tuple[list[str], list[str], str | None]:
    """(task overrides, hydra overrides, run mode) of the current Hydra app; empty when there is none
    (configs composed in tests or notebooks)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return [], [], None
        hc = HydraConfig.get()
        mode = hc.get("mode")
        return list(hc.overrides.task), list(hc.overrides.hydra), getattr(mode, "name", mode)
    except Exception as err:  # noqa: BLE001 - recording must never break a run
        log.warning("could not read the Hydra overrides: %s", err)
        return [], [], None


def command_line(overrides: list[str]) -> str:
    """The shell command that reruns a run with these overrides."""
    return shlex.join(["forgetlab", *overrides])


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        if name == "python":
            versions[name] = platform.python_version()
            continue
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: list[str], cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def git_state(source_dir: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the git checkout the package is imported from. A package installed from a
    wheel (or any tree that is not a git checkout, or git missing) gives {"available": False, ...}."""
    if source_dir is None:
        import forgetlab

        source_dir = Path(forgetlab.__file__).resolve().parent
    source_dir = Path(source_dir)
    try:
        top = Path(_git(["rev-parse", "--show-toplevel"], source_dir).strip())
        # A wheel installed into a venv inside some repo is not that repo's source: it must be tracked.
        _git(["ls-files", "--error-unmatch", "--", "__init__.py"], source_dir)
        commit = _git(["rev-parse", "HEAD"], top).strip()
        diff = _git(["diff", "HEAD", "--no-color", "--no-ext-diff"], top)
        untracked = _git(["ls-files", "--others", "--exclude-standard"], top).splitlines()
    except (OSError, subprocess.SubprocessError) as err:
        reason = getattr(err, "stderr", None) or str(err)
        return {"available": False, "reason": str(reason).strip()[:500]}
    return {
        "available": True,
        "commit": commit,
        "dirty": bool(diff) or bool(untracked),
        "diff": diff,
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
        "untracked": untracked[:200],
        "n_untracked": len(untracked),
    }


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": [],
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as err:  # noqa: BLE001 - a broken CUDA setup is a fact to record, not a failure
        info["cuda_error"] = str(err)
    return info


def _abs(path: Any) -> str | None:
    return None if path is None else str(Path(str(path)).expanduser().resolve())


def write_run_record(run_dir: str | Path, cfg: DictConfig, suite, base: dict | None) -> dict[str, Any]:
    """Write `run_record.json` (and `git_diff.patch` if the source tree is dirty) into `run_dir`."""
    import torch

    run_dir = Path(run_dir)
    overrides, hydra_ov, mode = hydra_overrides()
    git = git_state()
    diff = git.pop("diff", "")
    if diff:
        (run_dir / DIFF_FILE).write_text(diff)
        git["diff_file"] = DIFF_FILE
    record = {
        "record_version": RECORD_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": command_line(overrides),
        "overrides": overrides,
        "hydra_overrides": hydra_ov,
        "hydra_mode": mode,
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "config": resolved_container(cfg),
        # Absolute, so a rerun started elsewhere can find the same base-stage cache if it still exists.
        "paths": {"root": _abs(cfg.paths.get("root")), "cache_dir": _abs(cfg.paths.get("cache_dir"))},
        "seeds": {
            "seed": cfg.get("seed"),
            "base": cfg.base.get("seed") if cfg.get("base") is not None else None,
            "data": cfg.tasks.get("seed") if cfg.get("tasks") is not None else None,
        },
        "threads": {"configured": cfg.get("threads"), "torch": torch.get_num_threads()},
        "deterministic": {
            "configured": cfg.get("deterministic"),
            "torch": torch.are_deterministic_algorithms_enabled(),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        },
        "git": git,
        "versions": package_versions(),
        "data_fingerprints": suite.fingerprints() if suite is not None else {},
        "base": None if base is None else {"key": base.get("key"), "weights_sha256": base.get("weights_sha256")},
        "hardware": hardware(),
    }
    write_json(run_dir / RECORD_FILE, record)
    return record
