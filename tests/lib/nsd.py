"""nsd.py - the configuration of an NSD serving test zones from a directory.

write(directory, zones, addresses) writes each zone file (zones: {name:
text}) and an nsd.conf that serves them on @addresses ("IP@PORT"), with
every file NSD keeps (pid, log, xfrd state, zone list) inside @directory,
no chroot, no user switch and no remote control. It returns the path of the
nsd.conf, to run as `nsd -d -c PATH`. The tests/node suites use it;
tests/integration/harness.py keeps its own text (it tunes TCP and ANY).
"""

import os


def config(directory, zones, addresses):
    lines = ["server:"]
    lines += ["    ip-address: %s" % a for a in addresses]
    lines += ["    do-ip6: no",
              "    server-count: 1",
              '    username: ""',
              '    chroot: ""',
              '    zonesdir: "%s"' % directory,
              '    database: ""',
              '    zonelistfile: "%s/zone.list"' % directory,
              '    xfrdfile: "%s/xfrd.state"' % directory,
              '    xfrdir: "%s"' % directory,
              '    pidfile: "%s/nsd.pid"' % directory,
              '    logfile: "%s/nsd.log"' % directory,
              "    verbosity: 1",
              "remote-control:",
              "    control-enable: no"]
    for name in zones:
        lines += ["zone:", '    name: "%s"' % name, '    zonefile: "%s.zone"' % name]
    return "\n".join(lines) + "\n"


def write(directory, zones, addresses):
    os.makedirs(directory, exist_ok=True)
    for name, text in zones.items():
        with open(os.path.join(directory, name + ".zone"), "w") as f:
            f.write(text)
    path = os.path.join(directory, "nsd.conf")
    with open(path, "w") as f:
        f.write(config(directory, zones, addresses))
    return path
