/* src/dns/dnsmsg.c - DNS wire format on the path of a query.
 *
 * Why hand-written wire code next to ldns: a cache hit and a cluster hit must
 * not allocate or build an ldns_pkt (issue "performance": CPU per cached
 * answer is the headline figure). Parsing a query header and its question and
 * patching ID/flags/TTLs in a stored answer are a few bounded loops, kept here
 * and fuzzed. Everything that is not on the hot path (checking an upstream
 * reply before it is cached) goes through ldns.
 */
#include "nodedns/dns/dnsmsg.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <ldns/ldns.h>

#include "nodedns/dns/cache.h"

/* Skip a possibly compressed name starting at *pos; pointers are not
 * followed (we only need to know where the name ends). @return 0 or -1. */
static int skip_name(const uint8_t *wire, size_t len, size_t *pos)
{
	size_t p = *pos;
	size_t total = 0;
	for (;;) {
		if (p >= len)
			return -1;
		uint8_t l = wire[p];
		if ((l & 0xc0) == 0xc0) {
			if (p + 2 > len)
				return -1;
			size_t target = (size_t)(l & 0x3f) << 8 | wire[p + 1];
			if (target < DNS_HEADER_BYTES || target >= p)
				return -1; /* into the header (rewritten per client), or forward */
			*pos = p + 2;
			return 0;
		}
		if (l & 0xc0)
			return -1; /* extended label types are obsolete */
		p += 1u + l;
		total += 1u + l;
		if (total > DNS_NAME_MAX_BYTES)
			return -1;
		if (l == 0) {
			*pos = p;
			return 0;
		}
	}
}

size_t dnsmsg_plain_name_len(const uint8_t *wire, size_t len, size_t off)
{
	size_t p = off;
	for (;;) {
		if (p >= len)
			return 0;
		uint8_t l = wire[p];
		if (l & 0xc0)
			return 0;
		p += 1u + l;
		if (p - off > DNS_NAME_MAX_BYTES)
			return 0;
		if (l == 0)
			return p - off;
	}
}

/* The question name at DNS_HEADER_BYTES: uncompressed labels (a pointer in
 * the first name of a message could only point into the header), copied as
 * sent and lower-cased, then its type and class. @p *pos: where the question
 * ends. */
static inline __attribute__((always_inline)) enum dnsmsg_verdict
parse_question(const uint8_t *wire, size_t len, struct dnsmsg_query *q, size_t *pos)
{
	size_t p = DNS_HEADER_BYTES, n = 0;
	unsigned labels = 0;
	for (;;) {
		if (p >= len)
			return DNSMSG_FORMERR;
		uint8_t l = wire[p];
		if (l & 0xc0)
			return DNSMSG_FORMERR;
		if (n + 1u + l > DNS_NAME_MAX_BYTES || p + 1u + l > len)
			return DNSMSG_FORMERR;
		q->qname[n] = l;
		q->lname[n] = l;
		for (size_t i = 1; i <= l; i++) {
			uint8_t c = wire[p + i];
			q->qname[n + i] = c;
			q->lname[n + i] = wire_lower(c);
		}
		n += 1u + l;
		p += 1u + l;
		if (l == 0)
			break;
		labels++;
	}
	if (p + 4 > len)
		return DNSMSG_FORMERR;
	q->qname_len = (uint8_t)n;
	q->nlabels = (uint8_t)labels;
	q->qtype = wire_get16(wire + p);
	q->qclass = wire_get16(wire + p + 2);
	q->has_question = true;
	*pos = p + 4;
	return DNSMSG_OK;
}

/* The @p an + @p ns + @p ar records from @p p on: well formed, and at most
 * one OPT, in the additional section, owned by the root (it sets the EDNS
 * fields of @p q). */
static inline __attribute__((always_inline)) enum dnsmsg_verdict
parse_records(const uint8_t *wire, size_t len, size_t p, unsigned an, unsigned ns, unsigned ar,
	      struct dnsmsg_query *q)
{
	unsigned total = an + ns + ar;
	for (unsigned i = 0; i < total; i++) {
		size_t owner = p;
		if (skip_name(wire, len, &p) < 0 || p + 10 > len)
			return DNSMSG_FORMERR;
		uint16_t type = wire_get16(wire + p);
		uint16_t rdlen = wire_get16(wire + p + 8);
		if (p + 10 + rdlen > len)
			return DNSMSG_FORMERR;
		if (type == DNS_TYPE_OPT) {
			if (i < an + ns || q->edns || wire[owner] != 0)
				return DNSMSG_FORMERR;
			q->edns = true;
			uint16_t size = wire_get16(wire + p + 2);
			q->udp_size = size < DNS_UDP_NO_EDNS_BYTES ? DNS_UDP_NO_EDNS_BYTES : size;
			uint8_t version = wire[p + 5];
			q->do_bit = (wire[p + 6] & 0x80) != 0;
			if (version != 0)
				return DNSMSG_BADVERS;
		}
		p += 10u + rdlen;
	}
	return DNSMSG_OK;
}

/* Best effort, for the error reply to a query refused at its header: the
 * question (echoed when there is exactly one and it parses) and the OPT
 * record, whose presence the reply must mirror (RFC 6891 6.1.1). Cold: kept
 * out of line so that the parse of a good query stays inlined (a cache hit
 * costs ~30 instructions more otherwise). */
__attribute__((cold, noinline)) static void scan_for_reply(const uint8_t *wire, size_t len,
							   struct dnsmsg_query *q)
{
	unsigned qd = wire_get16(wire + 4);
	size_t p = DNS_HEADER_BYTES;
	if (qd == 1) {
		if (parse_question(wire, len, q, &p) != DNSMSG_OK)
			return;
	} else {
		for (unsigned i = 0; i < qd; i++) {
			if (skip_name(wire, len, &p) < 0 || p + 4 > len)
				return;
			p += 4;
		}
	}
	(void)parse_records(wire, len, p, wire_get16(wire + 6), wire_get16(wire + 8),
			    wire_get16(wire + 10), q);
}

enum dnsmsg_verdict dnsmsg_parse_query(const uint8_t *wire, size_t len, struct dnsmsg_query *q)
{
	q->has_question = false;
	q->edns = false;
	q->do_bit = false;
	q->udp_size = DNS_UDP_NO_EDNS_BYTES;
	q->qname_len = 0;
	q->nlabels = 0;
	q->qtype = q->qclass = 0;
	if (len < DNS_HEADER_BYTES)
		return DNSMSG_DROP;
	q->id = wire_get16(wire);
	if (wire[2] & 0x80)
		return DNSMSG_DROP; /* a response: never answer it */
	q->opcode = (wire[2] >> 3) & 0x0f;
	q->rd = wire[2] & 0x01;
	q->cd = (wire[3] & 0x10) != 0;
	/* The opcode first: an opcode we do not implement (DSO, UPDATE, ...)
	 * gets NOTIMP whatever its sections hold (RFC 1035 4.1.1; RFC 8490
	 * has DSO with QDCOUNT 0). */
	if (q->opcode != 0) {
		scan_for_reply(wire, len, q);
		return DNSMSG_NOTIMP;
	}
	if (wire_get16(wire + 4) != 1) {
		scan_for_reply(wire, len, q);
		return DNSMSG_FORMERR;
	}

	size_t p;
	enum dnsmsg_verdict v = parse_question(wire, len, q, &p);
	if (v == DNSMSG_OK)
		v = parse_records(wire, len, p, wire_get16(wire + 6), wire_get16(wire + 8),
				  wire_get16(wire + 10), q);
	return v;
}

bool dnsmsg_question_match(const uint8_t *query, size_t qend, const uint8_t *reply, size_t len)
{
	if (len < qend || wire_get16(reply + 4) != 1)
		return false;
	const uint8_t *a = query + DNS_HEADER_BYTES, *b = reply + DNS_HEADER_BYTES;
	size_t i = 0;
	for (;;) {
		uint8_t l = a[i];
		if (b[i] != l) /* also rejects a pointer: the query's lengths are <= 63 */
			return false;
		if (l == 0)
			break;
		for (size_t k = 1; k <= l; k++)
			if (wire_lower(a[i + k]) != wire_lower(b[i + k]))
				return false;
		i += 1u + l;
	}
	i++;
	return memcmp(a + i, b + i, 4) == 0; /* type, class */
}

size_t dnsmsg_udp_limit(const struct dnsmsg_query *q)
{
	if (!q->edns)
		return DNS_UDP_NO_EDNS_BYTES;
	size_t s = q->udp_size;
	if (s > DNS_EDNS_PAYLOAD_BYTES)
		s = DNS_EDNS_PAYLOAD_BYTES;
	if (s < DNS_UDP_NO_EDNS_BYTES)
		s = DNS_UDP_NO_EDNS_BYTES;
	return s;
}

size_t dnsmsg_key(const struct dnsmsg_query *q, uint8_t *key)
{
	size_t n = q->qname_len;
	memcpy(key, q->lname, n);
	wire_put16(key + n, q->qtype);
	wire_put16(key + n + 2, q->qclass);
	/* One flags byte: DO and CD (RFC 4035 3.2.2, 4.7: an answer fetched
	 * with checking disabled must not reach a client that asked for it). */
	key[n + 4] = (uint8_t)((q->do_bit ? 1 : 0) | (q->cd ? 2 : 0));
	return n + 5;
}

/* Append our OPT record at @p p. */
static size_t put_opt(uint8_t *p, bool do_bit, uint8_t ext_rcode)
{
	p[0] = 0;
	wire_put16(p + 1, DNS_TYPE_OPT);
	wire_put16(p + 3, DNS_EDNS_PAYLOAD_BYTES);
	p[5] = ext_rcode;
	p[6] = 0; /* version */
	p[7] = do_bit ? 0x80 : 0;
	p[8] = 0;
	wire_put16(p + 9, 0);
	return DNS_OPT_RR_BYTES;
}

/* Skip @p count records from *pos (owner names may be compressed; bounds
 * checked). *ns_only is cleared when one is not an NS record (may be NULL).
 * @return 0 or -1. */
static int skip_records(const uint8_t *buf, size_t len, size_t *pos, unsigned count,
			bool *ns_only)
{
	size_t p = *pos;
	for (unsigned i = 0; i < count; i++) {
		if (skip_name(buf, len, &p) < 0 || p + 10 > len)
			return -1;
		size_t end = p + 10u + wire_get16(buf + p + 8);
		if (end > len)
			return -1;
		if (ns_only && wire_get16(buf + p) != DNS_TYPE_NS)
			*ns_only = false;
		p = end;
	}
	*pos = p;
	return 0;
}

size_t dnsmsg_trim(uint8_t *buf, size_t len, size_t qend, size_t room)
{
	if (len <= room)
		return len;
	unsigned an = wire_get16(buf + 6), ns = wire_get16(buf + 8);
	size_t p = qend;
	bool ns_only = true;
	if (qend >= DNS_HEADER_BYTES && qend <= len && skip_records(buf, len, &p, an, NULL) == 0) {
		size_t answer_end = p;
		if (skip_records(buf, len, &p, ns, &ns_only) == 0) {
			/* Additional records are extra information: dropped
			 * without TC (RFC 2181 9). Pointers only point back,
			 * so what stays is whole. */
			if (p <= room) {
				wire_put16(buf + 10, 0);
				return p;
			}
			/* So is the NS set of a positive answer. An SOA (the
			 * negative TTL, RFC 2308 5) or DNSSEC proofs (RFC 4035
			 * 3.1.3) are not: then TC. */
			if (answer_end <= room && an > 0 && ns_only && (buf[3] & 0x0f) == 0) {
				wire_put16(buf + 8, 0);
				wire_put16(buf + 10, 0);
				return answer_end;
			}
		}
	}
	/* The answer itself does not fit: the header and the question with
	 * TC=1; the client retries over TCP (RFC 1035 4.2.1, RFC 7766). */
	buf[2] |= 0x02;
	wire_put16(buf + 6, 0);
	wire_put16(buf + 8, 0);
	wire_put16(buf + 10, 0);
	return qend;
}

static size_t finalize(uint8_t *buf, size_t body_len, size_t cap, const struct dnsmsg_query *q,
		       size_t limit, bool force_opt, uint8_t ext_rcode)
{
	if (body_len < DNS_HEADER_BYTES || body_len > cap)
		return 0;
	wire_put16(buf, q->id);
	buf[2] = (uint8_t)(0x80 | (buf[2] & 0x7e) | (q->rd ? 1 : 0)); /* QR, opcode/AA/TC kept, RD */
	buf[3] = (uint8_t)(0x80 | (buf[3] & 0x2f) | (q->cd ? 0x10 : 0)); /* RA, AD+rcode kept, CD */

	size_t qend = DNS_HEADER_BYTES;
	if (wire_get16(buf + 4) == 1) {
		size_t n = dnsmsg_plain_name_len(buf, body_len, DNS_HEADER_BYTES);
		if (n == 0 || DNS_HEADER_BYTES + n + 4 > body_len)
			return 0;
		if (q->has_question && n == q->qname_len)
			memcpy(buf + DNS_HEADER_BYTES, q->qname, n);
		qend = DNS_HEADER_BYTES + n + 4;
	} else if (wire_get16(buf + 4) != 0) {
		return 0;
	}

	bool opt = q->edns || force_opt;
	size_t total = body_len + (opt ? DNS_OPT_RR_BYTES : 0);
	size_t len = body_len;
	if (total > limit) {
		size_t optlen = opt ? DNS_OPT_RR_BYTES : 0;
		len = dnsmsg_trim(buf, body_len, qend, limit > optlen ? limit - optlen : 0);
	}
	if (opt) {
		if (len + DNS_OPT_RR_BYTES > cap)
			return 0;
		len += put_opt(buf + len, q->do_bit, ext_rcode);
		wire_put16(buf + 10, (uint16_t)(wire_get16(buf + 10) + 1));
	}
	return len;
}

size_t dnsmsg_finalize(uint8_t *buf, size_t body_len, size_t cap, const struct dnsmsg_query *q,
		       size_t limit)
{
	return finalize(buf, body_len, cap, q, limit, false, 0);
}

size_t dnsmsg_finalize_rcode(uint8_t *buf, size_t body_len, size_t cap,
			     const struct dnsmsg_query *q, int rcode, size_t limit)
{
	if (rcode > 15) {
		buf[3] = (uint8_t)((buf[3] & 0xf0) | (rcode & 0x0f));
		return finalize(buf, body_len, cap, q, limit, true, (uint8_t)(rcode >> 4));
	}
	return finalize(buf, body_len, cap, q, limit, false, 0);
}

size_t dnsmsg_error_body(const struct dnsmsg_query *q, int rcode, uint8_t *buf)
{
	memset(buf, 0, DNS_HEADER_BYTES);
	buf[2] = (uint8_t)(0x80 | ((q->opcode & 0x0f) << 3));
	buf[3] = (uint8_t)(rcode & 0x0f);
	size_t len = DNS_HEADER_BYTES;
	if (q->has_question) {
		wire_put16(buf + 4, 1);
		memcpy(buf + len, q->qname, q->qname_len);
		len += q->qname_len;
		wire_put16(buf + len, q->qtype);
		wire_put16(buf + len + 2, q->qclass);
		len += 4;
	}
	return len;
}

size_t dnsmsg_upstream_query(const struct dnsmsg_query *q, uint8_t *buf)
{
	memset(buf, 0, DNS_HEADER_BYTES);
	buf[2] = 0x01; /* RD */
	buf[3] = q->cd ? 0x10 : 0;
	wire_put16(buf + 4, 1);
	wire_put16(buf + 10, 1);
	size_t len = DNS_HEADER_BYTES;
	memcpy(buf + len, q->lname, q->qname_len);
	len += q->qname_len;
	wire_put16(buf + len, q->qtype);
	wire_put16(buf + len + 2, q->qclass);
	len += 4;
	len += put_opt(buf + len, q->do_bit, 0);
	return len;
}

static const uint8_t name_version_bind[] = "\7version\4bind";
static const uint8_t name_version_server[] = "\7version\6server";
static const uint8_t name_id_server[] = "\2id\6server";
static const uint8_t name_hostname_bind[] = "\10hostname\4bind";

static bool name_is(const struct dnsmsg_query *q, const uint8_t *n, size_t size)
{
	/* size counts the terminating NUL of the literal, i.e. the root label. */
	return q->qname_len == size && memcmp(q->lname, n, size) == 0;
}

size_t dnsmsg_chaos_body(const struct dnsmsg_query *q, const char *version, const char *ident,
			 uint8_t *buf, size_t cap)
{
	const char *text;
	if (name_is(q, name_version_bind, sizeof(name_version_bind)) ||
	    name_is(q, name_version_server, sizeof(name_version_server)))
		text = version;
	else if (name_is(q, name_id_server, sizeof(name_id_server)) ||
		 name_is(q, name_hostname_bind, sizeof(name_hostname_bind)))
		text = ident;
	else
		return 0;
	size_t tlen = strlen(text);
	if (tlen > 255)
		tlen = 255;
	size_t len = dnsmsg_error_body(q, DNS_RCODE_NOERROR, buf);
	buf[2] |= 0x04; /* AA */
	if (q->qtype != DNS_TYPE_TXT && q->qtype != DNS_TYPE_ANY)
		return len; /* NODATA */
	if (len + 12 + 1 + tlen > cap)
		return len;
	wire_put16(buf + 6, 1);
	uint8_t *p = buf + len;
	wire_put16(p, 0xc00c);
	wire_put16(p + 2, DNS_TYPE_TXT);
	wire_put16(p + 4, DNS_CLASS_CH);
	wire_put32(p + 6, 0);
	wire_put16(p + 10, (uint16_t)(tlen + 1));
	p[12] = (uint8_t)tlen;
	memcpy(p + 13, text, tlen);
	return len + 13 + tlen;
}

/* What the walk over an upstream reply's records found. */
struct ttl_walk {
	const struct dnsmsg_ttl_policy *pol;
	bool negative;     /* NXDOMAIN, or NOERROR with no answer */
	bool soa_seen;     /* an SOA in the authority section of a negative answer */
	uint32_t min_ttl;  /* smallest TTL in answer + authority */
	uint32_t neg_ttl;  /* the negative TTL from the SOA(s) */
	size_t nttl;       /* TTL fields recorded */
};

/* The TTL the record at @p owner_end (its type field) gets in the body:
 * positive TTLs clamped to the policy, a negative answer's SOA set to
 * min(TTL, SOA minimum, cap). @return 0 or -1 for a malformed SOA. */
static int clamp_ttl(struct ttl_walk *tw, uint8_t *out, size_t blen, size_t p, bool in_authority,
		     uint32_t *ttl)
{
	uint16_t type = wire_get16(out + p);
	uint16_t rdlen = wire_get16(out + p + 8);
	size_t rdata = p + 10;
	uint32_t t = wire_get32(out + p + 4);
	if (t > 0x7fffffffu)
		t = 0; /* RFC 2181 8: treat as zero */
	if (tw->negative && in_authority && type == DNS_TYPE_SOA) {
		size_t r = rdata;
		if (skip_name(out, blen, &r) < 0 || skip_name(out, blen, &r) < 0 ||
		    r + 20 > rdata + rdlen)
			return -1;
		uint32_t minimum = wire_get32(out + r + 16);
		if (minimum < t)
			t = minimum;
		if (t > tw->pol->neg_ttl_s)
			t = tw->pol->neg_ttl_s;
		if (t < tw->neg_ttl)
			tw->neg_ttl = t;
		tw->soa_seen = true;
	} else {
		if (t < tw->pol->min_ttl_s)
			t = tw->pol->min_ttl_s;
		if (t > tw->pol->max_ttl_s)
			t = tw->pol->max_ttl_s;
	}
	*ttl = t;
	return 0;
}

/* Walk the records of the message in @p out from @p p on: clamp their TTLs,
 * record where the TTL fields are, and cut the message before the OPT record.
 * @return the body length, or 0 when malformed. */
static size_t walk_records(struct ttl_walk *tw, uint8_t *out, size_t blen, size_t p,
			   uint16_t *ttl_off, size_t ttl_cap)
{
	unsigned an = wire_get16(out + 6), ns = wire_get16(out + 8), ar = wire_get16(out + 10);
	unsigned total = an + ns + ar;
	for (unsigned i = 0; i < total; i++) {
		size_t start = p;
		if (skip_name(out, blen, &p) < 0 || p + 10 > blen)
			return 0;
		uint16_t type = wire_get16(out + p);
		uint16_t rdlen = wire_get16(out + p + 8);
		if (p + 10 + rdlen > blen)
			return 0;
		if (type == DNS_TYPE_OPT && i < an + ns)
			return 0; /* an OPT outside the additional section */
		if (type == DNS_TYPE_OPT) {
			/* The OPT record is hop by hop: cut the message here.
			 * Only TSIG/SIG(0) may follow it, and they would not
			 * verify for our client anyway. Nothing before it can
			 * point into what is cut. */
			wire_put16(out + 10, (uint16_t)(i - an - ns));
			return start;
		}
		uint32_t ttl;
		if (clamp_ttl(tw, out, blen, p, i >= an && i < an + ns, &ttl) < 0)
			return 0;
		wire_put32(out + p + 4, ttl);
		if (i < an + ns && ttl < tw->min_ttl)
			tw->min_ttl = ttl;
		if (tw->nttl >= ttl_cap)
			return 0;
		ttl_off[tw->nttl++] = (uint16_t)(p + 4);
		p += 10u + rdlen;
	}
	return p; /* bytes after the last record (ldns accepts them) are not kept */
}

/* Record by record, within the body: ldns_wire2pkt() would read the fields
 * of an rdata and go on from there even when the rdlength says more (so
 * check other records than ours), skips what follows a TSIG, and leaks a
 * record when there are two TSIGs. @return whether ldns reads every record
 * where the walk found it. */
static bool ldns_check(const uint8_t *out, size_t blen, size_t qend, const uint16_t *ttl_off,
		       size_t nttl)
{
	size_t p = DNS_HEADER_BYTES;
	for (unsigned i = 0, qd = wire_get16(out + 4); i < qd; i++) {
		ldns_rr *rr = NULL;
		if (ldns_wire2rr(&rr, out, blen, &p, LDNS_SECTION_QUESTION) != LDNS_STATUS_OK)
			return false;
		ldns_rr_free(rr);
	}
	if (p != qend)
		return false;
	for (size_t i = 0; i < nttl; i++) {
		ldns_rr *rr = NULL;
		if (ldns_wire2rr(&rr, out, blen, &p, LDNS_SECTION_ANSWER) != LDNS_STATUS_OK)
			return false;
		ldns_rr_free(rr);
		if (p != (size_t)ttl_off[i] + 6 + wire_get16(out + ttl_off[i] + 4))
			return false;
	}
	return true;
}

/* Whether and for how long the body is cached, from what the walk found. */
static void classify(struct dnsmsg_reply_info *info, const struct ttl_walk *tw)
{
	const struct dnsmsg_ttl_policy *pol = tw->pol;
	if (info->tc) {
		info->cacheable = false;
	} else if (info->rcode == DNS_RCODE_SERVFAIL) {
		info->kind = CACHE_SERVFAIL;
		info->ttl_s = pol->servfail_ttl_s;
		info->cacheable = pol->servfail_ttl_s > 0;
	} else if (tw->negative) {
		/* RFC 2308 5: without an SOA a negative answer is not cached. */
		info->kind = info->rcode == DNS_RCODE_NXDOMAIN ? CACHE_NXDOMAIN : CACHE_NODATA;
		if (tw->soa_seen) {
			uint32_t t = tw->neg_ttl;
			if (tw->min_ttl < t)
				t = tw->min_ttl;
			info->ttl_s = t;
			info->cacheable = t > 0;
		}
	} else if (info->rcode == DNS_RCODE_NOERROR) {
		info->kind = CACHE_POSITIVE;
		info->ttl_s = tw->min_ttl == UINT32_MAX ? 0 : tw->min_ttl;
		info->cacheable = info->ttl_s > 0;
	}
}

size_t dnsmsg_prepare_reply(const uint8_t *reply, size_t len, const struct dnsmsg_ttl_policy *pol,
			    uint8_t *out, size_t cap, uint16_t *ttl_off, size_t ttl_cap,
			    struct dnsmsg_reply_info *info)
{
	memset(info, 0, sizeof(*info));
	if (len < DNS_HEADER_BYTES || len > cap)
		return 0;
	/* The walk finds the records and their offsets; ldns then checks
	 * each record it found (names, rdata of every known type). */
	memcpy(out, reply, len);
	uint8_t ext = 0;
	int edns = dnsmsg_reply_edns(out, len, &ext);
	if (edns < 0 || (edns == 1 && ext != 0) || dnsmsg_scrub_answer(out, &len, cap) < 0)
		return 0;
	out[2] &= (uint8_t)~0x04; /* AA: we are not the authority for a forwarded answer */
	info->rcode = out[3] & 0x0f;
	info->tc = (out[2] & 0x02) != 0;

	size_t p = DNS_HEADER_BYTES;
	for (unsigned i = 0, qd = wire_get16(out + 4); i < qd; i++) {
		if (skip_name(out, len, &p) < 0 || p + 4 > len)
			return 0;
		p += 4;
	}
	size_t qend = p;
	struct ttl_walk tw = {
		.pol = pol,
		.negative = info->rcode == DNS_RCODE_NXDOMAIN ||
			    (info->rcode == DNS_RCODE_NOERROR && wire_get16(out + 6) == 0),
		.min_ttl = UINT32_MAX,
		.neg_ttl = UINT32_MAX,
	};
	size_t blen = walk_records(&tw, out, len, qend, ttl_off, ttl_cap);
	if (blen == 0)
		return 0;
	info->nttl = (uint16_t)tw.nttl;
	if (!ldns_check(out, blen, qend, ttl_off, tw.nttl))
		return 0;
	classify(info, &tw);
	return blen;
}

/* Append the answer records of @p t (@p tlen bytes) to @p pkt, read record by
 * record: ldns_wire2pkt() would leak a record of a message with two TSIGs,
 * which a cached upstream answer may hold. @return 0, or -1 when one does
 * not parse. */
static int push_answers(ldns_pkt *pkt, const uint8_t *t, size_t tlen)
{
	size_t p = DNS_HEADER_BYTES;
	for (unsigned i = 0, qd = wire_get16(t + 4); i < qd; i++) {
		ldns_rr *rr = NULL;
		if (ldns_wire2rr(&rr, t, tlen, &p, LDNS_SECTION_QUESTION) != LDNS_STATUS_OK)
			return -1;
		ldns_rr_free(rr);
	}
	for (unsigned i = 0, an = wire_get16(t + 6); i < an; i++) {
		ldns_rr *rr = NULL;
		if (ldns_wire2rr(&rr, t, tlen, &p, LDNS_SECTION_ANSWER) != LDNS_STATUS_OK)
			return -1;
		if (!ldns_pkt_push_rr(pkt, LDNS_SECTION_ANSWER, rr)) {
			ldns_rr_free(rr);
			return -1;
		}
	}
	return 0;
}

/* The cluster zone's CNAME answer @p cname with the answer records of
 * @p target appended (and its rcode, when NOERROR or NXDOMAIN). */
size_t dnsmsg_merge_chase(const uint8_t *cname, size_t clen, const uint8_t *target, size_t tlen,
			  uint8_t *out, size_t cap)
{
	ldns_pkt *pkt = NULL;
	size_t n = 0;
	if (tlen < DNS_HEADER_BYTES || ldns_wire2pkt(&pkt, cname, clen) != LDNS_STATUS_OK) {
		ldns_pkt_free(pkt);
		return 0;
	}
	int rc = dnsmsg_rcode(target);
	bool take = rc == DNS_RCODE_NOERROR || rc == DNS_RCODE_NXDOMAIN;
	if (!take || push_answers(pkt, target, tlen) == 0) {
		if (take)
			ldns_pkt_set_rcode(pkt, (uint8_t)rc);
		uint8_t *wire = NULL;
		if (ldns_pkt2wire(&wire, pkt, &n) != LDNS_STATUS_OK || n > DNS_MSG_MAX_BYTES ||
		    n > cap)
			n = 0;
		else
			memcpy(out, wire, n);
		LDNS_FREE(wire);
	}
	ldns_pkt_free(pkt);
	return n;
}

size_t dnsmsg_name_from_text(const char *d, uint8_t *out)
{
	if (strcmp(d, ".") == 0 || *d == '\0') {
		out[0] = 0;
		return 1;
	}
	size_t o = 0;
	const char *p = d;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > 63 || o + 1 + l + 1 > DNS_NAME_MAX_BYTES)
			return 0;
		out[o++] = (uint8_t)l;
		memcpy(out + o, p, l);
		o += l;
		p += l;
		if (*p == '.')
			p++;
	}
	out[o++] = 0;
	return o;
}

bool dnsmsg_name_under(const uint8_t *name, size_t len, const uint8_t *zone, size_t zlen)
{
	if (zlen == 0 || zlen > len)
		return false;
	size_t off = len - zlen;
	if (memcmp(name + off, zone, zlen) != 0)
		return false;
	size_t p = 0;
	while (p < off)
		p += 1u + name[p];
	return p == off;
}

char *dnsmsg_name_str(const uint8_t *name, size_t len, char *out, size_t cap)
{
	size_t o = 0, p = 0;
	if (cap == 0)
		return out;
	while (p < len && name[p] != 0 && o + 5 < cap) {
		uint8_t l = name[p++];
		for (uint8_t i = 0; i < l && p < len && o + 5 < cap; i++, p++) {
			uint8_t c = name[p];
			if (c == '.' || c == '\\' || !isprint(c) || c == ' ') {
				o += (size_t)snprintf(out + o, cap - o, "\\%03u", c);
			} else {
				out[o++] = (char)c;
			}
		}
		out[o++] = '.';
	}
	if (o == 0 && o + 1 < cap)
		out[o++] = '.';
	out[o] = '\0';
	return out;
}

const char *dnsmsg_type_str(uint16_t type, char *out, size_t cap)
{
	const ldns_rr_descriptor *d = ldns_rr_descript(type);
	if (d && d->_name)
		snprintf(out, cap, "%s", d->_name);
	else
		snprintf(out, cap, "TYPE%u", type);
	return out;
}

const char *dnsmsg_rcode_str(int rcode)
{
	static const char *const names[] = { "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
					     "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
					     "NXRRSET", "NOTAUTH", "NOTZONE" };
	if (rcode >= 0 && rcode < (int)(sizeof(names) / sizeof(names[0])))
		return names[rcode];
	if (rcode == DNS_RCODE_BADVERS)
		return "BADVERS";
	return "OTHER";
}
