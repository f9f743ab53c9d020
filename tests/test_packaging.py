"""conf/ is the one home of the configs and ships inside the wheel: a non-editable install composes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_install_finds_the_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("forgetlab-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    probe = (
        "import forgetlab, hydra\n"
        "assert 'site' in forgetlab.__file__, forgetlab.__file__\n"
        "with hydra.initialize_config_module('forgetlab.conf', version_base='1.3'):\n"
        "    cfg = hydra.compose('train', overrides=['model=tiny_gpt', 'strategy=lora'])\n"
        "print(cfg.model.name, cfg.strategy.name, cfg.tasks.target)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["tiny_gpt", "lora", "length"]
