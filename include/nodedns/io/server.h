/* include/nodedns/io/server.h - UDP and TCP listeners of one worker.
 *
 * Each worker has its own sockets on every listen address, opened with
 * SO_REUSEPORT so the kernel spreads clients over the workers (and so a new
 * nodedns can bind the same addresses during a rolling update). UDP reads in
 * batches (recvmmsg through libuv); TCP follows RFC 7766: pipelined queries,
 * answers sent as they complete (out of order), a bound on queries in flight
 * per connection (reading pauses at the bound), an idle timeout, a bound on
 * connections per worker (the oldest idle one is closed to make room), and a
 * bound on unsent reply bytes (a client that does not read is dropped).
 *
 * Runs on the worker's loop thread only. Implemented by src/io/server*.c
 * (their shared types: server_internal.h).
 */
#ifndef NODEDNS_SERVER_H
#define NODEDNS_SERVER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nodedns/util/netaddr.h"
#include "nodedns/dns/query.h"

/* Defaults (--tcp-max-clients, --tcp-idle-timeout, --tcp-max-inflight; the
 * last two have no option). */
#define SERVER_TCP_MAX_CLIENTS_DEFAULT 1000
#define SERVER_TCP_IDLE_TIMEOUT_MS_DEFAULT 10000
#define SERVER_TCP_MAX_INFLIGHT_DEFAULT 100
#define SERVER_TCP_MAX_UNSENT_BYTES_DEFAULT (256 * 1024)
#define SERVER_UDP_MAX_QUEUED_SENDS_DEFAULT 4096

/** Listen addresses a worker serves at most. */
#define SERVER_MAX_LISTEN 16

struct server_config {
	unsigned tcp_max_clients;     /* per worker */
	uint32_t tcp_idle_timeout_ms;
	unsigned tcp_max_inflight;    /* per connection */
	size_t tcp_max_unsent_bytes;  /* per connection, default 256 KiB */
	unsigned udp_max_queued_sends; /* per socket, when the kernel buffer is full */
};

struct server_stats {
	_Atomic uint64_t tcp_accepted, tcp_rejected, tcp_idle_closed, tcp_evicted,
		tcp_slow_closed, tcp_bad_frames, tcp_paused, udp_send_errors,
		udp_sends_queued, udp_sends_dropped;
	_Atomic int64_t tcp_open; /* gauge */
};
struct mbuf;
/** Render the server counters summed over @p n workers' stats (borrowed);
 * ..._dropped() only the samples of METRICS_DROPPED_NAME (src/io/server_metrics.c). */
void server_metrics_render(struct mbuf *b, const struct server_stats *const *per_worker, size_t n);
void server_metrics_render_dropped(struct mbuf *b, const struct server_stats *const *per_worker,
				   size_t n);

/** A pair of bound sockets (not yet listening) for one listen address. */
struct server_fds {
	int udp;
	int tcp;
};

/**
 * Create and bind a UDP and a TCP socket for each of @p addrs with
 * SO_REUSEPORT (and IPV6_V6ONLY for IPv6, IP_FREEBIND so a listen address may
 * appear on its interface later). On failure closes what it opened and writes
 * "listen 127.0.0.1:53/udp: Address already in use" to @p err.
 * @return 0 or -errno.
 */
int server_bind(const struct netaddr *addrs, size_t n, struct server_fds *fds, char *err,
		size_t errlen);

/** Close the fds of server_bind() that were not handed to a server. */
void server_close_fds(struct server_fds *fds, size_t n);

struct server;

/**
 * Start serving on @p loop from the bound sockets @p fds (ownership of the fds
 * passes to the server). Queries go to the query worker set with
 * server_set_query(); until then they are dropped. @return 0 or a UV error.
 */
int server_start(uv_loop_t *loop, const struct server_config *cfg, struct server_fds *fds,
		 size_t n, struct server **out);

/** The callbacks the query worker uses to reply (server is their arg). */
void server_query_io(struct server *s, struct query_io *io);

void server_set_query(struct server *s, struct query_worker *qw);

const struct server_stats *server_stats(const struct server *s);

/** Stop taking new queries: take the UDP sockets out of their SO_REUSEPORT
 * groups (new datagrams go to the other sockets bound to the same address,
 * e.g. a successor's; what was already queued is still answered), close the
 * TCP listeners, stop reading from connections. Replies to queries in flight
 * still go out. */
void server_stop_listening(struct server *s);

/** Close everything and free @p s once libuv has closed its handles. Pending
 * holds from the query worker must have been released. NULL is fine. */
void server_close(struct server *s);

#endif
