"""conf/ is the one home of the configs and ships inside the wheel: a non-editable install composes, and the
build says nothing a newcomer would read as a broken install (no setuptools warnings)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What setuptools prints when a folder it would ship is not configured (e.g. a conf/ group not listed as a
# package), and any other warning of the build backend.
BUILD_WARNINGS = ("BuildBackendWarning", "would be ignored", "SetuptoolsDeprecationWarning", "SetuptoolsWarning")


def build_wheel(source: Path, out: Path) -> tuple[Path, str]:
    """The wheel pip builds from `source` (no build isolation: offline) and everything the build printed."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           str(source), "-w", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return next(out.glob("forgetlab-*.whl")), done.stdout + done.stderr


# What pip does for `pip install -e .` (PEP 660): the backend's build_editable hook in a fresh process, every
# warning it raises recorded, and pip shows each one (as a BuildBackendWarning) even with -q.
EDITABLE_HOOK = """
import sys, warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    build_meta.build_editable(sys.argv[1])
for w in caught:
    print("BuildBackendWarning:", w.category.__name__, str(w.message).splitlines()[0])
"""


def editable_build_warnings(source: Path, out: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", EDITABLE_HOOK, str(out)], cwd=source, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return build_warnings(done.stdout)


def build_warnings(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if any(w in line for w in BUILD_WARNINGS)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    return build_wheel(ROOT, tmp_path_factory.mktemp("wheel"))


def test_wheel_builds_without_setuptools_warnings(wheel):
    _, output = wheel
    assert not build_warnings(output), "\n".join(build_warnings(output))


def test_editable_install_builds_without_setuptools_warnings(tmp_path):
    assert editable_build_warnings(ROOT, tmp_path) == []


def test_wheel_ships_every_config(wheel):
    path, _ = wheel
    shipped = set(zipfile.ZipFile(path).namelist())
    configs = {"forgetlab/conf/" + p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert len(configs) > 20  # every group: model, strategy, experiment, ...
    assert sorted(configs - shipped) == []
    modules = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py")}  # hydra_plugins too
    assert sorted(modules - shipped) == []


def test_build_warnings_are_caught():
    """The check above can fail: the lines setuptools prints for an unlisted conf/ group are recognised."""
    output = ("  .../build_py.py:215: BuildBackendWarning: Package 'forgetlab.conf.base' is absent from the "
              "`packages` configuration.\n  !!\n          # Package would be ignored #\n")
    assert len(build_warnings(output)) == 2
    assert build_warnings("  adding 'forgetlab/conf/train.yaml'\n") == []


def test_wheel_install_finds_the_configs(wheel, tmp_path):
    path, _ = wheel
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(path)], check=True, capture_output=True)
    probe = (
        "import forgetlab, hydra\n"
        "assert 'site' in forgetlab.__file__, forgetlab.__file__\n"
        "with hydra.initialize_config_module('forgetlab.conf', version_base='1.3'):\n"
        "    cfg = hydra.compose('train', overrides=['model=tiny_gpt', 'strategy=lora', 'experiment=tiny'])\n"
        "print(cfg.model.name, cfg.strategy.name, cfg.tasks.target)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["tiny_gpt", "lora", "reverse"]
