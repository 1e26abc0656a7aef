/* tests/fuzz/fuzz_dnsmsg.c - libFuzzer target for the DNS wire module.
 *
 * Build and run: FUZZ_TARGETS=dnsmsg tests/fuzz/run.sh (FUZZ_SECONDS=0 only
 * builds build-fuzz/fuzz_dnsmsg; runs use a copy of tests/fuzz/corpus/dnsmsg).
 * Reproduce a crash:
 *   build-fuzz/fuzz_dnsmsg crash-<sha1>
 *
 * Each input is used twice:
 *  - as a client query: dnsmsg_parse_query(), then the error body, the
 *    chaos body and (when it parsed) the upstream query, each finalized with
 *    several limits; the key is computed;
 *  - as an upstream reply: dnsmsg_prepare_reply(), then the body is finalized
 *    for the parsed query (or a synthetic one asking the body's question),
 *    and merged as an ExternalName target (dnsmsg_merge_chase()).
 * Besides the sanitizers, the target checks invariants and abort()s when one
 * fails: sizes within bounds, TTL offsets inside the body, TC replies no
 * longer than header + question (+ OPT), every reply we would send reads
 * as a client reads it (records by rdlength, up to the last byte, our OPT
 * last), and the replies we build from scratch parse with ldns.
 */
#include "nodedns/dns/dnsmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#define OUT_CAP (DNS_MSG_MAX_BYTES + 1 + DNS_OPT_RR_BYTES)

static const struct dnsmsg_ttl_policy pol = {
	.min_ttl_s = 5, .max_ttl_s = 86400, .neg_ttl_s = 300, .servfail_ttl_s = 2
};

#include "fuzz_check.h"

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Reply buffers: static, they are large. */
static uint8_t g_body[OUT_CAP], g_msg[OUT_CAP], g_merged[OUT_CAP];
static uint16_t g_ttl_off[4096];

/* Read the name at *pos as a client would (pointers followed, each to a
 * byte inside the message, at most 255 bytes in all). @return false when a
 * client could not read it. */
static bool wire_name(const uint8_t *m, size_t len, size_t *pos)
{
	size_t p = *pos, total = 0;
	unsigned hops = 0;
	bool jumped = false;
	for (;;) {
		if (p >= len)
			return false;
		uint8_t l = m[p];
		if ((l & 0xc0) == 0xc0) {
			if (p + 2 > len)
				return false;
			size_t target = (size_t)(l & 0x3f) << 8 | m[p + 1];
			if (!jumped)
				*pos = p + 2;
			jumped = true;
			if (target >= len || ++hops > 127)
				return false;
			p = target;
			continue;
		}
		if (l & 0xc0)
			return false;
		total += 1u + l;
		if (total > DNS_NAME_MAX_BYTES)
			return false;
		if (l == 0) {
			if (!jumped)
				*pos = p + 1;
			return true;
		}
		p += 1u + l;
	}
}

/* What a client reads: every counted record, by rdlength, ending exactly at
 * the end of the message, our OPT last when one is due. */
static void check_wire(const uint8_t *m, size_t len, const struct dnsmsg_query *q, bool opt)
{
	CHECK(len >= DNS_HEADER_BYTES);
	CHECK(get16(m) == q->id);
	CHECK((m[2] & 0x80) && (m[3] & 0x80)); /* QR, RA */
	CHECK((m[2] & 0x01) == q->rd);
	CHECK(((m[3] & 0x10) != 0) == q->cd);
	size_t p = DNS_HEADER_BYTES;
	for (unsigned i = 0; i < get16(m + 4); i++) {
		CHECK(wire_name(m, len, &p));
		CHECK(p + 4 <= len);
		p += 4;
	}
	unsigned total = (unsigned)get16(m + 6) + get16(m + 8) + get16(m + 10);
	size_t last = 0;
	for (unsigned i = 0; i < total; i++) {
		last = p;
		CHECK(wire_name(m, len, &p));
		CHECK(p + 10 <= len);
		size_t rdlen = get16(m + p + 8);
		CHECK(p + 10 + rdlen <= len);
		p += 10 + rdlen;
	}
	CHECK(p == len);
	if (opt) {
		CHECK(total > 0 && get16(m + 10) > 0);
		CHECK(last == len - DNS_OPT_RR_BYTES);
		CHECK(m[last] == 0 && get16(m + last + 1) == DNS_TYPE_OPT);
		CHECK(get16(m + last + 3) == DNS_EDNS_PAYLOAD_BYTES);
		CHECK(((m[last + 7] & 0x80) != 0) == q->do_bit);
	}
}

/* ldns must be able to read what we build ourselves. (Not used on upstream
 * bodies: ldns_wire2pkt() does not move to the end of an rdata longer than
 * its fields, so it misreads some messages that clients read fine.) */
static void check_ldns(const uint8_t *msg, size_t len, const struct dnsmsg_query *q)
{
	ldns_pkt *pkt = NULL;
	ldns_status st = ldns_wire2pkt(&pkt, msg, len);
	if (st != LDNS_STATUS_OK) {
		fprintf(stderr, "fuzz_dnsmsg: ldns: %s\n", ldns_get_errorstr_by_id(st));
		CHECK(st == LDNS_STATUS_OK);
	}
	if (q->edns) {
		CHECK(ldns_pkt_edns(pkt));
		CHECK(ldns_pkt_edns_udp_size(pkt) == DNS_EDNS_PAYLOAD_BYTES);
		CHECK(ldns_pkt_edns_do(pkt) == q->do_bit);
	}
	ldns_pkt_free(pkt);
}

/* Finalize a copy of @p body for @p q under @p limit and check the result.
 * @p rcode > 15 goes through dnsmsg_finalize_rcode(). */
static void finalize_one(const uint8_t *body, size_t blen, const struct dnsmsg_query *q,
			 size_t limit, int rcode, bool own)
{
	memcpy(g_msg, body, blen);
	size_t cap = blen + DNS_OPT_RR_BYTES;
	size_t n = rcode > 15 ? dnsmsg_finalize_rcode(g_msg, blen, cap, q, rcode, limit)
			      : dnsmsg_finalize(g_msg, blen, cap, q, limit);
	if (n == 0)
		return;
	CHECK(n >= DNS_HEADER_BYTES && n <= cap);
	bool opt = q->edns || rcode > 15;
	if (n > limit) {
		/* Only a truncated reply may exceed the limit, and it is no
		 * longer than header + question + OPT. */
		CHECK(g_msg[2] & 0x02);
		CHECK(get16(g_msg + 6) == 0 && get16(g_msg + 8) == 0);
		CHECK(n <= DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4 + DNS_OPT_RR_BYTES);
	}
	check_wire(g_msg, n, q, opt);
	if (own)
		check_ldns(g_msg, n, q);
}

static void finalize_all(const uint8_t *body, size_t blen, const struct dnsmsg_query *q,
			 int rcode, bool own)
{
	const size_t limits[] = { 0, DNS_HEADER_BYTES, DNS_UDP_NO_EDNS_BYTES,
				  dnsmsg_udp_limit(q), DNS_EDNS_PAYLOAD_BYTES, DNS_MSG_MAX_BYTES };
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		finalize_one(body, blen, q, limits[i], rcode, own);
}

static void check_query(const struct dnsmsg_query *q)
{
	CHECK(q->qname_len >= 1);
	CHECK(q->qname[q->qname_len - 1] == 0);
	size_t p = 0;
	unsigned labels = 0;
	while (q->qname[p] != 0) {
		CHECK(q->qname[p] < 64);
		CHECK(q->lname[p] == q->qname[p]);
		for (size_t i = 1; i <= q->qname[p]; i++) {
			uint8_t c = q->qname[p + i], l = q->lname[p + i];
			CHECK(l == ((c >= 'A' && c <= 'Z') ? c + 32 : c));
		}
		p += 1u + q->qname[p];
		labels++;
		CHECK(p < q->qname_len);
	}
	CHECK(p + 1 == q->qname_len);
	CHECK(labels == q->nlabels);
	CHECK(q->udp_size >= DNS_UDP_NO_EDNS_BYTES);
}

/* The input as a client query. */
static void as_query(const uint8_t *data, size_t size, struct dnsmsg_query *q, bool *ok)
{
	*ok = false;
	enum dnsmsg_verdict v = dnsmsg_parse_query(data, size, q);
	if (v == DNSMSG_DROP)
		return;
	if (q->has_question)
		check_query(q);

	uint8_t body[DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4 + 300];
	static const int rcodes[] = { DNS_RCODE_FORMERR, DNS_RCODE_SERVFAIL, DNS_RCODE_NOTIMP,
				      DNS_RCODE_REFUSED, DNS_RCODE_BADVERS };
	for (size_t i = 0; i < sizeof(rcodes) / sizeof(rcodes[0]); i++) {
		size_t blen = dnsmsg_error_body(q, rcodes[i], body);
		CHECK(blen >= DNS_HEADER_BYTES && blen <= DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4);
		finalize_all(body, blen, q, rcodes[i], true);
	}
	char text[1010], type[16];
	if (q->has_question) {
		dnsmsg_name_str(q->qname, q->qname_len, text, sizeof(text));
		CHECK(strlen(text) < sizeof(text));
		dnsmsg_type_str(q->qtype, type, sizeof(type));
		CHECK(strlen(type) < sizeof(type));
	}
	(void)dnsmsg_rcode_str(data[3] & 0x0f);
	if (v != DNSMSG_OK)
		return;
	*ok = true;

	uint8_t key[DNS_NAME_MAX_BYTES + 5];
	size_t klen = dnsmsg_key(q, key);
	CHECK(klen == q->qname_len + 5u);

	/* What we send upstream is a valid query for the same key. */
	uint8_t up[DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4 + DNS_OPT_RR_BYTES];
	size_t ulen = dnsmsg_upstream_query(q, up);
	CHECK(ulen <= sizeof(up));
	struct dnsmsg_query uq;
	CHECK(dnsmsg_parse_query(up, ulen, &uq) == DNSMSG_OK);
	uint8_t ukey[DNS_NAME_MAX_BYTES + 5];
	CHECK(dnsmsg_key(&uq, ukey) == klen && memcmp(key, ukey, klen) == 0);

	size_t clen = dnsmsg_chaos_body(q, "nodedns-fuzz", "fuzz-node", body, sizeof(body));
	if (clen)
		finalize_all(body, clen, q, 0, true);
}

/* A query asking the question of the body (case flipped), for bodies that
 * did not parse as a query; fields from the first byte. */
static bool synthetic_query(const uint8_t *body, size_t blen, uint8_t seed,
			    struct dnsmsg_query *q)
{
	memset(q, 0, sizeof(*q));
	q->id = (uint16_t)(0x5a00 | seed);
	q->rd = seed & 1;
	q->cd = seed & 2;
	q->edns = seed & 4;
	q->do_bit = q->edns && (seed & 8);
	q->udp_size = q->edns ? 4096 : DNS_UDP_NO_EDNS_BYTES;
	if (get16(body + 4) != 1)
		return true;
	size_t p = DNS_HEADER_BYTES;
	for (;;) {
		if (p >= blen || (body[p] & 0xc0))
			return false;
		size_t l = body[p];
		if (p + 1 + l > blen || p - DNS_HEADER_BYTES + 1 + l > DNS_NAME_MAX_BYTES)
			return false;
		p += 1 + l;
		if (l == 0)
			break;
	}
	if (p + 4 > blen)
		return false;
	size_t n = p - DNS_HEADER_BYTES;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = body[DNS_HEADER_BYTES + i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		q->qname[i] = alpha && (seed & 16) ? (uint8_t)(c ^ 0x20) : c;
		q->lname[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
	}
	q->qname_len = (uint8_t)n;
	q->qtype = get16(body + p);
	q->qclass = get16(body + p + 2);
	q->has_question = true;
	return true;
}

/* The input as an upstream reply. */
static void as_reply(const uint8_t *data, size_t size, const struct dnsmsg_query *pq, bool ok)
{
	struct dnsmsg_reply_info info;
	size_t blen = dnsmsg_prepare_reply(data, size, &pol, g_body, sizeof(g_body) - DNS_OPT_RR_BYTES,
					   g_ttl_off, sizeof(g_ttl_off) / sizeof(g_ttl_off[0]),
					   &info);
	if (blen == 0)
		return;
	/* No longer than the reply, unless the scrubber dropped answer records:
	 * a kept name that pointed into a dropped one is then spelled out. */
	CHECK(blen >= DNS_HEADER_BYTES && blen <= sizeof(g_body) - DNS_OPT_RR_BYTES);
	CHECK(blen <= size || get16(g_body + 6) < get16(data + 6));
	CHECK(info.nttl <= sizeof(g_ttl_off) / sizeof(g_ttl_off[0]));
	for (size_t i = 0; i < info.nttl; i++) {
		CHECK(g_ttl_off[i] >= DNS_HEADER_BYTES && g_ttl_off[i] + 4u <= blen);
		CHECK(i == 0 || g_ttl_off[i] > g_ttl_off[i - 1]);
		uint32_t ttl = (uint32_t)g_body[g_ttl_off[i]] << 24 | g_body[g_ttl_off[i] + 1] << 16 |
			       g_body[g_ttl_off[i] + 2] << 8 | g_body[g_ttl_off[i] + 3];
		CHECK(ttl <= 0x7fffffffu);
	}
	if (info.cacheable)
		CHECK(info.ttl_s > 0 && !info.tc);
	CHECK(info.kind >= 0 && info.kind <= 3);
	/* Flags kept but AA (we are not the authority), rcode kept. */
	CHECK(g_body[2] == (data[2] & ~0x04) && (g_body[3] & 0x0f) == (data[3] & 0x0f));

	/* When the input parsed as a query, its question is the body's. */
	struct dnsmsg_query sq;
	const struct dnsmsg_query *q = pq;
	if (!ok) {
		if (!synthetic_query(g_body, blen, data[size - 1], &sq))
			return;
		q = &sq;
	}

	/* The body as the target of a chase, after a body of ours for the
	 * question (no records, as the cluster zone's CNAME answer has no
	 * TSIG): what comes out is a message ldns reads, within the buffer. */
	uint8_t cb[DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4];
	size_t cl = dnsmsg_error_body(q, DNS_RCODE_NOERROR, cb);
	size_t mlen = dnsmsg_merge_chase(cb, cl, g_body, blen, g_merged, sizeof(g_merged));
	CHECK(mlen <= DNS_MSG_MAX_BYTES);
	if (mlen) {
		ldns_pkt *mp = NULL;
		CHECK(ldns_wire2pkt(&mp, g_merged, mlen) == LDNS_STATUS_OK);
		ldns_pkt_free(mp);
	}
	finalize_all(g_body, blen, q, 0, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dnsmsg_query q;
	bool ok;
	as_query(data, size, &q, &ok);
	if (size >= DNS_HEADER_BYTES)
		as_reply(data, size, &q, ok);
	return 0;
}
