"""tests/apiserver/h2frames.py - an HTTP/2 server that misbehaves at the frame level, for the watch tests.

FrameMitm sits between the watch and nghttpx (tests/lib/nghttpx.py): it
terminates the client's TLS (ALPN h2, a certificate from the stand-in's CA),
opens its own TLS h2 connection to nghttpx for each client connection, and
passes HTTP/2 frames through whole in both directions. Nothing is decoded
but the 9-byte frame headers, so HPACK stays between curl and nghttpx.
arm(action, needle) makes the next server DATA frame whose payload contains
@needle (bytes) trigger @action on its connection:

  goaway    forward the frame, send GOAWAY (NO_ERROR, last stream id = the
            highest the client opened), then close the connection 0.3 s later,
            as a server shutting down does
  rst       send RST_STREAM (INTERNAL_ERROR) for that stream instead of the
            frame, cancel the stream towards nghttpx and drop whatever else
            comes for it; the connection and its other streams go on
  truncate  send the frame header and half its payload, then close the
            connection: a frame cut short

fired is a threading.Event set once the armed action happened; counts()
returns connections accepted and actions done. One thread per connection, a
single thread for both directions (OpenSSL objects are not shared between
threads). Python standard library only.
"""

import os
import select
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lib import net  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, RST_STREAM, GOAWAY = 0, 3, 7
NO_ERROR, INTERNAL_ERROR, CANCEL = 0, 2, 8


def frame(ftype, flags, sid, payload):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) +
            (sid & 0x7fffffff).to_bytes(4, "big") + payload)


def split_frames(buf):
    """Whole frames at the start of @buf, and the rest."""
    out = []
    while len(buf) >= 9:
        n = int.from_bytes(buf[0:3], "big")
        if len(buf) < 9 + n:
            break
        out.append(bytes(buf[:9 + n]))
        buf = buf[9 + n:]
    return out, buf


def frame_sid(f):
    return int.from_bytes(f[5:9], "big") & 0x7fffffff


class FrameMitm:
    def __init__(self, crt, key, upstream_port):
        self.upstream_port = upstream_port
        self.srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.srv_ctx.load_cert_chain(crt, key)
        self.srv_ctx.set_alpn_protocols(["h2"])
        self.cli_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.cli_ctx.check_hostname = False
        self.cli_ctx.verify_mode = ssl.CERT_NONE
        self.cli_ctx.set_alpn_protocols(["h2"])
        self.port = net.free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        self.lock = threading.Lock()
        self.armed = None
        self.fired = threading.Event()
        self.stats = {"connections": 0, "goaway": 0, "rst": 0, "truncate": 0}
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, action, needle=b'"Service"'):
        with self.lock:
            self.fired.clear()
            self.armed = (action, needle)

    def counts(self):
        with self.lock:
            return dict(self.stats)

    def stop(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.stats["connections"] += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _take(self, payload):
        """The armed action, if @payload triggers it (then disarmed)."""
        with self.lock:
            if self.armed and self.armed[1] in payload:
                action, self.armed = self.armed[0], None
                self.stats[action] += 1
                return action
        return None

    def _serve(self, raw):
        c = u = None
        try:
            c = self.srv_ctx.wrap_socket(raw, server_side=True)
            u = self.cli_ctx.wrap_socket(socket.create_connection(
                ("127.0.0.1", self.upstream_port), timeout=10))
            c.settimeout(30)
            u.settimeout(30)
            self._pump(c, u)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            for s in (c, u, raw):
                try:
                    if s:
                        s.close()
                except OSError:
                    pass

    def _pump(self, c, u):
        cbuf, ubuf = b"", b""
        preface_left = len(PREFACE)
        dead = set()          # streams reset by us
        max_sid = 0
        close_at = None
        while not self.stopping:
            if close_at and time.monotonic() >= close_at:
                return
            ready = [s for s in (c, u) if s.pending()]
            if not ready:
                ready = select.select([c, u], [], [], 0.1)[0]
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                if s is c:
                    if preface_left:
                        n = min(preface_left, len(data))
                        u.sendall(data[:n])
                        preface_left -= n
                        data = data[n:]
                    frames, cbuf = split_frames(cbuf + data)
                    for f in frames:
                        sid = frame_sid(f)
                        if sid in dead:
                            continue
                        if sid % 2 == 1:
                            max_sid = max(max_sid, sid)
                        u.sendall(f)
                    continue
                frames, ubuf = split_frames(ubuf + data)
                for f in frames:
                    sid = frame_sid(f)
                    if sid in dead:
                        continue
                    action = self._take(f[9:]) if f[3] == DATA and sid else None
                    if action == "rst":
                        dead.add(sid)
                        c.sendall(frame(RST_STREAM, 0, sid, INTERNAL_ERROR.to_bytes(4, "big")))
                        u.sendall(frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big")))
                        self.fired.set()
                    elif action == "truncate":
                        n = int.from_bytes(f[0:3], "big")
                        c.sendall(f[:9 + n // 2])
                        self.fired.set()
                        return
                    elif action == "goaway":
                        c.sendall(f)
                        c.sendall(frame(GOAWAY, 0, 0, max_sid.to_bytes(4, "big") +
                                        NO_ERROR.to_bytes(4, "big")))
                        close_at = time.monotonic() + 0.3
                        self.fired.set()
                    else:
                        c.sendall(f)
