"""tests/lib - helpers shared by the Python test suites and the benchmarks.

Standard library only (Python 3.11; tests/deploy runs with Debian's python3).
A script finds the package by putting the repository's tests/ directory first
on sys.path, the same two lines everywhere:

    REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from lib import check, dnswire, metrics, net, procs

Modules:
  check    CheckFailed/Skip, check(), wait_for(), run(), tail()
  procs    start a process in its own session, stop it and its group, wait
           for a log line or a first output line; a registry that stops
           everything a run started
  net      free_port(), wait_port_free(), network namespaces
  dnswire  build DNS queries, parse any message (the one parser), UDP/TCP
  metrics  parse Prometheus text (/metrics)
"""
