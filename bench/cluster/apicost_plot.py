#!/usr/bin/env python3
"""bench/cluster/apicost_plot.py - the reconnect curve of bench/cluster/apicost.py as a PNG.

Usage: apicost_plot.py CURVE.json OUT.png
CURVE.json: {"curve": [[seconds after the restart, requests/s], ...],
"down_s": s, "clients": N, "all_resynced_s": s}. Needs matplotlib (Debian:
python3-matplotlib); exits 2 without it.
"""
import json
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit(2)


def main():
    with open(sys.argv[1]) as f:
        d = json.load(f)
    t = [p[0] for p in d["curve"]]
    r = [p[1] for p in d["curve"]]
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.plot(t, r, drawstyle="steps-post", color="tab:blue", label="API requests/s")
    ax.axvspan(0, d["down_s"], color="tab:red", alpha=0.15, label="API server down")
    if d.get("all_resynced_s"):
        ax.axvline(d["all_resynced_s"], color="tab:green", linestyle="--",
                   label="all %d clients resynced" % d["clients"])
    ax.set_xlabel("seconds after the API server restart")
    ax.set_ylabel("requests/s at the API server")
    ax.set_title("%d nodedns watch clients through an API server restart" % d["clients"])
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
