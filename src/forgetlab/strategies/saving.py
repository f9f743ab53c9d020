"""What a finished run keeps of its model: PEFT runs the adapter alone in `adapter/` (with the base model
it needs), full runs the whole model in `model/`; both with the tokenizer, so `forgetlab-export` can build
a folder `from_pretrained` loads from the run directory alone."""

from __future__ import annotations

from pathlib import Path

from forgetlab.models.language_model import LanguageModel
from forgetlab.strategies.adapters import is_peft
from forgetlab.strategies.export import BASE_FILE
from forgetlab.utils.io import write_json


def save_final_model(lm: LanguageModel, run_dir: Path, base_model: str | None) -> Path:
    if is_peft(lm.model):
        out = Path(run_dir) / "adapter"
        lm.model.save_pretrained(out)
        write_json(out / BASE_FILE, {"base_model": base_model, "kind": lm.kind})
    else:
        out = Path(run_dir) / "model"
        lm.model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    return out
