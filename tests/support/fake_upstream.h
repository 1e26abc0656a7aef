/* tests/support/fake_upstream.h - the query path's upstream, faked: no loop, no sockets.
 *
 * Implements struct query_upstream_ops the way src/io/worker.c does with the
 * upstream module, for tests/unit/test_query.c and tests/fuzz/fuzz_query.c:
 * send() records the question (it must be a well-formed query with one
 * question, else the fake aborts) and returns 0; the test completes a call
 * later, never from inside send(), with a reply or an error status.
 *
 * Groups stay opaque: send() refuses the group in `empty` with -ENOENT, as
 * the worker does for a group without servers. It refuses with -ENOBUFS when
 * `inflight_cap` calls are live or every call slot was used (as
 * upstream_query() does at max_inflight), and returns `next_rc` once when
 * that is set.
 */
#ifndef NODEDNS_TESTS_FAKE_UPSTREAM_H
#define NODEDNS_TESTS_FAKE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodedns/dns/dnsmsg.h"
#include "nodedns/dns/query.h"

#define FAKE_UPSTREAM_CALLS 256 /* calls recorded between resets */
#define FAKE_UPSTREAM_QUERY_BYTES (DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4 + DNS_OPT_RR_BYTES)

/** One send() the fake accepted. */
struct fake_upstream_call {
	const struct upstream_group *group; /* as given to send() */
	uint8_t query[FAKE_UPSTREAM_QUERY_BYTES];
	size_t len;
	size_t qend; /* end of the question in query */
	query_upstream_done_cb cb;
	void *arg;
	bool live; /* not completed yet */
};

struct fake_upstream {
	struct query_upstream_ops ops; /* hand this to query_worker_new() */
	struct fake_upstream_call calls[FAKE_UPSTREAM_CALLS];
	size_t ncalls;                      /* recorded since fake_upstream_init() */
	unsigned inflight;                  /* live calls */
	unsigned inflight_cap;              /* -ENOBUFS beyond this many live calls */
	int next_rc;                        /* when set: send() returns it once */
	const struct upstream_group *empty; /* a group without servers, or NULL */
};

/** Reset @p f (no calls) with room for @p inflight_cap live calls. */
void fake_upstream_init(struct fake_upstream *f, unsigned inflight_cap);

/** Complete @p c with @p status; @p reply (borrowed) is passed only with
 * status 0, as is, without any check. */
void fake_upstream_finish(struct fake_upstream *f, struct fake_upstream_call *c, int status,
			  const uint8_t *reply, size_t len);

/** Complete @p c the way the upstream module would with @p reply (writable,
 * borrowed) as the server's answer: status 0 with the call's ID restored when
 * it is a response carrying the call's question (name compared without case,
 * type, class), else -EPROTO. */
void fake_upstream_reply(struct fake_upstream *f, struct fake_upstream_call *c, uint8_t *reply,
			 size_t len);

/** Whether @p reply carries the question of @p c (see fake_upstream_reply()). */
bool fake_upstream_matches(const struct fake_upstream_call *c, const uint8_t *reply, size_t len);

/** The live call @p sel counts to, modulo the live ones; NULL when none. */
struct fake_upstream_call *fake_upstream_pick(struct fake_upstream *f, unsigned sel);

/** Complete every live call with -ECANCELED, as closing the upstream does. */
void fake_upstream_cancel_all(struct fake_upstream *f);

#endif
