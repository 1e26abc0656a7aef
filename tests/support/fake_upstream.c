/* tests/support/fake_upstream.c - the query path's upstream, faked: no loop, no sockets. */
#include "support/fake_upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/util/wire.h"

static int fake_send(void *ctx, const struct upstream_group *group, const uint8_t *query,
		     size_t len, query_upstream_done_cb cb, void *arg)
{
	struct fake_upstream *f = ctx;
	if (f->next_rc) {
		int rc = f->next_rc;
		f->next_rc = 0;
		return rc;
	}
	if (group == f->empty)
		return -ENOENT;
	/* What the query path forwards is a well-formed query with one question. */
	struct dnsmsg_query q;
	if (dnsmsg_parse_query(query, len, &q) != DNSMSG_OK || !q.has_question ||
	    len > FAKE_UPSTREAM_QUERY_BYTES) {
		fprintf(stderr, "fake_upstream: the query path sent a bad query (%zu bytes)\n", len);
		abort();
	}
	if (f->inflight >= f->inflight_cap || f->ncalls >= FAKE_UPSTREAM_CALLS)
		return -ENOBUFS;
	struct fake_upstream_call *c = &f->calls[f->ncalls++];
	c->group = group;
	memcpy(c->query, query, len);
	c->len = len;
	c->qend = DNS_HEADER_BYTES + q.qname_len + 4u;
	c->cb = cb;
	c->arg = arg;
	c->live = true;
	f->inflight++;
	return 0;
}

void fake_upstream_init(struct fake_upstream *f, unsigned inflight_cap)
{
	memset(f, 0, sizeof(*f));
	f->ops.send = fake_send;
	f->ops.ctx = f;
	f->inflight_cap = inflight_cap;
}

void fake_upstream_finish(struct fake_upstream *f, struct fake_upstream_call *c, int status,
			  const uint8_t *reply, size_t len)
{
	if (!c->live) {
		fprintf(stderr, "fake_upstream: call completed twice\n");
		abort();
	}
	c->live = false;
	f->inflight--;
	c->cb(c->arg, status, status == 0 ? reply : NULL, status == 0 ? len : 0, NULL);
}

bool fake_upstream_matches(const struct fake_upstream_call *c, const uint8_t *p, size_t n)
{
	return n >= DNS_HEADER_BYTES && (p[2] & 0x80) &&
	       dnsmsg_question_match(c->query, c->qend, p, n);
}

void fake_upstream_reply(struct fake_upstream *f, struct fake_upstream_call *c, uint8_t *reply,
			 size_t len)
{
	if (!fake_upstream_matches(c, reply, len)) {
		fake_upstream_finish(f, c, -EPROTO, NULL, 0);
		return;
	}
	memcpy(reply, c->query, 2); /* upstream.c restores the caller's ID */
	fake_upstream_finish(f, c, 0, reply, len);
}

struct fake_upstream_call *fake_upstream_pick(struct fake_upstream *f, unsigned sel)
{
	if (f->inflight == 0)
		return NULL;
	unsigned k = sel % f->inflight;
	for (size_t i = 0; i < f->ncalls; i++)
		if (f->calls[i].live && k-- == 0)
			return &f->calls[i];
	return NULL;
}

void fake_upstream_cancel_all(struct fake_upstream *f)
{
	for (size_t i = 0; i < f->ncalls; i++)
		if (f->calls[i].live)
			fake_upstream_finish(f, &f->calls[i], -ECANCELED, NULL, 0);
}
