"""net.py - ports on 127.0.0.1 and network namespaces for the tests.

free_port() hands out a port free for both UDP and TCP, never the same one
twice in a run. Netns is a network namespace (`ip netns`) whose processes and
/etc/netns/NAME files are removed by cleanup(), which a script registers with
atexit and calls from its SIGINT/SIGTERM handler; remove_stale() deletes the
namespaces a killed earlier run left (named PREFIX + PID + "-...", PID dead).
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time

from lib import procs
from lib.check import run

LOCAL = "127.0.0.1"

# ------------------------------------------------------------------ ports

_handed_out = set()


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host=LOCAL):
    """A port that is free for TCP and UDP on @host right now and was not
    handed out before in this run. Taken below the kernel's ephemeral range
    when there is room, so that no outgoing connection (ours or another
    program's) grabs it between now and the moment the server binds it."""
    lo, _hi = _ephemeral_range()
    if lo > 12000:
        candidates = lambda: random.randrange(10000, lo)  # noqa: E731
    else:
        candidates = lambda: 0  # noqa: E731
    for _ in range(500):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            try:
                u.bind((host, candidates()))
            except OSError:
                continue
            port = u.getsockname()[1]
            if port in _handed_out:
                continue
            try:
                t.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port found")


def wait_port_free(port, timeout=3.0, host=LOCAL):
    """True once UDP @port can be bound on @host again (within @timeout s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
            return True
        except OSError:
            time.sleep(0.05)
        finally:
            u.close()
    return False


# ------------------------------------------------------------------ namespaces

_LIVE_NS = []
PROCS = procs.Registry()   # processes started inside namespaces


def delete_netns(name):
    """Kill whatever still runs in @name (it keeps the namespace alive), then
    delete the namespace and its /etc/netns directory."""
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    shutil.rmtree("/etc/netns/%s" % name, ignore_errors=True)
    if name in _LIVE_NS:
        _LIVE_NS.remove(name)


def remove_stale(prefix):
    """Namespaces of an earlier run that was killed before it cleaned up."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s(\d+)-" % re.escape(prefix), name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            delete_netns(name)


def cleanup():
    """Kill every process started in a namespace, delete every namespace."""
    PROCS.kill_all()
    for name in list(_LIVE_NS):
        delete_netns(name)


class Netns:
    """A network namespace with loopback up."""

    def __init__(self, name):
        self.name = name
        self.etc = "/etc/netns/%s" % name

    def create(self):
        run(["ip", "netns", "add", self.name])
        _LIVE_NS.append(self.name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args):
        """`ip -n NAME ARGS`; its stdout (CheckFailed on failure)."""
        return run(["ip", "-n", self.name] + list(args)).stdout

    def x(self, args, check_rc=True, timeout=30):
        """Run @args inside the namespace to completion."""
        return run(["ip", "netns", "exec", self.name] + list(args), check_rc=check_rc, timeout=timeout)

    def popen(self, args, **kw):
        """Start @args inside the namespace, in its own session; cleanup()
        kills it."""
        return PROCS.add(procs.start(["ip", "netns", "exec", self.name] + list(args), **kw))

    def link_exists(self, dev):
        return subprocess.run(["ip", "-n", self.name, "link", "show", dev],
                              capture_output=True).returncode == 0

    def resolv(self, text):
        """/etc/netns/NAME/resolv.conf (what glibc reads inside)."""
        os.makedirs(self.etc, exist_ok=True)
        with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
            f.write(text)

    def destroy(self):
        delete_netns(self.name)
