"""Where a run's wall time goes: named phases timed back to back, for the `timing` section of metrics.json.

A run is a sequence of phases (start-up, data, scoring before, training, ...) timed back to back: `enter`
ends the current phase and starts the next, so no second falls between two phases. A part measured inside
another (periodic evaluation inside training) is moved from one to the other with `split_off`, so the
parts still add up to the whole.
"""

from __future__ import annotations

import os
import time


def process_age_s() -> float | None:
    """Seconds since this process was created (Linux /proc), or None where that cannot be read: the
    start-up share of a single run (interpreter, imports, config composition) before any forgetlab code."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as stat, open("/proc/uptime") as up:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            uptime = float(up.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


class PhaseTimer:
    """Seconds per named phase, in the order the phases first ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._since = 0.0

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def enter(self, name: str | None) -> None:
        """End the current phase and start `name` (None: stop timing)."""
        now = time.perf_counter()
        if self._current is not None:
            self.add(self._current, now - self._since)
        self._current, self._since = name, now

    def split_off(self, part: str, whole: str, seconds: float) -> None:
        """Count `seconds` that were timed inside `whole` under `part` instead."""
        self.enter(self._current)  # bank the running phase's seconds first
        seconds = min(seconds, self.seconds.get(whole, 0.0))
        self.add(whole, -seconds)
        self.add(part, seconds)

    def summary(self) -> dict[str, float]:
        """`{phase}_s` for every phase and `wall_time_s`, their sum, rounded to milliseconds."""
        out = {f"{name}_s": round(s, 3) for name, s in self.seconds.items()}
        out["wall_time_s"] = round(sum(self.seconds.values()), 3)
        return out
