/* include/nodedns/node/supervisor.h - the supervisor: owner of the node setup, restarter of the resolver.
 *
 * With node setup on (--setup-interface, --setup-iptables), the nodedns
 * process started by the operator becomes a small supervisor and runs the
 * resolver as its child: the same binary (/proc/self/exe) with the same argv
 * and NODEDNS_SUPERVISED=1 in its environment.
 *
 * The supervisor
 *  - lowers its own oom_score_adj to -998 (the child gets the original
 *    value back), so the OOM killer takes the resolver, never the process
 *    that can clean up after it;
 *  - takes a shared lock on RUN_DIR/instance.lock (node/instance_lock.h;
 *    RUN_DIR: env NODEDNS_RUN_DIR, default /run/nodedns, a hostPath in the
 *    DaemonSet);
 *  - puts the listen addresses on the interface, starts the resolver, and
 *    installs the iptables rules once the resolver says it is serving (so a
 *    resolver that cannot start never gets the node's DNS traffic);
 *  - re-ensures everything every 60 s (env NODEDNS_REENSURE_MS), on a work
 *    thread, so that a restart is never delayed by a slow iptables;
 *  - restarts the resolver at once when it dies (OOM kill, SIGKILL, crash);
 *    after 5 deaths within 10 s it waits (1 s, doubling up to 30 s) and, if
 *    no other nodedns instance is alive on the node, removes the rules in the
 *    meantime: in transparent mode the queries go back to kube-dns, and they
 *    are never black-holed; they come back when a resolver serves again;
 *  - forwards SIGHUP; on SIGTERM/SIGINT forwards the signal, waits for the
 *    resolver to drain (SIGKILL after 5 s), then tears the node setup down
 *    (rules first, then the interface) unless another instance still holds
 *    the lock (a rolling update with maxSurge: the new pod keeps serving on
 *    the same addresses with SO_REUSEPORT), and exits 0.
 *
 * A resolver that exits before it ever served (bad config: 2, port in use: 1)
 * makes the supervisor tear down and exit with the same status.
 *
 * The resolver side (struct supervisor_child) is three calls in main.c:
 * attach at start, ready once the sockets are serving, and the metrics.
 * Counters live in a memfd page shared by both processes (fd 3 of the
 * child); the ready signal is one byte on a pipe (fd 4 of the child).
 *
 * The supervisor side is src/node/supervisor.c, the resolver side
 * src/node/supervisor_child.c; the end of this header is what they share.
 */
#ifndef NODEDNS_SUPERVISOR_H
#define NODEDNS_SUPERVISOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nodedns/util/metrics.h"
#include "nodedns/node/netsetup.h"

#define SUPERVISOR_RUN_DIR "/run/nodedns"
#define SUPERVISOR_REENSURE_MS 60000
#define SUPERVISOR_STOP_TIMEOUT_MS 5000   /* SIGTERM forwarded -> SIGKILL */
#define SUPERVISOR_READY_TIMEOUT_MS 10000 /* a started resolver must serve by then */
#define SUPERVISOR_CRASH_LIMIT 5          /* deaths ...                   */
#define SUPERVISOR_CRASH_WINDOW_MS 10000  /* ... within this long: back off */
#define SUPERVISOR_BACKOFF_MIN_MS 1000
#define SUPERVISOR_BACKOFF_MAX_MS 30000
#define SUPERVISOR_STABLE_MS 60000        /* serving this long resets the backoff */
#define SUPERVISOR_OOM_SCORE_ADJ (-998)

/* The listening sockets the supervisor binds once and hands to every
 * resolver it starts, at fds SUPERVISOR_LISTEN_FD_BASE.., their count in
 * the environment variable SUPERVISOR_LISTEN_FDS_ENV. They outlive a
 * resolver that dies: datagrams queued meanwhile are read by the next one,
 * and clients never see a port-unreachable while it restarts. */
#define SUPERVISOR_LISTEN_FD_BASE 5
#define SUPERVISOR_LISTEN_FDS_ENV "NODEDNS_LISTEN_FDS"

struct supervisor_config {
	struct netsetup_config net;
	char run_dir[256];
	uint32_t reensure_ms;
	uint32_t stop_timeout_ms;
	uint32_t ready_timeout_ms;
	const int *listen_fds; /* borrowed, kept open by the caller; may be NULL */
	size_t nlisten_fds;
};

/**
 * Defaults, then the environment: NODEDNS_RUN_DIR, NODEDNS_REENSURE_MS
 * (100..3600000), NODEDNS_IPTABLES_BACKEND (auto|plain|legacy|nft).
 * The caller fills @c net (addresses, interface, iptables, health port).
 * @return 0, or -EINVAL with a one-line reason in @p err.
 */
int supervisor_config_init(struct supervisor_config *sc, char *err, size_t errlen);

/**
 * Become the supervisor: run until SIGTERM/SIGINT or until the resolver
 * fails to start. @p argv (borrowed) is passed to the resolver as is.
 * Call it from the main thread before any other thread or loop exists.
 * @return the process exit status.
 */
int supervisor_run(const struct supervisor_config *sc, char **argv);

/* ----------------------------------------------------- resolver side */

struct supervisor_shared;

struct supervisor_child {
	const struct supervisor_shared *shared; /* NULL: no shared counters */
	int ready_fd;                           /* -1 once used or when absent */
	bool supervised;
};

/**
 * In the resolver: when NODEDNS_SUPERVISED=1, ask for SIGTERM if the
 * supervisor dies, restore the original oom_score_adj, map the shared
 * counters and keep the ready pipe. @return 1 when supervised (skip node
 * setup), 0 when not, -ESRCH when the supervisor is already gone (exit).
 */
int supervisor_child_attach(struct supervisor_child *c);

/** Tell the supervisor the resolver is serving. Once; no-op unsupervised. */
void supervisor_child_ready(struct supervisor_child *c);

/** The supervisor's series (node setup errors and repairs, resolver
 * restarts) read from the shared page; nothing when not supervised. */
void supervisor_child_render_metrics(const struct supervisor_child *c, struct mbuf *b);

/** Unmap and close. Safe on a zeroed or detached struct. */
void supervisor_child_detach(struct supervisor_child *c);

/* ------------------------------- shared by the two sides (no other use) */

#define SUPERVISOR_SHARED_MAGIC 0x6e6f6465646e7331ull /* "nodedns1" */
#define SUPERVISOR_CHILD_STATS_FD 3
#define SUPERVISOR_CHILD_READY_FD 4
#define SUPERVISOR_ENV_SUPERVISED "NODEDNS_SUPERVISED"
#define SUPERVISOR_ENV_PID "NODEDNS_SUPERVISOR_PID"
#define SUPERVISOR_ENV_OOM "NODEDNS_OOM_SCORE_ADJ"

/** The counters page, written by the supervisor, read by the resolver. */
struct supervisor_shared {
	uint64_t magic; /* SUPERVISOR_SHARED_MAGIC */
	uint64_t size;  /* sizeof(struct supervisor_shared) */
	struct netsetup_stats net;
	_Atomic uint64_t restarts;    /* resolver processes started after a death */
	_Atomic uint64_t crash_loops; /* times the restart backoff kicked in */
};

/** Write @p v to this process's /proc/self/oom_score_adj. @return 0 or -errno. */
int supervisor_write_oom(int v);

#endif
