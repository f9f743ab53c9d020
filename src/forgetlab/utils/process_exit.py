"""Ending a forgetlab command without the interpreter's module teardown.

Once torch, transformers and lightning are imported, Python's own shutdown (freeing every module and
object) takes ~1.5 s on a 2-core CPU, paid by every run after its results are written. `exit_now` does
what a normal exit does that has an effect outside the process (waits for non-daemon threads, runs the
atexit handlers: logging, W&B, temporary-file finalizers; flushes the standard streams) and skips the rest.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_status(code: object) -> int:
    """What `sys.exit(code)` would make the process's exit status (a message is printed, as it would be)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: object = 0) -> NoReturn:
    """End the process with `sys.exit(code)`'s status after the shutdown steps that matter."""
    status = exit_status(code)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # the same handlers, in the same order, as interpreter shutdown runs
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(status)
