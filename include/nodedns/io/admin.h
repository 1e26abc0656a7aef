/* include/nodedns/io/admin.h - the HTTP endpoints: /metrics, /health, /ready.
 *
 * A minimal HTTP/1.1 responder on the control thread's loop: GET (and HEAD)
 * only, one request per connection (Connection: close), request head bounded
 * to 8 KiB, 2 s to send the request, at most 64 connections per listener (a
 * new one closes the oldest idle one). Anything else gets 400/404/405/431/503
 * and is closed.
 *
 *  - GET /metrics: 200, text/plain; version=0.0.4, the body rendered by
 *    handlers->metrics.
 *  - GET /health: sends a real DNS query (id.server. CH TXT, io/health.h) over UDP to the
 *    first listen address and answers 200 "ok" only when a reply with the same
 *    ID and question arrives within 1 s; 503 otherwise. A wedged data path
 *    fails it.
 *  - GET /ready: 200 "ready" when handlers->ready() says so, else 503.
 *
 * The metrics and health addresses may be the same (one listener serves all
 * three paths) or different (each listener serves all three paths too).
 */
#ifndef NODEDNS_ADMIN_H
#define NODEDNS_ADMIN_H

#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

#include "nodedns/util/metrics.h"

struct admin_handlers {
	/** Append the Prometheus text to @p out. Called on the control loop. */
	void (*metrics)(void *arg, struct mbuf *out);
	/** True when the cluster store has synced (or a snapshot is loaded). */
	bool (*ready)(void *arg);
	void *arg;
};

struct admin_stats {
	_Atomic uint64_t requests, health_failures, rejected_conns,
		evicted_conns; /* clients closed to make room for a new one */
};
struct mbuf;
/** Render @p s (borrowed) (src/io/admin_metrics.c). */
void admin_metrics_render(struct mbuf *b, const struct admin_stats *s);

struct admin;

/**
 * Listen on @p metrics_addr and/or @p health_addr (either may be NULL for
 * "none"; equal addresses share one listener) on @p loop. @p dns_target is the
 * address /health queries (borrowed: copied). @p handlers is copied.
 * @return 0, or a negative UV error (e.g. UV_EADDRINUSE) with nothing left open.
 */
int admin_start(uv_loop_t *loop, const struct sockaddr *metrics_addr,
		const struct sockaddr *health_addr, const struct sockaddr *dns_target,
		const struct admin_handlers *handlers, struct admin **out);

const struct admin_stats *admin_stats(const struct admin *a);

/** Stop listening, close every connection, and free @p a once libuv has closed
 * its handles (keep the loop running). NULL is fine. */
void admin_close(struct admin *a);

#endif
