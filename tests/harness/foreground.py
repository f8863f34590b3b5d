"""Stopping the neighbour processes the harness runs in the foreground in
their own process group (haproxy -db, nginx with daemon off)."""

import os
import shutil
import signal
import subprocess


def stop_foreground(proc, first_signal=signal.SIGTERM, timeout=5):
    """``first_signal`` to the process, a bounded wait for it to exit, then
    SIGKILL to whatever is left of its process group (its session: it was
    started with start_new_session)."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.kill(proc.pid, first_signal)
            proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=timeout)


def remove_dir(path):
    """Remove a server's temp directory, unless KEEP_HTTPD_DIRS is set."""
    if not os.environ.get("KEEP_HTTPD_DIRS"):
        shutil.rmtree(path, ignore_errors=True)
