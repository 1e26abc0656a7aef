/* src/io/server_internal.h - what the files of a worker's listeners share (not a public header).
 *
 * The listeners (include/nodedns/io/server.h) are three files around one
 * struct server per worker:
 *  - server.c      binding the sockets, the query worker's reply hooks,
 *                  start, stop listening and close;
 *  - server_udp.c  UDP reads (recvmmsg through libuv) and batched replies;
 *  - server_tcp.c  TCP connections: accept, framing, replies, idle timeout,
 *                  eviction and slow clients.
 * struct server owns its udp_sock and tcp_listener arrays, every tcp_conn
 * and their buffers (freed once libuv has closed their handles); the query
 * worker is borrowed. Everything runs on the worker's loop thread.
 */
#ifndef NODEDNS_IO_SERVER_INTERNAL_H
#define NODEDNS_IO_SERVER_INTERNAL_H

#include "nodedns/io/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nodedns/dns/dnsmsg.h"
#include "nodedns/util/log.h"
#include "nodedns/util/wire.h"

/* libuv 1.44 splits the receive buffer into 64 KiB slots and reads up to 20
 * datagrams per recvmmsg call into it; a smaller buffer spins (see the libuv
 * notes in the design research). */
#define UDP_SLOT_BYTES (64 * 1024)
#define UDP_SLOTS 20
#define TCP_READ_BYTES (64 * 1024)
/* UDP replies are collected per socket and sent with one sendmmsg() per loop
 * turn (or when the batch is full): under load a syscall per reply is most
 * of the CPU a cached answer costs. */
#define UDP_BATCH 64
#define UDP_BATCH_SLOT_BYTES 4096
#define TCP_FRAME_MAX (2 + DNS_MSG_MAX_BYTES)

struct udp_batch {
	unsigned n;
	struct mmsghdr msg[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	struct sockaddr_storage addr[UDP_BATCH];
	uint8_t data[UDP_BATCH][UDP_BATCH_SLOT_BYTES];
};

struct udp_sock {
	uv_udp_t h;
	struct server *s;
	unsigned queued; /* uv_udp_send requests not yet completed */
	struct udp_batch *batch;
};

struct tcp_listener {
	uv_tcp_t h;
	struct server *s;
};

struct tcp_conn {
	uv_tcp_t h;
	uv_timer_t idle;
	struct server *s;
	struct tcp_conn *prev, *next; /* the server's list, most recently active first */
	uint8_t *pend;                /* bytes of an incomplete frame */
	size_t pend_len, pend_cap;
	unsigned inflight;            /* queries held by the query worker */
	unsigned refs;                /* inflight + 1 while open */
	unsigned handles;             /* uv handles not yet closed */
	bool closing, paused;
	uint64_t last_ms;
};

struct server {
	uv_loop_t *loop;
	struct server_config cfg;
	struct query_worker *qw;
	struct udp_sock *udp;
	struct tcp_listener *tcp;
	size_t n;
	struct tcp_conn *conns; /* most recently active first */
	struct tcp_conn *conns_tail;
	unsigned nconns;
	unsigned handles; /* open uv handles owned directly by the server */
	uv_prepare_t flush; /* sends the UDP batches before the loop waits for I/O */
	bool stopping, closing;
	uint8_t *udp_buf;  /* in use by libuv while a recvmmsg batch is delivered */
	bool udp_buf_busy;
	uint8_t tcp_buf[TCP_READ_BYTES];
	bool tcp_buf_busy;
	struct server_stats stats;
	struct log_limit lim;
};

/* Counters of one worker have one writer (its thread): a relaxed load and
 * store is enough for the control thread's relaxed reads, and avoids a locked
 * instruction per counter on the path of every query. */
static inline void inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* server_udp.c */
/* libuv's allocation and receive callbacks of the UDP sockets. */
void server_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void server_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
	const struct sockaddr *addr, unsigned flags);

/* Send what the batch of @p u holds with sendmmsg(); what the kernel does not
 * take at once goes through udp_send_one() (queued sends). */
void server_udp_flush(struct server *s, struct udp_sock *u);

/* The uv_prepare_t callback: flush every socket's batch. */
void server_flush_all(uv_prepare_t *h);

/* Reply to @p c on @p u: into the batch, or sent alone when it does not fit. */
void server_udp_reply(struct server *s, struct udp_sock *u, const struct query_client *c,
	const uint8_t *wire, size_t len);

/* Take a UDP socket out of its SO_REUSEPORT group without closing it:
 * connect it to a port nobody sends from (discard, on its own address). Linux
 * then steers every new datagram to the group's unconnected sockets (those of
 * the other workers or of the nodedns taking over during a rolling update),
 * while this socket still delivers what was already queued on it and can send
 * the answers still owed (sendto() on a connected UDP socket is allowed).
 * Closing it instead would drop what the kernel queued on it meanwhile.
 * @return 0, or -errno when the socket stays in the group. */
int server_udp_leave_group(struct udp_sock *u);

/* server_tcp.c */
/* Free @p c once its handles are closed and it holds no query. */
void server_conn_maybe_free(struct tcp_conn *c);

/* Close @p c; queries in flight keep it until released. */
void server_conn_close(struct tcp_conn *c);

/* Send a reply framed with its length on @p c. */
void server_tcp_reply(struct server *s, struct tcp_conn *c, const uint8_t *wire, size_t len);

/* Un-pause @p c: handle the frames it buffered, then read again. */
void server_conn_resume(struct tcp_conn *c);

/* The listeners' connection callback. */
void server_tcp_accept(uv_stream_t *ls, int status);

#endif
