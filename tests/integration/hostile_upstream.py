#!/usr/bin/env python3
"""hostile_upstream.py - a DNS upstream that misbehaves on purpose (TCP and UDP
on one port), for tests/integration/hostile.py.

Behaviour by the first label of the query name (its prefix up to "-"), or for
every name by .mode (the control command, set from the test):
  ok         an A record (address from a hash of the name), TTL 30
  shortlen   TCP: the length prefix lies, 10 bytes short (the tail of the
             reply then reads as the next frame's length)
  drip       TCP: the reply a byte every .drip_s seconds; later replies on
             that connection wait behind it
  reset      TCP: the connection is reset (RST) on this query, before any
             byte of its reply
  resetmid   TCP: the length prefix and half the reply, then a reset
  resetconn  (as .mode only) TCP: every connection reset as soon as it is
             accepted, before a query is read; UDP answered as ok
  noedns     FORMERR without OPT to a query with EDNS (an old server);
             without EDNS the normal answer
  noednsimp  the same with NOTIMP
  badvers    BADVERS (extended rcode 1 in an OPT) to a query with EDNS
  tc         TC=1 with no records (over TCP as well)
  unrelated  the answer holds only an A record of victim.test
  mixed      the right A record and one of victim.test
  nstype     A records at the question name, whatever the question type
  ad         the normal answer with AD=1
.stats counts per (prefix, transport, "edns"/"plain") the queries seen;
.accepted counts the TCP connections accepted (reset or not).
"""

import collections
import hashlib
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lib import dnswire, net  # noqa: E402

LOCAL = "127.0.0.1"


def hash_ip(name):
    h = hashlib.sha256(name.lower().encode()).digest()
    return "10.%d.%d.%d" % (h[0], h[1], h[2] or 1)


def _a_rr(owner_wire, ip, ttl=30):
    return owner_wire + struct.pack("!HHIH", 1, 1, ttl, 4) + bytes(int(x) for x in ip.split("."))


def _reset(c):
    """Close socket @c with an RST (SO_LINGER 0) instead of a FIN. The
    reader thread is blocked in recv() on it, which holds the socket open
    past close() (no RST until that recv returns): shutdown(SHUT_RD) wakes
    it first, sending nothing to the peer."""
    try:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            c.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        c.close()
    except OSError:
        pass


def parse_query(q):
    """(id, flags, name, qtype, end of question, has OPT) of a query."""
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", q[:12])
    name, off = dnswire.decode_name(q, 12)
    qtype, _ = struct.unpack("!HH", q[off:off + 4])
    return qid, flags, name, qtype, off + 4, ar > 0


class HostileUpstream:
    def __init__(self, mode=None, drip_s=0.5):
        self.port = net.free_port()
        self.mode = mode
        self.drip_s = drip_s
        self.stats = collections.Counter()
        self.accepted = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.conns = []
        self.tsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tsock.bind((LOCAL, self.port))
        self.tsock.listen(128)
        self.usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.usock.bind((LOCAL, self.port))
        for fn in (self._accept_loop, self._udp_loop):
            threading.Thread(target=fn, daemon=True).start()

    @property
    def addr_text(self):
        return "%s:%d" % (LOCAL, self.port)

    def count(self, prefix, proto=None, edns=None):
        with self.lock:
            return sum(v for (p, t, e), v in self.stats.items()
                       if p == prefix and (proto is None or t == proto)
                       and (edns is None or e == ("edns" if edns else "plain")))

    def close(self):
        self.stopping = True
        for s in [self.tsock, self.usock] + list(self.conns):
            try:
                s.close()
            except OSError:
                pass

    # ---- replies
    def behaviour(self, name):
        if self.mode:
            return self.mode
        first = name.split(".")[0].lower()
        return first.split("-")[0]

    def reply(self, q, proto):
        """(kind, bytes): kind is "send", "shortlen", "drip", "reset"."""
        qid, flags, name, qtype, end, edns = parse_query(q)
        how = self.behaviour(name)
        with self.lock:
            self.stats[(how, proto, "edns" if edns else "plain")] += 1
        question = q[12:end]
        rflags = 0x8000 | (flags & 0x0110) | 0x0080
        rcode, ext, rrs, opt = 0, None, [], edns
        if how in ("noedns", "noednsimp") and edns:
            rcode, opt = (1 if how == "noedns" else 4), False
        elif how == "badvers" and edns:
            ext = 1
        elif how == "tc":
            rflags |= 0x0200
        elif how == "unrelated":
            rrs.append(_a_rr(dnswire.encode_name("victim.test"), "192.0.2.66"))
        elif how == "nstype" or qtype == 1:
            rrs.append(_a_rr(b"\xc0\x0c", hash_ip(name)))
            if how == "mixed":
                rrs.append(_a_rr(dnswire.encode_name("victim.test"), "192.0.2.66"))
        if how == "ad":
            rflags |= 0x0020
        add = b""
        if opt:
            add = dnswire.opt_rr(1232, ext_rcode=ext or 0)
        hdr = struct.pack("!HHHHHH", qid, rflags | rcode, 1, len(rrs), 0, 1 if add else 0)
        msg = hdr + question + b"".join(rrs) + add
        kind = how if proto == "tcp" and how in ("shortlen", "drip", "reset", "resetmid") \
            else "send"
        return kind, msg

    # ---- UDP
    def _udp_loop(self):
        while not self.stopping:
            try:
                q, peer = self.usock.recvfrom(65535)
            except OSError:
                return
            try:
                _, msg = self.reply(q, "udp")
                self.usock.sendto(msg, peer)
            except Exception:
                pass

    # ---- TCP: a reader per connection, replies written in order by a writer
    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.tsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            if self.mode == "resetconn":
                _reset(c)
                continue
            self.conns.append(c)
            out = collections.deque()
            ev = threading.Condition()
            threading.Thread(target=self._reader, args=(c, out, ev), daemon=True).start()
            threading.Thread(target=self._writer, args=(c, out, ev), daemon=True).start()

    def _reader(self, c, out, ev):
        buf = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
                while len(buf) >= 2:
                    n = struct.unpack("!H", buf[:2])[0]
                    if len(buf) < 2 + n:
                        break
                    q, buf = buf[2:2 + n], buf[2 + n:]
                    item = self.reply(q, "tcp")
                    with ev:
                        out.append(item)
                        ev.notify()
        except OSError:
            pass
        with ev:
            out.append(None)
            ev.notify()

    def _writer(self, c, out, ev):
        try:
            while True:
                with ev:
                    while not out:
                        ev.wait()
                    item = out.popleft()
                if item is None:
                    return
                kind, msg = item
                if kind == "reset":
                    _reset(c)
                    return
                if kind == "resetmid":
                    frame = struct.pack("!H", len(msg)) + msg
                    c.sendall(frame[:len(frame) // 2])
                    time.sleep(0.02)  # let the half frame leave before the RST
                    _reset(c)
                    return
                if kind == "shortlen":
                    c.sendall(struct.pack("!H", len(msg) - 10) + msg)
                elif kind == "drip":
                    for b in struct.pack("!H", len(msg)) + msg:
                        c.sendall(bytes([b]))
                        time.sleep(self.drip_s)
                else:
                    c.sendall(struct.pack("!H", len(msg)) + msg)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass
