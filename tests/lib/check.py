"""check.py - assertions, polling and command helpers of the test scripts.

check() raises CheckFailed; a test runner counts it as a failure. Skip marks
a test that cannot run here. wait_for() polls a function until it returns a
true value; run() runs a command to completion, capturing its output.
"""

import subprocess
import time


class CheckFailed(Exception):
    """An assertion of a test failed."""


class Skip(Exception):
    """The test cannot run on this machine."""


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def wait_for(fn, timeout, what, interval=0.02):
    """Poll fn() every @interval s until it returns a true value (returned);
    CheckFailed after @timeout s, with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise CheckFailed("timed out after %.1f s waiting for %s (last: %r)" % (timeout, what, last))


def run(args, check_rc=True, timeout=30, **kw):
    """Run @args with output captured as text; CheckFailed on a non-zero exit
    when @check_rc. Returns the CompletedProcess."""
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc and r.returncode != 0:
        raise CheckFailed("%s: exit %d: %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def tail(path, n=40):
    """The last @n lines of a log file, or a note that it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    lines = data.splitlines()
    return "\n".join(lines[-n:])
