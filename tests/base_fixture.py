"""The default base stages of the built-in models, committed as base-stage cache entries for the tests that
run documented examples: training them takes ~10 minutes each on 2 cores, so CI copies them instead.

An entry is exactly what `forgetlab` caches under `<cache_dir>/base/<model>-<key>/` (weights, tokenizer,
base.json with its spec and weights hash; the training logs are left out). A run whose config hashes to
another key (the base settings, the model or the base tasks changed) trains its base as usual, so a stale
fixture costs time, never correctness; regenerate the fixtures then:

    python -m tests.base_fixture            # trains each default base (cached in outputs/cache if there)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "base_cache"
MODELS = ("tiny_t5", "tiny_gpt")


def seed_base_cache(cache_dir: Path) -> Path:
    """Copy the committed base entries into `cache_dir` (a paths.cache_dir) and return it."""
    for entry in sorted(FIXTURES.glob("*-*")):
        target = cache_dir / "base" / entry.name
        if not target.exists():
            shutil.copytree(entry, target)
    return cache_dir


def expected_entry(model: str, tmp_dir: Path) -> str:
    """The cache entry name (`<model>-<key>`) the default config of `model` asks for, without training."""
    from hydra.utils import instantiate

    from forgetlab.config import validate
    from forgetlab.run import base_spec
    from forgetlab.training.base_stage import base_key
    from tests.conftest import compose_config

    cfg = compose_config([f"model={model}"], tmp_dir / "run", tmp_dir / "cache")
    suite = instantiate(cfg.tasks, cache_dir=None, _convert_="all")
    return f"{cfg.model.name}-{base_key(base_spec(cfg, validate(cfg), suite))}"


def regenerate(cache_dir: Path) -> list[Path]:
    """Train (or load from `cache_dir`) the default base of each built-in model and commit-copy it here."""
    from hydra.utils import instantiate

    from forgetlab.config import validate
    from forgetlab.run import prepare_base
    from forgetlab.utils.determinism import make_deterministic
    from tests.conftest import compose_config

    written = []
    for model in MODELS:
        cfg = compose_config([f"model={model}"], cache_dir / "run", cache_dir)
        config = validate(cfg)
        make_deterministic(config.seed, config.threads, config.deterministic)
        suite = instantiate(cfg.tasks, cache_dir=config.paths.data_cache_dir, _convert_="all")
        lm = instantiate(cfg.model.build)
        base = prepare_base(cfg, config, lm, suite, None)
        entry = Path(base["path"])
        target = FIXTURES / entry.name
        for stale in FIXTURES.glob(f"{model}-*"):
            shutil.rmtree(stale)
        shutil.copytree(entry, target, ignore=shutil.ignore_patterns("logs", "*.lock"))
        written.append(target)
        print(f"{model}: {target.relative_to(Path.cwd()) if target.is_relative_to(Path.cwd()) else target} "
              f"(mean validation score {base['mean_validation_score']:.1f})")
    return written


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("outputs/cache"))
