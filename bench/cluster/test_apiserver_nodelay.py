#!/usr/bin/env python3
"""bench/cluster/test_apiserver_nodelay.py - tests/apiserver/fake_apiserver.py with TCP_NODELAY.

The test stand-in writes each watch event (and each control reply's headers
and body) as separate small sends on sockets without TCP_NODELAY. With the
peer's delayed ACK, Nagle then holds an event that follows another within
~40 ms until that ACK comes: a 40 ms step that kube-apiserver (Go sets
TCP_NODELAY on every connection) does not have. This wrapper sets
TCP_NODELAY on both servers' accepted sockets and runs the stand-in
unchanged otherwise (same arguments).
"""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "apiserver"))
import fake_apiserver  # noqa: E402

_tls_get_request = fake_apiserver.TLSServer.get_request


def tls_get_request(self):
    sock, addr = _tls_get_request(self)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, addr


def plain_get_request(self):
    sock, addr = self.socket.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, addr


fake_apiserver.TLSServer.get_request = tls_get_request
fake_apiserver.ControlServer.get_request = plain_get_request

if __name__ == "__main__":
    fake_apiserver.main()
