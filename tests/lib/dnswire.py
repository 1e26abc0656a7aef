"""dnswire.py - a small DNS message encoder/decoder and raw UDP/TCP clients.

Stdlib only. Enough of RFC 1035/6891 for the tests and the benchmarks: build
queries (any flags, opcode, class, EDNS), parse any message (name compression,
the common RR types decoded, everything else kept as raw rdata) and talk to a
server over UDP or TCP (including pipelined TCP). parse() is the one DNS
message parser of tests/ and bench/: it is strict (DNSError on anything
malformed, trailing bytes included).
"""

import ipaddress
import random
import select
import socket
import struct
import time

TYPES = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
    "AAAA": 28, "SRV": 33, "OPT": 41, "ANY": 255,
}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
CLASSES = {"IN": 1, "CH": 3, "HS": 4, "ANY": 255}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN",
          4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}
RCODE_NUM = {v: k for k, v in RCODES.items()}
OPCODE_QUERY, OPCODE_IQUERY, OPCODE_STATUS, OPCODE_NOTIFY = 0, 1, 2, 4


class DNSError(Exception):
    """A malformed message, or a reply that does not match its query."""


def type_num(t):
    return t if isinstance(t, int) else TYPES[t.upper()]


def type_name(n):
    return TYPE_NAMES.get(n, "TYPE%d" % n)


def class_num(c):
    return c if isinstance(c, int) else CLASSES[c.upper()]


# --------------------------------------------------------------- encoding

def encode_name(name):
    """Wire form of a domain name, case preserved, no compression."""
    if name in ("", "."):
        return b"\x00"
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad label %r in %r" % (label, name))
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError("name too long: %r" % name)
    return bytes(out)


def make_header(qid, qr=False, opcode=0, aa=False, tc=False, rd=True, ra=False,
                ad=False, cd=False, rcode=0, qd=1, an=0, ns=0, ar=0):
    flags = ((qr << 15) | ((opcode & 0xF) << 11) | (aa << 10) | (tc << 9) |
             (rd << 8) | (ra << 7) | (ad << 5) | (cd << 4) | (rcode & 0xF))
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def opt_rr(udp_size=1232, do=False, ext_rcode=0, version=0, options=b""):
    return (b"\x00" + struct.pack("!HHBBHH", 41, udp_size, ext_rcode, version,
                                  0x8000 if do else 0, len(options)) + options)


def build_query(name, qtype="A", qclass="IN", qid=None, rd=True, opcode=0,
                edns=None, do=False, qr=False, cd=False, ad=False):
    """A query message. @edns is the advertised UDP size, or None for no OPT."""
    if qid is None:
        qid = random.randrange(0, 65536)
    hdr = make_header(qid, qr=qr, opcode=opcode, rd=rd, cd=cd, ad=ad, qd=1,
                      ar=1 if edns is not None else 0)
    q = encode_name(name) + struct.pack("!HH", type_num(qtype), class_num(qclass))
    msg = hdr + q
    if edns is not None:
        msg += opt_rr(edns, do)
    return msg


# --------------------------------------------------------------- decoding

def decode_name(buf, off):
    """(name, offset after the name). Name has no trailing dot, '.' for root,
    original case kept."""
    labels = []
    end = None
    jumps = 0
    total = 0
    while True:
        if off >= len(buf):
            raise DNSError("name runs past the end of the message")
        ln = buf[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= len(buf):
                raise DNSError("truncated compression pointer")
            ptr = ((ln & 0x3F) << 8) | buf[off + 1]
            if end is None:
                end = off + 2
            jumps += 1
            if jumps > 64 or ptr >= len(buf):
                raise DNSError("bad compression pointer")
            off = ptr
            continue
        if ln & 0xC0:
            raise DNSError("bad label type 0x%02x" % ln)
        off += 1
        if ln == 0:
            break
        if off + ln > len(buf):
            raise DNSError("label runs past the end of the message")
        labels.append(buf[off:off + ln].decode("latin-1"))
        total += ln + 1
        if total > 255:
            raise DNSError("name longer than 255 octets")
        off += ln
    if end is None:
        end = off
    return (".".join(labels) if labels else "."), end


class RR:
    __slots__ = ("name", "type", "cls", "ttl", "rdata", "data")

    def __init__(self, name, rtype, cls, ttl, rdata, data):
        self.name, self.type, self.cls, self.ttl = name, rtype, cls, ttl
        self.rdata, self.data = rdata, data

    @property
    def tname(self):
        return type_name(self.type)

    def __repr__(self):
        return "%s %d %s %r" % (self.name, self.ttl, self.tname, self.data)


def _decode_rdata(buf, off, rtype, rdlen):
    rd = buf[off:off + rdlen]
    try:
        if rtype == 1 and rdlen == 4:
            return str(ipaddress.IPv4Address(rd))
        if rtype == 28 and rdlen == 16:
            return str(ipaddress.IPv6Address(rd))
        if rtype in (2, 5, 12):
            return decode_name(buf, off)[0].lower()
        if rtype == 6:
            mname, o = decode_name(buf, off)
            rname, o = decode_name(buf, o)
            serial, refresh, retry, expire, minimum = struct.unpack("!IIIII", buf[o:o + 20])
            return (mname.lower(), rname.lower(), serial, refresh, retry, expire, minimum)
        if rtype == 15:
            pref = struct.unpack("!H", rd[:2])[0]
            return (pref, decode_name(buf, off + 2)[0].lower())
        if rtype == 33:
            prio, weight, port = struct.unpack("!HHH", rd[:6])
            return (prio, weight, port, decode_name(buf, off + 6)[0].lower())
        if rtype == 16:
            strs, i = [], 0
            while i < len(rd):
                n = rd[i]
                strs.append(rd[i + 1:i + 1 + n].decode("latin-1"))
                i += 1 + n
            return tuple(strs)
    except (struct.error, ValueError, IndexError) as e:
        raise DNSError("bad rdata for type %d: %s" % (rtype, e))
    return rd


class Message:
    """A parsed DNS message."""

    def __init__(self):
        self.id = 0
        self.qr = self.aa = self.tc = self.rd = self.ra = self.ad = self.cd = False
        self.opcode = 0
        self.rcode = 0
        self.question = []      # [(name, type, class)]
        self.answer = []        # [RR]
        self.authority = []
        self.additional = []    # without the OPT
        self.opt = None         # dict(udp_size, ext_rcode, version, do, options) or None
        self.size = 0

    @property
    def rcode_name(self):
        return RCODES.get(self.rcode, "RCODE%d" % self.rcode)

    def answers(self, rtype=None):
        """Data of the answer RRs (of type rtype when given), sorted."""
        t = None if rtype is None else type_num(rtype)
        return sorted(str(r.data) for r in self.answer if t is None or r.type == t)

    def flags_text(self):
        names = [("qr", self.qr), ("aa", self.aa), ("tc", self.tc), ("rd", self.rd),
                 ("ra", self.ra), ("ad", self.ad), ("cd", self.cd)]
        return " ".join(n for n, v in names if v)

    def summary(self):
        return "id=%d %s flags=[%s] q=%s an=%d ns=%d ar=%d size=%d" % (
            self.id, self.rcode_name, self.flags_text(), self.question,
            len(self.answer), len(self.authority), len(self.additional), self.size)

    def __repr__(self):
        return "<Message %s>" % self.summary()


def parse(buf):
    """Parse a whole message; raises DNSError when malformed."""
    if len(buf) < 12:
        raise DNSError("message shorter than a header (%d bytes)" % len(buf))
    m = Message()
    m.size = len(buf)
    m.id, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", buf[:12])
    m.qr = bool(flags & 0x8000)
    m.opcode = (flags >> 11) & 0xF
    m.aa = bool(flags & 0x0400)
    m.tc = bool(flags & 0x0200)
    m.rd = bool(flags & 0x0100)
    m.ra = bool(flags & 0x0080)
    m.ad = bool(flags & 0x0020)
    m.cd = bool(flags & 0x0010)
    m.rcode = flags & 0xF
    off = 12
    for _ in range(qd):
        name, off = decode_name(buf, off)
        if off + 4 > len(buf):
            raise DNSError("truncated question")
        qt, qc = struct.unpack("!HH", buf[off:off + 4])
        off += 4
        m.question.append((name, qt, qc))
    for section, count in ((m.answer, an), (m.authority, ns), (m.additional, ar)):
        for _ in range(count):
            name, off = decode_name(buf, off)
            if off + 10 > len(buf):
                raise DNSError("truncated RR header")
            rtype, cls, ttl, rdlen = struct.unpack("!HHIH", buf[off:off + 10])
            off += 10
            if off + rdlen > len(buf):
                raise DNSError("truncated rdata")
            if rtype == 41:
                if section is not m.additional or m.opt is not None or name != ".":
                    raise DNSError("misplaced or duplicate OPT RR")
                m.opt = {
                    "udp_size": cls,
                    "ext_rcode": ttl >> 24,
                    "version": (ttl >> 16) & 0xFF,
                    "do": bool(ttl & 0x8000),
                    "options": buf[off:off + rdlen],
                }
                m.rcode |= (ttl >> 24) << 4
            else:
                section.append(RR(name, rtype, cls, ttl,
                                  buf[off:off + rdlen],
                                  _decode_rdata(buf, off, rtype, rdlen)))
            off += rdlen
    if off != len(buf):
        raise DNSError("%d trailing bytes after the last RR" % (len(buf) - off))
    return m


def query_id(buf):
    return struct.unpack("!H", buf[:2])[0]


def check_reply(query, reply):
    """Raise DNSError unless @reply (parsed) answers @query (bytes): same ID,
    QR=1, same opcode, and the question echoed byte for byte (case included)."""
    q = parse(query)
    if not reply.qr:
        raise DNSError("reply has QR=0: %s" % reply.summary())
    if reply.id != q.id:
        raise DNSError("reply ID %d != query ID %d" % (reply.id, q.id))
    if reply.opcode != q.opcode:
        raise DNSError("reply opcode %d != query opcode %d" % (reply.opcode, q.opcode))
    if reply.question != q.question:
        # FORMERR/NOTIMP may legitimately come without a question.
        if not (reply.rcode in (1, 4) and not reply.question):
            raise DNSError("question not echoed: asked %s, got %s"
                           % (q.question, reply.question))


# --------------------------------------------------------------- transport

def udp_exchange(addr, wire, timeout=2.0, sock=None):
    """Send one datagram, return the first datagram from @addr carrying the
    same ID (bytes), or None on timeout."""
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.sendto(wire, addr)
        want = query_id(wire) if len(wire) >= 2 else None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                return None
            data, src = sock.recvfrom(65535)
            if src[0] != addr[0] or src[1] != addr[1]:
                continue
            if want is None or (len(data) >= 2 and query_id(data) == want):
                return data
    finally:
        if own:
            sock.close()


def udp_recv_any(sock, timeout):
    """One datagram or None."""
    r, _, _ = select.select([sock], [], [], timeout)
    if not r:
        return None
    return sock.recvfrom(65535)[0]


def recv_exact(sock, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading %d of %d bytes" % (len(buf), n))
        sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            raise TimeoutError("timed out reading %d of %d bytes" % (len(buf), n))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def tcp_read_msg(sock, deadline):
    ln = struct.unpack("!H", recv_exact(sock, 2, deadline))[0]
    return recv_exact(sock, ln, deadline)


def tcp_connect(addr, timeout=2.0):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def tcp_exchange(addr, wire, timeout=2.0):
    s = tcp_connect(addr, timeout)
    try:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        return tcp_read_msg(s, time.monotonic() + timeout)
    finally:
        s.close()


def query(addr, name, qtype="A", qclass="IN", tcp=False, timeout=2.0, check=True, **kw):
    """Send a query, return the parsed reply checked against the question.
    Raises DNSError/TimeoutError."""
    wire = build_query(name, qtype, qclass, **kw)
    if tcp:
        data = tcp_exchange(addr, wire, timeout)
    else:
        data = udp_exchange(addr, wire, timeout)
        if data is None:
            raise TimeoutError("no UDP reply from %s:%d to %s %s within %.1fs"
                               % (addr[0], addr[1], name, qtype, timeout))
    msg = parse(data)
    if check:
        check_reply(wire, msg)
    return msg
