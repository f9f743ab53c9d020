"""The CSV log across a resume (utils/csv_logger.py): the interrupted attempt's rows stay, its replayed rows
are replaced (the resumed run writes them again), and a row it computed but never wrote (restored from the
checkpoint) is added exactly once. The real kill-and-resume runs are in tests/test_interruptions.py (slow)."""

from __future__ import annotations

import csv
from pathlib import Path

from forgetlab.utils.csv_logger import ResumableCSVLogger


def rows(log_dir: Path) -> list[dict]:
    with open(log_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


def attempt(root: Path) -> ResumableCSVLogger:
    return ResumableCSVLogger(save_dir=str(root), name="logs", version="", flush_logs_every_n_steps=1)


def first_attempt(root: Path) -> None:
    """Steps 0-3 trained and logged, step 4's scoring row written, then killed before step 4's loss row (its
    checkpoint was saved first)."""
    logger = attempt(root)
    for step in range(4):
        logger.log_metrics({"train/loss": 2.0 - step / 10, "epoch": 0}, step=step)
    logger.log_metrics({"eval/length/score": 12.5}, step=4)


def test_a_row_lost_to_the_kill_comes_back_once_and_the_other_rows_stay(tmp_path):
    first_attempt(tmp_path)
    resumed = attempt(tmp_path)  # resumes from step 4's checkpoint, which carries the unwritten row
    resumed.restore_row({"train/loss": 1.6, "epoch": 0}, 4)
    resumed.log_metrics({"train/loss": 1.5, "epoch": 0}, step=5)
    resumed.save()
    got = rows(tmp_path / "logs")
    assert [(r["step"], sorted(k for k in r if k != "step")) for r in got] == [
        ("0", ["epoch", "train/loss"]), ("1", ["epoch", "train/loss"]), ("2", ["epoch", "train/loss"]),
        ("3", ["epoch", "train/loss"]), ("4", ["eval/length/score"]), ("4", ["epoch", "train/loss"]),
        ("5", ["epoch", "train/loss"])]
    assert got[5]["train/loss"] == "1.6" and got[6]["train/loss"] == "1.5"
    assert not (tmp_path / "logs" / "metrics.csv.previous").exists()


def test_a_restored_row_the_file_already_has_is_not_written_twice_and_replayed_rows_are_replaced(tmp_path):
    first_attempt(tmp_path)
    resumed = attempt(tmp_path)  # resumes from step 2's checkpoint, saved after step 2's row was written
    resumed.restore_row({"train/loss": 1.8, "epoch": 0}, 2)
    resumed.log_metrics({"train/loss": 1.65, "epoch": 0}, step=3)  # the replay of steps 3 and 4
    resumed.log_metrics({"train/loss": 1.55, "epoch": 0}, step=4)
    resumed.save()
    got = rows(tmp_path / "logs")
    assert [(r["step"], r["train/loss"]) for r in got] == [("0", "2.0"), ("1", "1.9"), ("2", "1.8"),
                                                          ("3", "1.65"), ("4", "1.55")]


def test_a_restored_row_is_written_when_the_attempt_wrote_no_file(tmp_path):
    resumed = attempt(tmp_path)
    resumed.restore_row({"train/loss": 2.0, "epoch": 0}, 0)
    resumed.log_metrics({"train/loss": 1.9, "epoch": 0}, step=1)
    resumed.save()
    assert [(r["step"], r["train/loss"]) for r in rows(tmp_path / "logs")] == [("0", "2.0"), ("1", "1.9")]
