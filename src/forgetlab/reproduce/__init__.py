"""Rerun a finished run from its `run_record.json` and check that it gives the same metrics.
Run: forgetlab-reproduce RUN_DIR  (see forgetlab.reproduce.cli)."""
