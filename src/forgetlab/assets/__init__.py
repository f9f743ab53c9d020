"""Files shipped inside the package, so tests and experiments find them from a clone or a wheel alike.

`stories260K/` is a real pretrained Llama checkpoint, vendored unchanged: llama2.c's stories260K (260k
parameters, trained on TinyStories; MIT, see stories260K/LICENSE and stories260K/PROVENANCE.txt).
`stories260K_stories.txt` (its own stories, the "old ability" forgetting is measured on) and
`stories260K_task.jsonl` (a small task it does not know) are written by `make_stories260k_data.py`.

Configs name an asset as `${asset:NAME}` (the resolver is registered with the schema whenever Hydra
composes, forgetlab.config.register_configs): it becomes the file's absolute path inside the installed
package, so config files and documented commands hold no machine paths.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path, PurePosixPath

RESOLVER = "asset"


def assets_dir() -> Path:
    """The folder of the shipped assets (on disk: setuptools installs package data unzipped)."""
    return Path(str(files(__name__)))


def available_assets() -> list[str]:
    root = assets_dir()
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(("_", ".")) and p.suffix != ".py")


def asset_path(name: str) -> str:
    """Absolute path of the asset `name` (a file or folder under forgetlab/assets, e.g. 'stories260K');
    an unknown name fails listing the available ones."""
    parts = PurePosixPath(str(name)).parts
    path = assets_dir().joinpath(*parts) if parts else None
    if not parts or parts[0] in ("/", "..") or ".." in parts or path is None or not path.exists():
        raise ValueError(f"${{{RESOLVER}:{name}}}: no such asset in {assets_dir()}; "
                         f"available: {available_assets()}")
    return str(path)
