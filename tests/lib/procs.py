"""procs.py - start and stop the processes of a test or a benchmark.

Every process is started in its own session (start_new_session), so its whole
process group (a server's forked children included) can be signalled by the
leader's pid. Nothing here kills by name.

  start()        Popen in a new session, stdin from /dev/null
  stop()         SIGTERM, a grace period, then SIGKILL (to the group)
  kill_group()   SIGKILL to the group at once
  read_line()    the first output line of a process (a startup handshake)
  wait_log()     poll a log file for a regular expression
  describe_rc()  "exit code N" / "signal SIGxxx"
  status()       the numeric fields of /proc/PID/status (VmRSS, VmHWM kB...)
  Registry       the processes a run started (optionally listed in a pids
                 file for a wrapper script), stopped together at the end
  LoggedProc     a started process with its log file: log(), wait_log(),
                 child(), signal(), wait(), stop()
"""

import os
import re
import select
import signal
import subprocess
import time

from lib.check import CheckFailed, wait_for


def start(argv, stdout=None, stderr=None, stdin=subprocess.DEVNULL, **kw):
    """Popen(@argv) in a new session (its pid is its process group id)."""
    return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                            start_new_session=True, **kw)


def _signal(p, sig, group):
    try:
        if group:
            os.killpg(p.pid, sig)
        elif p.poll() is None:
            p.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(p, grace=5.0, group=True, kill_wait=5.0):
    """SIGTERM @p (its process group when @group), wait up to @grace s, then
    SIGKILL: with @group always (children a server forked may outlive it),
    else only when @p is still running. Returns the exit status, or None
    when @p is None or did not exit within @kill_wait s of SIGKILL."""
    if p is None:
        return None
    _signal(p, signal.SIGTERM, group)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    if group or p.poll() is None:
        _signal(p, signal.SIGKILL, group)
    try:
        return p.wait(kill_wait)
    except subprocess.TimeoutExpired:
        return None


def kill_group(p, timeout=5.0):
    """SIGKILL the process group of @p if @p still runs, then reap it."""
    if p.poll() is None:
        _signal(p, signal.SIGKILL, True)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def read_line(p, timeout):
    """The first line @p writes to its stdout pipe (bytes, with the newline),
    or what came before EOF or @timeout without one. Reads the raw pipe, so
    nothing stays buffered in the Popen file object."""
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            ch = os.read(p.stdout.fileno(), 4096)
            if not ch:
                break
            line += ch
    return line


def read_text(path):
    """A log file as text ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait_log(path, pattern, timeout=10, count=1, proc=None, name="process", interval=0.02):
    """Wait until @pattern (a regular expression) matches @count times in the
    file @path. With @proc, CheckFailed as soon as @proc has exited without it."""
    def seen():
        n = len(re.findall(pattern, read_text(path)))
        if proc is not None and proc.poll() is not None and n < count:
            raise CheckFailed("%s exited (%s) before logging %r:\n%s" % (
                name, proc.returncode, pattern, read_text(path)[-3000:]))
        return n >= count
    wait_for(seen, timeout, "log line %r" % pattern, interval)


def describe_rc(rc):
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "exit code %d" % rc


def status(pid):
    """{field: int} of /proc/@pid/status, for the fields whose value starts
    with a number (VmRSS, VmHWM in kB, Threads...). OSError when @pid is gone."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if v and v[0].isdigit():
                out[k] = int(v[0])
    return out


def children(pid):
    """Pids of the direct children of @pid ([] when it is gone)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Registry:
    """The processes a run started. With @pids_file, each pid is appended
    there too (one a line), so a wrapper script can kill what is left if the
    run itself dies hard."""

    def __init__(self, pids_file=None):
        self.started = []
        self.pids_file = pids_file

    def add(self, p):
        self.started.append(p)
        if self.pids_file:
            with open(self.pids_file, "a") as f:
                f.write("%d\n" % p.pid)
        return p

    def spawn(self, argv, logpath, stdout=None, cwd=None, **kw):
        """start() @argv with stderr (and stdout, unless given) appended to
        @logpath, and register it."""
        out = open(logpath, "ab")
        try:
            p = start(argv, stdout=stdout or out,
                      stderr=out if stdout else subprocess.STDOUT, cwd=cwd, **kw)
        finally:
            out.close()
        return self.add(p)

    def stop(self, p, grace=5.0):
        """stop() @p and its group, and forget it."""
        stop(p, grace, kill_wait=2.0)
        if p in self.started:
            self.started.remove(p)

    def kill_all(self):
        """SIGKILL every group, newest first."""
        for p in reversed(self.started):
            kill_group(p)
        self.started.clear()

    def stop_all(self, grace=2.0):
        for p in list(reversed(self.started)):
            self.stop(p, grace)


class LoggedProc:
    """A started process whose stdout and stderr go to the file @logpath
    (@logf, the open file the caller handed to Popen, is closed by close())."""

    def __init__(self, proc, logpath, logf=None, name="nodedns"):
        self.proc, self.logpath, self.logf, self.name = proc, logpath, logf, name

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        return read_text(self.logpath)

    def wait_log(self, pattern, timeout=10, count=1):
        wait_log(self.logpath, pattern, timeout, count, self.proc, self.name)

    def child(self):
        """The first child process (the resolver of a supervisor), or None."""
        kids = children(self.pid)
        return kids[0] if kids else None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait(self, timeout=10):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CheckFailed("%s (pid %d) did not exit within %.0f s:\n%s" % (
                self.name, self.pid, timeout, self.log()[-2000:]))

    def stop(self, timeout=10):
        """SIGTERM, then the exit status (CheckFailed after @timeout s)."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def close(self):
        if self.logf:
            self.logf.close()
            self.logf = None
