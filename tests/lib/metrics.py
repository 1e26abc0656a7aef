"""metrics.py - parse the Prometheus text format that /metrics serves.

Metrics(text) keeps every sample as (name, {labels}, value) and the # TYPE of
each metric. Strict by default: a line that is not a valid sample raises
CheckFailed (a test wants to know); strict=False skips such lines (the
benchmarks only read numbers).
"""

import re

from lib.check import CheckFailed

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def _labels(s, line):
    labels = {}
    pos = 0
    while pos < len(s):
        lm = _LABEL.match(s, pos)
        if not lm:
            raise CheckFailed("bad labels in /metrics line: %r" % line)
        labels[lm.group(1)] = lm.group(2)
        pos = lm.end()
    return labels


class Metrics:
    """Parsed Prometheus text: samples as (name, {labels}, value)."""

    def __init__(self, text, strict=True):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.text = text
        self.samples = []
        self.series_text = []   # the text before the value, per sample
        self.types = {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3]
                continue
            try:
                self._sample(line)
            except CheckFailed:
                if strict:
                    raise

    def _sample(self, line):
        m = _SAMPLE.match(line)
        if not m:
            raise CheckFailed("unparsable /metrics line: %r" % line)
        labels = _labels(m.group(3), line) if m.group(3) else {}
        try:
            v = float(m.group(4))
        except ValueError:
            raise CheckFailed("bad value in /metrics line: %r" % line)
        self.samples.append((m.group(1), labels, v))
        self.series_text.append(m.group(1) + (m.group(2) or ""))

    def has(self, name):
        return any(n == name for n, _, _ in self.samples)

    def require(self, name):
        if not self.has(name):
            names = sorted({n for n, _, _ in self.samples if n.startswith("nodedns_")})
            raise CheckFailed("metric %s missing from /metrics (have: %s)"
                              % (name, ", ".join(names) or "none"))

    def sum(self, name, **labels):
        """Sum of the samples of @name whose labels include @labels.
        Fails when the metric is missing altogether."""
        self.require(name)
        return self.total(name, **labels)

    def total(self, name, **labels):
        """Like sum(), but None when @name has no sample at all."""
        if not self.has(name):
            return None
        tot = 0.0
        for n, l, v in self.samples:
            if n == name and all(l.get(k) == str(val) for k, val in labels.items()):
                tot += v
        return tot

    def label_values(self, name, label):
        return sorted({l.get(label) for n, l, _ in self.samples if n == name and label in l})

    def series(self):
        """{series as printed, 'name{k="v",...}': value}."""
        return {s: v for s, (_, _, v) in zip(self.series_text, self.samples)}

    def totals(self):
        """{name: sum of its samples over all labels}."""
        out = {}
        for n, _, v in self.samples:
            out[n] = out.get(n, 0.0) + v
        return out
