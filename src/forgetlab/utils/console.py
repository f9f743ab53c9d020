"""What a person sees in the terminal: forgetlab's own lines and progress bars, not third-party noise.

By default (`verbose=false`) Lightning's tips and device notices, deprecation warnings of the libraries
underneath, and transformers/datasets loading bars are silenced; `forgetlab verbose=true` shows them all.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

THIRD_PARTY = ("lightning", "lightning_fabric", "pytorch_lightning", "torch", "transformers", "peft", "datasets",
               "huggingface_hub", "hydra_plugins", "wandb", "optuna")


def quiet_third_party(verbose: bool) -> None:
    """Silence the libraries' notices and warnings (forgetlab's own warnings stay); no-op when verbose."""
    if verbose:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for module in THIRD_PARTY:
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()


def console() -> Console:
    """Progress goes to stderr, so stdout stays clean for `--cfg job` and pipes."""
    return Console(stderr=True)


@contextmanager
def progress(description: str, total: int) -> Iterator:
    """A rich progress bar (only on a terminal); yields `advance(n=1, **fields)`."""
    out = console()
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=out, transient=True,
                   disable=not out.is_terminal)
    with bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str = "") -> None:
            bar.update(task, advance=n, info=info)

        yield advance
