#!/usr/bin/env python3
""".ci/plain_bounds.py - the tests whose checks are looser under ASan.

`make test` runs the integration and watch suites in full against the ASan
build (`make asan`); against the plain build it runs only the tests that
check something the ASan run cannot: RSS, throughput and loop-latency bounds
that are relaxed (or skipped) when the binary is sanitized. This script finds
them in the source, so a new bound is picked up without a list to maintain:
a test is selected when its body, or a function it calls (by name,
transitively), reads a name or a string containing "asan" (is_asan(),
`asan = ...`, `"asan" in path`).

  plain_bounds.py --integration   one line per suite of tests/integration/
                                  that has such tests: "FILE NAME..."
  plain_bounds.py --watch         the -k filter of tests/apiserver/test_watch.py
                                  (one substring common to all such scenarios;
                                  exit 1 when there is none)
"""
import ast
import glob
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def mentions_asan(fn):
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and "asan" in node.id.lower():
            return True
        if isinstance(node, ast.Attribute) and "asan" in node.attr.lower():
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "asan" in node.value:
            return True
    return False


def called_names(fn):
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                out.add(f.id)
            elif isinstance(f, ast.Attribute):
                out.add(f.attr)
    return out


def dependent_functions(path):
    """{function or method name: node} of @path whose checks depend on ASan."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    funcs = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            funcs.setdefault(node.name, node)
    dep = {n for n, fn in funcs.items() if mentions_asan(fn)}
    while True:
        more = {n for n, fn in funcs.items() if n not in dep and called_names(fn) & dep}
        if not more:
            return {n: funcs[n] for n in dep}
        dep |= more


def is_harness_test(fn):
    return any(isinstance(d, ast.Name) and d.id == "test" for d in fn.decorator_list)


def integration():
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "integration", "*.py"))):
        names = sorted(n for n, fn in dependent_functions(path).items() if is_harness_test(fn))
        if names:
            print(os.path.relpath(path, ROOT), " ".join(names))
    return 0


def watch():
    path = os.path.join(ROOT, "tests", "apiserver", "test_watch.py")
    names = sorted(n[len("test_"):] for n in dependent_functions(path) if n.startswith("test_"))
    if not names:
        print("plain_bounds: no bounded scenario found in %s" % path, file=sys.stderr)
        return 1
    prefix = os.path.commonprefix(names)
    if not prefix:
        print("plain_bounds: %s have no common substring for -k" % names, file=sys.stderr)
        return 1
    print(prefix)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--integration"]:
        sys.exit(integration())
    if sys.argv[1:] == ["--watch"]:
        sys.exit(watch())
    print(__doc__, file=sys.stderr)
    sys.exit(2)
