"""`forgetlab-export RUN_DIR OUT`: a folder that AutoModelForSeq2SeqLM / AutoModelForCausalLM (and
AutoTokenizer) load with `from_pretrained`.

A PEFT run keeps only its adapter (RUN_DIR/adapter/); export loads the base model it names, merges the
adapter into it (`merge_and_unload`) and saves the result. A full fine-tuning run's model
(RUN_DIR/model/) is saved as it is. Prompt tuning has no weights to merge and cannot be exported this way.

Exit status: 0 on success, 1 when the run dir holds nothing to export.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from forgetlab.utils.io import read_json

BASE_FILE = "forgetlab_base.json"


def _auto(source: str | Path):
    config = AutoConfig.from_pretrained(source)
    return AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM


def load_run_model(run_dir: str | Path):
    """(model, tokenizer) of a finished run: a plain transformers model, adapters merged."""
    run_dir = Path(run_dir)
    adapter, full = run_dir / "adapter", run_dir / "model"
    if (adapter / "adapter_config.json").exists():
        from peft import PeftConfig, PeftModel

        meta = read_json(adapter / BASE_FILE)
        base_path = meta.get("base_model")
        if not base_path:
            raise FileNotFoundError(f"{adapter / BASE_FILE} names no base model; cannot rebuild the run's model")
        if PeftConfig.from_pretrained(adapter).is_prompt_learning:
            raise ValueError("prompt tuning learns virtual input tokens, not weights: there is nothing to merge. "
                             f"Load it with PeftModel.from_pretrained(base, {str(adapter)!r}) instead")
        try:
            base = _auto(base_path).from_pretrained(base_path)
        except OSError as err:
            raise FileNotFoundError(f"base model {base_path!r} of this run is gone (base-stage cache cleared?): "
                                    f"{err}") from err
        model = PeftModel.from_pretrained(base, adapter).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(adapter)
    elif (full / "config.json").exists():
        model = _auto(full).from_pretrained(full)
        tokenizer = AutoTokenizer.from_pretrained(full)
    else:
        raise FileNotFoundError(f"{run_dir} has neither adapter/ nor model/: not a finished forgetlab run "
                                "(or one made before runs saved their model)")
    gen = model.generation_config
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def export(run_dir: str | Path, out: str | Path) -> Path:
    model, tokenizer = load_run_model(run_dir)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="forgetlab-export",
        description="Write a finished run's model (adapters merged) to a folder from_pretrained loads.",
        epilog="Example: forgetlab-export outputs/runs/lora-reverse-s0 exported/lora-reverse",
    )
    parser.add_argument("run_dir", help="a run directory (holds metrics.json and adapter/ or model/)")
    parser.add_argument("out", help="output folder")
    args = parser.parse_args(argv)
    try:
        path = export(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"forgetlab-export: {err}", file=sys.stderr)
        return 1
    print(f"exported to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
