/* include/nodedns/io/worker.h - one worker thread: its loop, listeners, upstream pool and query state.
 *
 * The worker is where the query path meets I/O: it gives query_worker_new()
 * the server's reply callbacks (struct query_io) and its own upstream pool
 * as struct query_upstream_ops (send() is upstream_query(); a group without
 * servers is refused with -ENOENT). Closing the pool on stop completes every
 * question still in flight with -ECANCELED.
 *
 * A query lives and dies on one worker. The control thread talks to a worker
 * only through worker_publish() and worker_stop(), which wake its loop with a
 * uv_async; counters are read through the relaxed atomics of each module's
 * stats.
 */
#ifndef NODEDNS_WORKER_H
#define NODEDNS_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "nodedns/dns/query.h"
#include "nodedns/io/server.h"
#include "nodedns/io/upstream.h"

#define WORKER_DRAIN_MS 2000 /* finish queries in flight for at most this long on stop */

/** What every worker shares, read-only after start. */
struct worker_shared {
	struct server_config server;
	struct upstream_config upstream;
	const struct query_env *env;
	/* The cluster snapshot to serve from the first query on (a file
	 * loaded before the workers start), or NULL; each worker takes its own
	 * reference. */
	struct cluster_snapshot *initial_snap;
};

struct worker {
	int id;
	const struct worker_shared *sh;
	uv_thread_t thread;
	uv_loop_t loop;
	uv_async_t async;
	uv_timer_t drain;
	uv_sem_t started;
	int start_rc;
	struct server_fds fds[SERVER_MAX_LISTEN];
	size_t nfds;
	/* Owned by the worker thread; the control thread only reads their
	 * stats after worker_start() returned 0. */
	struct server *server;
	struct upstream *up;
	struct query_worker *qw;
	/* Mailbox from the control thread. */
	pthread_mutex_t mu;
	struct cluster_snapshot *next_snap;
	struct pod_table *next_pods; /* --autopath */
	bool snap_pending, pods_pending, stop_requested;
	uint64_t drain_deadline_ms;
};

/**
 * Start worker @p id on its own thread, serving the bound sockets @p fds
 * (ownership passes to the worker, also on failure). Blocks until the worker
 * is serving or failed. @return 0 or a negative UV error.
 */
int worker_start(struct worker *w, int id, const struct worker_shared *sh,
		 const struct server_fds *fds, size_t nfds);

/** Hand the worker a snapshot; takes ownership of one reference of @p snap. */
void worker_publish(struct worker *w, struct cluster_snapshot *snap);

/** Hand the worker a table of the node's pods (--autopath); takes ownership
 * of one reference of @p pods. */
void worker_publish_pods(struct worker *w, struct pod_table *pods);

/** Ask the worker to stop: stop listening, drain for up to WORKER_DRAIN_MS,
 * then close everything. Returns at once; worker_join() waits. */
void worker_stop(struct worker *w);

/** Wait for the thread to end and free what it left. */
void worker_join(struct worker *w);

#endif
