/* src/dns/autopath.c - answer a pod's search-path expansion in one round trip.
 *
 * One struct walk per query taken over: it holds the client and its
 * question, and the step of the search path in flight. Cluster steps are
 * answered in place from the snapshot; the others go through
 * query_forward() with an internal client whose query_sub is the walk, so
 * the walk resumes in walk_done() when the cache or the upstream answers
 * (at once on a cache hit: the recursion is bounded by the number of steps).
 */
#include "nodedns/dns/autopath.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/cluster/pod_table.h"
#include "nodedns/util/wire.h"
#include "query_internal.h"

/* Room a cluster step leaves for the CNAME merged in front of its answer. */
#define CLUSTER_STEP_CAP (DNS_MSG_MAX_BYTES - 2 * DNS_NAME_MAX_BYTES - 64)

struct walk {
	struct query_sub sub; /* first: the internal client's conn points here */
	struct query_client client;
	struct dnsmsg_query q; /* the client's question */
	uint64_t start_ms;
	size_t base_len;       /* bytes of X's labels at the start of q.qname */
	unsigned step;         /* index in autopath_config.steps of the name in flight */
	uint8_t tname[DNS_NAME_MAX_BYTES]; /* that name, the client's case for X */
	size_t tlen;
};

static int name_from_text(const char *text, uint8_t *out)
{
	char low[DNS_NAME_MAX_BYTES + 2];
	size_t n = strlen(text);
	if (n > 0 && text[n - 1] == '.')
		n--;
	if (n == 0 || n > DNS_NAME_MAX_BYTES)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)text[i]);
	low[n] = '\0';
	size_t len = dnsmsg_name_from_text(low, out);
	return len > 1 ? (int)len : -EINVAL;
}

static int add_step(struct autopath_config *cfg, const uint8_t *name, size_t len)
{
	if (cfg->nsteps >= AUTOPATH_MAX_STEPS)
		return -EINVAL;
	memcpy(cfg->steps[cfg->nsteps].name, name, len);
	cfg->steps[cfg->nsteps].len = (uint8_t)len;
	cfg->nsteps++;
	return 0;
}

int autopath_config_init(struct autopath_config *cfg, const char *zone, const char *const *search,
			 size_t nsearch, uint32_t ttl_s)
{
	uint8_t z[DNS_NAME_MAX_BYTES], name[DNS_NAME_MAX_BYTES];
	memset(cfg, 0, sizeof(*cfg));
	int zl = name_from_text(zone, z);
	if (zl < 0 || zl + 4 > DNS_NAME_MAX_BYTES || nsearch > AUTOPATH_MAX_SEARCH)
		return -EINVAL;
	cfg->ttl_s = ttl_s;
	memcpy(cfg->ns_tail, "\3svc", 4);
	memcpy(cfg->ns_tail + 4, z, (size_t)zl);
	cfg->ns_tail_len = 4 + (size_t)zl;
	add_step(cfg, cfg->ns_tail, cfg->ns_tail_len);
	add_step(cfg, z, (size_t)zl);
	for (size_t i = 0; i < nsearch; i++) {
		int n = name_from_text(search[i], name);
		if (n < 0)
			return -EINVAL;
		add_step(cfg, name, (size_t)n);
	}
	return add_step(cfg, (const uint8_t *)"", 1);
}

/* ------------------------------------------------------------- endings */

static void walk_end(struct query_worker *w, struct walk *wk, size_t n, const char *source)
{
	query_send_body(w, &wk->client, &wk->q, n, 0, source, wk->start_ms);
	if (w->io.release)
		w->io.release(w->io.arg, &wk->client);
	free(wk);
}

/* --------------------------------------------------------- the answer
 *
 * The answer is the found name's body T behind a CNAME to it:
 *
 *   header | question (the client's) | CNAME: ptr to the question -> T's
 *   question name | T's records (every section), byte for byte
 *
 * T's records move by a fixed distance, and T's question name now lies in
 * the CNAME's data, so every compression pointer in them is rewritten:
 * into T's question name -> into the CNAME's data; into T's records -> moved
 * by the same distance. Pointers keep their two bytes, so no length changes.
 * Names are where RFC 1035 and RFC 3597 allow compression (owners; the data
 * of CNAME, NS, PTR, MX, SOA, and SRV and DNAME, which some servers compress
 * anyway); anything that does not walk gives up, and the caller merges
 * through ldns instead (dnsmsg_merge_chase()).
 */
struct remap {
	size_t qname_at, qname_len; /* T's question name */
	size_t rec_at;              /* T's first record */
	size_t cname_data;          /* the CNAME's data in the output */
	size_t delta;               /* output offset - T offset, for records */
};

/* Check the pointer (if any) ending the name at @p off of @p t (bounded by
 * @p end) and, when @p out is not NULL, write its new value at the name's new
 * place in @p out. @return the offset after the name, or 0. */
static size_t patch_name(const uint8_t *t, size_t end, size_t off, uint8_t *out,
			 const struct remap *m)
{
	while (off < end) {
		uint8_t l = t[off];
		if (l == 0)
			return off + 1;
		if ((l & 0xc0) == 0xc0) {
			if (off + 2 > end)
				return 0;
			size_t to = ((size_t)(l & 0x3f) << 8) | t[off + 1], nt;
			if (to >= m->qname_at && to < m->qname_at + m->qname_len)
				nt = m->cname_data + (to - m->qname_at);
			else if (to >= m->rec_at && to < off)
				nt = to + m->delta;
			else
				return 0;
			if (nt > 0x3fff)
				return 0;
			if (out) {
				uint8_t hi = (uint8_t)(0xc0 | (nt >> 8)), lo = (uint8_t)nt;
				out[off + m->delta] = hi;
				out[off + 1 + m->delta] = lo;
			}
			return off + 2;
		}
		if (l & 0xc0)
			return 0;
		off += 1u + l;
	}
	return 0;
}

/* Patch the names in one record's data (@p type, [@p at, @p end)). */
static bool patch_rdata(const uint8_t *t, uint16_t type, size_t at, size_t end, uint8_t *out,
			const struct remap *m)
{
	switch (type) {
	case DNS_TYPE_CNAME:
	case DNS_TYPE_NS:
	case DNS_TYPE_PTR:
	case DNS_TYPE_DNAME:
		return patch_name(t, end, at, out, m) == end;
	case 15: /* MX */
		return at + 2 < end && patch_name(t, end, at + 2, out, m) == end;
	case DNS_TYPE_SRV:
		return at + 6 < end && patch_name(t, end, at + 6, out, m) == end;
	case DNS_TYPE_SOA: {
		size_t p = patch_name(t, end, at, out, m);
		p = p ? patch_name(t, end, p, out, m) : 0;
		return p && p + 20 == end;
	}
	default:
		return true; /* no compression allowed (RFC 3597 4) */
	}
}

/* Walk T's records (@p n of them from m->rec_at to @p end), checking every
 * name; with @p out, rewrite their pointers there. @return success. */
static bool patch_records(const uint8_t *t, size_t end, unsigned n, uint8_t *out,
			  const struct remap *m)
{
	size_t p = m->rec_at;
	for (unsigned i = 0; i < n; i++) {
		if ((p = patch_name(t, end, p, out, m)) == 0 || p + 10 > end)
			return false;
		uint16_t type = wire_get16(t + p), rdlen = wire_get16(t + p + 8);
		p += 10;
		if (p + rdlen > end || !patch_rdata(t, type, p, p + rdlen, out, m))
			return false;
		p += rdlen;
	}
	return p == end;
}

/* Turn the body in @p buf (@p tl bytes, capacity @p cap) into the answer, in
 * place: @p cn (@p o bytes: header, the client's question, the CNAME's owner,
 * type, class and TTL) in front, then the CNAME's data length and data (T's
 * question name), then T's records. Nothing is changed unless it succeeds.
 * @return the answer's length, or 0. */
static size_t wire_merge(uint8_t *buf, size_t cap, size_t tl, const uint8_t *cn, size_t o)
{
	if (tl < DNS_HEADER_BYTES || wire_get16(buf + 4) != 1)
		return 0;
	size_t qn = dnsmsg_plain_name_len(buf, tl, DNS_HEADER_BYTES);
	size_t rec = DNS_HEADER_BYTES + qn + 4;
	size_t out_rec = o + 2 + qn;
	if (qn == 0 || rec > tl || out_rec < rec || out_rec + (tl - rec) > cap)
		return 0;
	struct remap m = { DNS_HEADER_BYTES, qn, rec, o + 2, out_rec - rec };
	uint16_t an = wire_get16(buf + 6), ns = wire_get16(buf + 8), ar = wire_get16(buf + 10);
	uint8_t rcode = buf[3] & 0x0f;
	if (an == 0xffff || !patch_records(buf, tl, (unsigned)an + ns + ar, NULL, &m))
		return 0;
	uint8_t qname[DNS_NAME_MAX_BYTES];
	memcpy(qname, buf + DNS_HEADER_BYTES, qn);
	memmove(buf + out_rec, buf + rec, tl - rec);
	/* The moved records, addressed by their old offsets. */
	patch_records(buf + m.delta, tl, (unsigned)an + ns + ar, buf, &m);
	memcpy(buf, cn, o);
	wire_put16(buf + o, (uint16_t)qn);
	memcpy(buf + o + 2, qname, qn);
	wire_put16(buf + 6, (uint16_t)(an + 1));
	wire_put16(buf + 8, ns);
	wire_put16(buf + 10, ar);
	buf[3] = (uint8_t)(0x80 | rcode); /* RA; the rcode of the name found */
	return out_rec + (tl - rec);
}

/* The answer of the step in flight (@p body, @p blen; may be w->buf) behind
 * a CNAME from the asked name to it. */
static void end_found(struct query_worker *w, struct walk *wk, const uint8_t *body, size_t blen)
{
	const struct query_env *env = w->env;
	const struct dnsmsg_query *q = &wk->q;
	uint8_t cn[DNS_HEADER_BYTES + 2 * DNS_NAME_MAX_BYTES + 16];
	uint8_t low[DNS_NAME_MAX_BYTES];
	wire_lower_copy(low, wk->tname, wk->tlen);
	bool in_zone = dnsmsg_name_under(low, wk->tlen, w->zone, w->zone_len);

	memset(cn, 0, DNS_HEADER_BYTES);
	cn[2] = 0x80 | (in_zone ? 0x04 : 0) | (q->rd ? 0x01 : 0); /* QR, AA for our own names */
	cn[3] = 0x80;                                               /* RA */
	wire_put16(cn + 4, 1);
	wire_put16(cn + 6, 1);
	size_t o = DNS_HEADER_BYTES;
	memcpy(cn + o, q->qname, q->qname_len);
	o += q->qname_len;
	wire_put16(cn + o, q->qtype);
	wire_put16(cn + o + 2, q->qclass);
	o += 4;
	cn[o++] = 0xc0; /* the question's name */
	cn[o++] = DNS_HEADER_BYTES;
	wire_put16(cn + o, DNS_TYPE_CNAME);
	wire_put16(cn + o + 2, DNS_CLASS_IN);
	wire_put32(cn + o + 4, env->autopath->ttl_s);
	o += 8; /* the data length and the data: by wire_merge(), or below */

	int rcode = dnsmsg_rcode(body);
	size_t n = 0;
	if (body != w->buf && blen <= sizeof(w->buf))
		memmove(w->buf, body, blen);
	if (blen <= sizeof(w->buf))
		n = wire_merge(w->buf, sizeof(w->buf), blen, cn, o);
	if (n == 0) {
		wire_put16(cn + o, (uint16_t)wk->tlen);
		memcpy(cn + o + 2, wk->tname, wk->tlen);
		size_t clen = o + 2 + wk->tlen;
		n = dnsmsg_merge_chase(cn, clen, body, blen, w->buf, sizeof(w->buf));
		if (n == 0) {
			memcpy(w->buf, cn, clen);
			n = clen;
		}
	}
	if (rcode == DNS_RCODE_NOERROR)
		query_inc(&w->stats.autopath_answers);
	if (wk->step + 1 == env->autopath->nsteps)
		query_inc(&w->stats.autopath_root);
	walk_end(w, wk, n, "autopath");
}

static void end_error(struct query_worker *w, struct walk *wk, int rcode)
{
	size_t n = dnsmsg_error_body(&wk->q, rcode, w->buf);
	walk_end(w, wk, n, "autopath-failed");
}

/* Give up the walk: the plain cluster answer to the question as asked
 * (NXDOMAIN), what the client gets without autopath. */
static void end_plain(struct query_worker *w, struct walk *wk)
{
	const struct query_env *env = w->env;
	const struct dnsmsg_query *q = &wk->q;
	size_t cap = wk->client.proto == QUERY_UDP ? dnsmsg_udp_limit(q) : DNS_MSG_MAX_BYTES;
	size_t n = 0;
	if (q->edns)
		cap -= DNS_OPT_RR_BYTES;
	if (!w->snap ||
	    (wk->client.proto == QUERY_UDP ? cluster_answer : cluster_answer_stream)(
		    w->snap, &env->cluster, q->qname, q->qname_len, q->qtype, q->qclass, w->buf,
		    cap, &n, NULL) != CLUSTER_ANSWERED) {
		end_error(w, wk, DNS_RCODE_SERVFAIL);
		return;
	}
	walk_end(w, wk, n, "cluster");
}

/* ---------------------------------------------------------------- walk */

static void walk_next(struct query_worker *w, struct walk *wk, uint64_t now_ms);

static void walk_done(struct query_worker *w, struct query_sub *sub, const uint8_t *body,
		      size_t len)
{
	struct walk *wk = (struct walk *)sub;
	int rcode = len >= DNS_HEADER_BYTES ? dnsmsg_rcode(body) : DNS_RCODE_SERVFAIL;
	bool last = wk->step + 1 >= w->env->autopath->nsteps;
	if (rcode == DNS_RCODE_NOERROR || (rcode == DNS_RCODE_NXDOMAIN && last)) {
		end_found(w, wk, body, len);
		return;
	}
	if (rcode != DNS_RCODE_NXDOMAIN) {
		end_error(w, wk, DNS_RCODE_SERVFAIL);
		return;
	}
	wk->step++;
	walk_next(w, wk, w->io.now_ms(w->io.arg));
}

/* A cluster name that exists without the asked type: whether glibc would
 * stop there. It asks A and AAAA together and stops at the first name where
 * either has records, so a name with the other address type is the answer
 * (the client gets its addresses from the other question); an empty name
 * (a namespace's `<ns>.svc.<zone>`, `svc.<zone>`) or one with neither type is
 * not, and glibc goes on to the next search domain. */
static bool cluster_pair_exists(const struct query_worker *w, const struct dnsmsg_query *tq)
{
	uint16_t other;
	if (tq->qtype == DNS_TYPE_A)
		other = DNS_TYPE_AAAA;
	else if (tq->qtype == DNS_TYPE_AAAA)
		other = DNS_TYPE_A;
	else
		return false;
	uint8_t scratch[512]; /* only the verdict is read: an answer too big is TC */
	struct cluster_answer_info info;
	size_t n = 0;
	return cluster_answer(w->snap, &w->env->cluster, tq->qname, tq->qname_len, other,
			      tq->qclass, scratch, sizeof(scratch), &n, &info) == CLUSTER_ANSWERED &&
	       info.rcode == DNS_RCODE_NOERROR && !info.nodata;
}

/* Look up the steps from wk->step on until one is sent upstream (the walk
 * resumes in walk_done()) or the walk ends. */
static void walk_next(struct query_worker *w, struct walk *wk, uint64_t now_ms)
{
	const struct query_env *env = w->env;
	const struct autopath_config *ap = env->autopath;
	struct dnsmsg_query tq = wk->q;
	for (; wk->step < ap->nsteps; wk->step++) {
		const struct autopath_step *s = &ap->steps[wk->step];
		size_t len = wk->base_len + s->len;
		if (len > DNS_NAME_MAX_BYTES)
			continue; /* glibc cannot ask it either */
		memcpy(tq.qname + wk->base_len, s->name, s->len);
		memcpy(tq.lname + wk->base_len, s->name, s->len);
		tq.qname_len = (uint8_t)len;
		tq.edns = true;
		tq.udp_size = DNS_MSG_MAX_BYTES;
		memcpy(wk->tname, tq.qname, len);
		wk->tlen = len;
		query_inc(&w->stats.autopath_steps);

		if (!dnsmsg_name_under(tq.lname, len, w->zone, w->zone_len)) {
			struct query_client ic;
			memset(&ic, 0, sizeof(ic));
			ic.proto = QUERY_INTERNAL;
			ic.conn = &wk->sub;
			ic.addr = wk->client.addr;
			ic.addrlen = wk->client.addrlen;
			/* May finish the walk before it returns: wk is not used after. */
			query_forward(w, &ic, &tq, query_pick_group(w, &tq), true, now_ms);
			return;
		}
		struct cluster_answer_info info;
		size_t n = 0;
		if (!w->snap ||
		    cluster_answer_stream(w->snap, &env->cluster, tq.qname, len, tq.qtype, tq.qclass,
					  w->buf, CLUSTER_STEP_CAP, &n, &info) != CLUSTER_ANSWERED)
			continue;
		if (info.rcode == DNS_RCODE_NXDOMAIN ||
		    (info.rcode == DNS_RCODE_NOERROR && info.nodata && !cluster_pair_exists(w, &tq)))
			continue;
		if (info.rcode != DNS_RCODE_NOERROR) {
			end_error(w, wk, DNS_RCODE_SERVFAIL);
		} else if (info.chase_len > 0) {
			end_plain(w, wk); /* an ExternalName: see autopath.h */
		} else {
			end_found(w, wk, w->buf, n);
		}
		return;
	}
	end_plain(w, wk);
}

bool autopath_start(struct query_worker *w, const struct dnsmsg_query *q,
		    const struct query_client *c, uint64_t now_ms)
{
	const struct autopath_config *ap = w->env->autopath;
	if (!ap || !q->rd || c->proto == QUERY_INTERNAL)
		return false;
	const uint8_t *ns = pod_table_lookup(w->pods, (const struct sockaddr *)&c->addr);
	if (!ns)
		return false;
	/* The name must be X.<ns>.svc.<zone> with X at least one label. */
	size_t tail = 1u + ns[0] + ap->ns_tail_len;
	if (q->qname_len <= tail)
		return false;
	size_t off = q->qname_len - tail;
	if (memcmp(q->lname + off, ns, 1u + ns[0]) != 0 ||
	    memcmp(q->lname + off + 1 + ns[0], ap->ns_tail, ap->ns_tail_len) != 0)
		return false;
	size_t p = 0;
	while (p < off)
		p += 1u + q->lname[p];
	if (p != off)
		return false;

	struct walk *wk = calloc(1, sizeof(*wk));
	if (!wk)
		return false;
	wk->sub.done = walk_done;
	wk->client = *c;
	wk->q = *q;
	wk->start_ms = now_ms;
	wk->base_len = off;
	wk->step = 0;
	if (w->io.hold)
		w->io.hold(w->io.arg, c);
	query_inc(&w->stats.autopath_walks);
	walk_next(w, wk, now_ms);
	return true;
}
