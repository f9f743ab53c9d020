"""The console command ends without the interpreter's teardown, yet loses nothing a normal exit keeps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from forgetlab.utils.process_exit import exit_status


def test_exit_now_waits_for_threads_runs_atexit_flushes_and_keeps_the_status(tmp_path):
    script = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from forgetlab.utils.process_exit import exit_now

        out = Path({str(tmp_path)!r})
        def late():
            time.sleep(0.3)
            (out / "thread").write_text("done")
        threading.Thread(target=late).start()
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        sys.stdout.write("unflushed, no newline")
        exit_now(3)
        (out / "after").write_text("must not run")
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed, no newline"
    assert (tmp_path / "thread").read_text() == "done" and (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "after").exists()


@pytest.mark.parametrize("code,status", [(None, 0), (0, 0), (2, 2), ("a message", 1)])
def test_exit_status_is_what_sys_exit_would_give(code, status, capsys):
    assert exit_status(code) == status
    assert capsys.readouterr().err == ("a message\n" if isinstance(code, str) else "")
