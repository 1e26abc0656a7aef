"""nghttpx.py - nghttpx as a TLS HTTP/2 front end to a test HTTPS server.

Nghttpx(cert_dir, backend_port, logdir) signs a server certificate for
127.0.0.1/localhost with the CA in @cert_dir (ca.crt + ca.key, as
tests/apiserver/fake_apiserver.py makes them), so a client that trusts that CA
trusts the proxy too, and starts nghttpx on a free loopback port: ALPN h2
(and http/1.1) in front, HTTP/1.1 over TLS to 127.0.0.1:@backend_port behind,
the backend certificate checked against the same CA. Each HTTP/2 stream is
proxied on its own backend connection, so a backend that closes one response
mid-way shows up at the client as a RST_STREAM of that stream only.

  url                  https://127.0.0.1:PORT
  start() / stop()     stop() is SIGTERM, then SIGKILL (no graceful drain)
  restart()            stop and start again on the same port
  kill()               SIGKILL: every client connection dies at once
  established()        client connections to the proxy port now, from
                       /proc/net/tcp{,6} (state ESTABLISHED, local port PORT)
  tls_errors()         TLS handshakes the proxy refused or saw fail (its log)
  rst_streams()        RST_STREAM frames the proxy sent to clients (its log)
  requests()           the access log: [(alpn, status, "PORT GET /path?q HTTP/2")]
"""

import os
import re
import subprocess
import time

from lib import net, procs
from lib.check import CheckFailed

BINARY = "nghttpx"
# What nghttpx (1.52) logs at INFO when a client's handshake fails, and
# when it resets a stream towards a client.
_TLS_ERR = re.compile(r"tls: handshake libssl error")
_RST = re.compile(r"\[UPSTREAM:[^]]*\] RST_STREAM stream_id=\d+")


def sign_cert(cert_dir, name, san="IP:127.0.0.1,DNS:localhost"):
    """@name.crt/@name.key in @cert_dir, signed by @cert_dir/ca.{crt,key}."""
    key, csr, crt = (os.path.join(cert_dir, name + x) for x in (".key", ".csr", ".crt"))
    ext = os.path.join(cert_dir, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n" % san)

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    run("x509", "-req", "-in", csr, "-CA", os.path.join(cert_dir, "ca.crt"), "-CAkey",
        os.path.join(cert_dir, "ca.key"), "-CAcreateserial", "-out", crt, "-days", "7",
        "-extfile", ext)
    os.unlink(csr)
    os.unlink(ext)
    return crt, key


class Nghttpx:
    def __init__(self, cert_dir, backend_port, logdir, name="nghttpx"):
        self.cert_dir, self.backend_port, self.logdir = cert_dir, backend_port, logdir
        self.crt, self.key = sign_cert(cert_dir, "h2-proxy")
        self.errlog = os.path.join(logdir, name + ".log")
        self.acclog = os.path.join(logdir, name + "-access.log")
        self.port = net.free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.p = None
        self.starts = 0
        self.start()

    def argv(self):
        return [BINARY, "--conf=/dev/null", "--frontend=127.0.0.1,%d" % self.port,
                "--backend=127.0.0.1,%d;;tls;sni=localhost" % self.backend_port,
                "--cacert=" + os.path.join(self.cert_dir, "ca.crt"),
                "--no-ocsp", "--workers=1", "--log-level=INFO",
                "--errorlog-file=" + self.errlog, "--accesslog-file=" + self.acclog,
                "--accesslog-format=$alpn $status $remote_port $request",
                # A watch is one long response: no proxy timeout may end it
                # before the client's own idle watchdog or the server does.
                "--backend-read-timeout=10m", "--stream-read-timeout=0",
                "--backend-connections-per-host=256", self.key, self.crt]

    def start(self, timeout=10.0):
        try:
            with open(self.errlog + ".stderr", "ab") as err:
                self.p = procs.start(self.argv(), stdout=subprocess.DEVNULL, stderr=err)
        except FileNotFoundError:
            raise CheckFailed("no %s: install nghttp2-proxy (scripts/deps.sh test)" % BINARY)
        self.starts += 1
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise CheckFailed("nghttpx exited (%s): %s" % (
                    procs.describe_rc(self.p.returncode), procs.read_text(self.errlog)[-2000:]))
            if self._listening():
                return
            time.sleep(0.05)
        raise CheckFailed("nghttpx did not listen on %d within %ss" % (self.port, timeout))

    def _listening(self):
        return any(st == "0A" for st in self._sockets())

    def _sockets(self):
        """TCP states (hex, as /proc/net/tcp shows them) of the sockets
        whose local port is ours."""
        out = []
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(path) as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        if int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                            out.append(fields[3])
            except OSError:
                pass
        return out

    def established(self):
        return sum(1 for st in self._sockets() if st == "01")

    def stop(self):
        procs.stop(self.p, grace=5.0)
        self.p = None

    def kill(self):
        procs.kill_group(self.p)
        self.p = None

    def restart(self, down_s=0.0):
        if self.p is not None:
            self.kill()
        time.sleep(down_s)
        self.start()

    def tls_errors(self):
        return sum(1 for line in procs.read_text(self.errlog).splitlines()
                   if _TLS_ERR.search(line))

    def rst_streams(self):
        return len(_RST.findall(procs.read_text(self.errlog)))

    def requests(self):
        out = []
        for line in procs.read_text(self.acclog).splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3:
                out.append(tuple(parts))
        return out
