/* include/nodedns/io/health.h - the DNS probe behind GET /health.
 *
 * One probe sends a real DNS query (id.server. CH TXT, a random ID) over UDP
 * to a target address and reports whether a reply with the same ID, QR=1,
 * opcode QUERY and the same question (name compared without case) arrives
 * from that address. Any RCODE counts as alive. The probe has no timer of its
 * own: the owner bounds the wait and closes the probe.
 *
 * The owner allocates struct health_probe (admin embeds one per connection)
 * and keeps it alive until the close callback given to health_probe_close()
 * has run. Runs on the owner's loop thread only.
 */
#ifndef NODEDNS_IO_HEALTH_H
#define NODEDNS_IO_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/** The query: header, id.server., TXT, CH. */
#define HEALTH_QUERY_BYTES 27
/** Replies longer than this are cut and still matched on their head. */
#define HEALTH_REPLY_MAX_BYTES 512

/**
 * The result, at most once per health_probe_start() that returned 0, never
 * after health_probe_close(). @p why is NULL for a matching reply, else a
 * static string ("recv", "send") with @p err the UV error.
 */
typedef void (*health_probe_cb)(void *arg, const char *why, int err);

/** Caller-owned; all members are private to health.c but for `open`. */
struct health_probe {
	uv_udp_t udp;
	uv_udp_send_t send;
	bool open;   /* read-only: the UDP handle is initialised and not closing */
	bool active; /* waiting for the reply; the callback has not run */
	health_probe_cb cb;
	void *arg;
	struct sockaddr_storage target;
	uint8_t query[HEALTH_QUERY_BYTES];
	uint8_t reply[HEALTH_REPLY_MAX_BYTES];
};

/**
 * Open a UDP socket connected to @p target (copied) on @p loop and send the
 * query. @return 0 (@p cb will tell the result), or a negative UV error with
 * *why naming the step that failed ("socket", "connect", "recv", "send");
 * @p cb is not called then. Whenever p->open is true afterwards (success or
 * not), the owner must call health_probe_close().
 */
int health_probe_start(struct health_probe *p, uv_loop_t *loop, const struct sockaddr *target,
		       health_probe_cb cb, void *arg, const char **why);

/**
 * Stop waiting (the callback will not run) and close the UDP handle; @p closed
 * runs once libuv has closed it, with the handle's data set to @p data.
 * Does nothing when the probe is not open.
 */
void health_probe_close(struct health_probe *p, uv_close_cb closed, void *data);

/** Whether @p p (@p n bytes) answers the query in @p query: same ID, QR=1,
 * opcode QUERY, one question equal to the query's (without case). Pure;
 * exposed for the unit tests. */
bool health_reply_matches(const uint8_t query[HEALTH_QUERY_BYTES], const uint8_t *p, size_t n);

#endif
