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

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

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
	q->id = rd16(wire);
	if (wire[2] & 0x80)
		return DNSMSG_DROP; /* a response: never answer it */
	q->opcode = (wire[2] >> 3) & 0x0f;
	q->rd = wire[2] & 0x01;
	q->cd = (wire[3] & 0x10) != 0;
	uint16_t qd = rd16(wire + 4), an = rd16(wire + 6), ns = rd16(wire + 8),
		 ar = rd16(wire + 10);

	if (qd == 1) {
		/* The question name: uncompressed labels (a pointer in the
		 * first name of a message could only point into the header). */
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
				q->lname[n + i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
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
		q->qtype = rd16(wire + p);
		q->qclass = rd16(wire + p + 2);
		q->has_question = true;
		p += 4;

		/* The other sections: well formed, and at most one OPT, in the
		 * additional section, owned by the root. */
		unsigned total = (unsigned)an + ns + ar;
		for (unsigned i = 0; i < total; i++) {
			size_t owner = p;
			if (skip_name(wire, len, &p) < 0 || p + 10 > len)
				return DNSMSG_FORMERR;
			uint16_t type = rd16(wire + p);
			uint16_t rdlen = rd16(wire + p + 8);
			if (p + 10 + rdlen > len)
				return DNSMSG_FORMERR;
			if (type == DNS_TYPE_OPT) {
				if (i < (unsigned)an + ns || q->edns || wire[owner] != 0)
					return DNSMSG_FORMERR;
				q->edns = true;
				uint16_t size = rd16(wire + p + 2);
				q->udp_size = size < DNS_UDP_NO_EDNS_BYTES ? DNS_UDP_NO_EDNS_BYTES : size;
				uint8_t version = wire[p + 5];
				q->do_bit = (wire[p + 6] & 0x80) != 0;
				if (version != 0)
					return DNSMSG_BADVERS;
			}
			p += 10u + rdlen;
		}
	} else {
		return DNSMSG_FORMERR;
	}
	if (q->opcode != 0)
		return DNSMSG_NOTIMP;
	return DNSMSG_OK;
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
	wr16(key + n, q->qtype);
	wr16(key + n + 2, q->qclass);
	key[n + 4] = q->do_bit ? 1 : 0;
	return n + 5;
}

uint32_t dnsmsg_key_hash(const uint8_t *key, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= key[i];
		h *= 16777619u;
	}
	return h;
}

/* Append our OPT record at @p p. */
static size_t put_opt(uint8_t *p, bool do_bit, uint8_t ext_rcode)
{
	p[0] = 0;
	wr16(p + 1, DNS_TYPE_OPT);
	wr16(p + 3, DNS_EDNS_PAYLOAD_BYTES);
	p[5] = ext_rcode;
	p[6] = 0; /* version */
	p[7] = do_bit ? 0x80 : 0;
	p[8] = 0;
	wr16(p + 9, 0);
	return DNS_OPT_RR_BYTES;
}

static size_t finalize(uint8_t *buf, size_t body_len, size_t cap, const struct dnsmsg_query *q,
		       size_t limit, bool force_opt, uint8_t ext_rcode)
{
	if (body_len < DNS_HEADER_BYTES || body_len > cap)
		return 0;
	wr16(buf, q->id);
	buf[2] = (uint8_t)(0x80 | (buf[2] & 0x7e) | (q->rd ? 1 : 0)); /* QR, opcode/AA/TC kept, RD */
	buf[3] = (uint8_t)(0x80 | (buf[3] & 0x2f) | (q->cd ? 0x10 : 0)); /* RA, AD+rcode kept, CD */

	size_t qend = DNS_HEADER_BYTES;
	if (rd16(buf + 4) == 1) {
		size_t n = dnsmsg_plain_name_len(buf, body_len, DNS_HEADER_BYTES);
		if (n == 0 || DNS_HEADER_BYTES + n + 4 > body_len)
			return 0;
		if (q->has_question && n == q->qname_len)
			memcpy(buf + DNS_HEADER_BYTES, q->qname, n);
		qend = DNS_HEADER_BYTES + n + 4;
	} else if (rd16(buf + 4) != 0) {
		return 0;
	}

	bool opt = q->edns || force_opt;
	size_t total = body_len + (opt ? DNS_OPT_RR_BYTES : 0);
	size_t len = body_len;
	if (total > limit) {
		/* Truncate to the header and the question: the client retries
		 * over TCP (RFC 1035 4.2.1, RFC 7766). */
		len = qend;
		buf[2] |= 0x02;
		wr16(buf + 6, 0);
		wr16(buf + 8, 0);
		wr16(buf + 10, 0);
	}
	if (opt) {
		if (len + DNS_OPT_RR_BYTES > cap)
			return 0;
		len += put_opt(buf + len, q->do_bit, ext_rcode);
		wr16(buf + 10, (uint16_t)(rd16(buf + 10) + 1));
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
		wr16(buf + 4, 1);
		memcpy(buf + len, q->qname, q->qname_len);
		len += q->qname_len;
		wr16(buf + len, q->qtype);
		wr16(buf + len + 2, q->qclass);
		len += 4;
	}
	return len;
}

size_t dnsmsg_upstream_query(const struct dnsmsg_query *q, uint8_t *buf)
{
	memset(buf, 0, DNS_HEADER_BYTES);
	buf[2] = 0x01; /* RD */
	buf[3] = q->cd ? 0x10 : 0;
	wr16(buf + 4, 1);
	wr16(buf + 10, 1);
	size_t len = DNS_HEADER_BYTES;
	memcpy(buf + len, q->lname, q->qname_len);
	len += q->qname_len;
	wr16(buf + len, q->qtype);
	wr16(buf + len + 2, q->qclass);
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
	wr16(buf + 6, 1);
	uint8_t *p = buf + len;
	wr16(p, 0xc00c);
	wr16(p + 2, DNS_TYPE_TXT);
	wr16(p + 4, DNS_CLASS_CH);
	wr32(p + 6, 0);
	wr16(p + 10, (uint16_t)(tlen + 1));
	p[12] = (uint8_t)tlen;
	memcpy(p + 13, text, tlen);
	return len + 13 + tlen;
}

size_t dnsmsg_prepare_reply(const uint8_t *reply, size_t len, const struct dnsmsg_ttl_policy *pol,
			    uint8_t *out, size_t cap, uint16_t *ttl_off, size_t ttl_cap,
			    struct dnsmsg_reply_info *info)
{
	memset(info, 0, sizeof(*info));
	if (len < DNS_HEADER_BYTES || len > cap)
		return 0;
	/* The walk below finds the records and their offsets; ldns then checks
	 * each record it found (names, rdata of every known type). */
	memcpy(out, reply, len);
	size_t blen = len;
	out[2] &= (uint8_t)~0x04; /* AA: we are not the authority for a forwarded answer */

	info->rcode = out[3] & 0x0f;
	info->tc = (out[2] & 0x02) != 0;
	uint16_t qd = rd16(out + 4), an = rd16(out + 6), ns = rd16(out + 8), ar = rd16(out + 10);
	size_t p = DNS_HEADER_BYTES;
	for (unsigned i = 0; i < qd; i++) {
		if (skip_name(out, blen, &p) < 0 || p + 4 > blen)
			return 0;
		p += 4;
	}
	size_t qend = p;
	bool negative = info->rcode == DNS_RCODE_NXDOMAIN ||
			(info->rcode == DNS_RCODE_NOERROR && an == 0);
	uint32_t min_ttl = UINT32_MAX;
	uint32_t neg_ttl = UINT32_MAX;
	bool soa_seen = false;
	unsigned total = (unsigned)an + ns + ar;
	size_t nttl = 0;
	for (unsigned i = 0; i < total; i++) {
		size_t start = p;
		if (skip_name(out, blen, &p) < 0 || p + 10 > blen)
			return 0;
		uint16_t type = rd16(out + p);
		uint32_t ttl = rd32(out + p + 4);
		uint16_t rdlen = rd16(out + p + 8);
		size_t ttlpos = p + 4;
		size_t rdata = p + 10;
		if (rdata + rdlen > blen)
			return 0;
		if (type == DNS_TYPE_OPT && i < (unsigned)an + ns)
			return 0; /* an OPT outside the additional section */
		if (type == DNS_TYPE_OPT) {
			/* The OPT record is hop by hop: cut the message here.
			 * Only TSIG/SIG(0) may follow it, and they would not
			 * verify for our client anyway. Nothing before it can
			 * point into what is cut. */
			p = start;
			wr16(out + 10, (uint16_t)(i - an - ns));
			break;
		}
		if (ttl > 0x7fffffffu)
			ttl = 0; /* RFC 2181 8: treat as zero */
		bool in_authority = i >= an && i < (unsigned)an + ns;
		if (negative && in_authority && type == DNS_TYPE_SOA) {
			size_t r = rdata;
			if (skip_name(out, blen, &r) < 0 || skip_name(out, blen, &r) < 0 ||
			    r + 20 > rdata + rdlen)
				return 0;
			uint32_t minimum = rd32(out + r + 16);
			uint32_t t = ttl < minimum ? ttl : minimum;
			if (t > pol->neg_ttl_s)
				t = pol->neg_ttl_s;
			if (t < neg_ttl)
				neg_ttl = t;
			ttl = t;
			soa_seen = true;
		} else {
			if (ttl < pol->min_ttl_s)
				ttl = pol->min_ttl_s;
			if (ttl > pol->max_ttl_s)
				ttl = pol->max_ttl_s;
		}
		wr32(out + ttlpos, ttl);
		if (i < (unsigned)an + ns && ttl < min_ttl)
			min_ttl = ttl;
		if (nttl >= ttl_cap)
			return 0;
		ttl_off[nttl++] = (uint16_t)ttlpos;
		p = rdata + rdlen;
	}
	blen = p; /* bytes after the last record (ldns accepts them) are not kept */
	info->nttl = (uint16_t)nttl;

	/* Record by record, within the body: ldns_wire2pkt() would read the
	 * fields of an rdata and go on from there even when the rdlength says
	 * more (so check other records than ours), skips what follows a TSIG,
	 * and leaks a record when there are two TSIGs. */
	p = DNS_HEADER_BYTES;
	for (unsigned i = 0; i < qd; i++) {
		ldns_rr *rr = NULL;
		if (ldns_wire2rr(&rr, out, blen, &p, LDNS_SECTION_QUESTION) != LDNS_STATUS_OK)
			return 0;
		ldns_rr_free(rr);
	}
	if (p != qend)
		return 0;
	for (size_t i = 0; i < nttl; i++) {
		ldns_rr *rr = NULL;
		if (ldns_wire2rr(&rr, out, blen, &p, LDNS_SECTION_ANSWER) != LDNS_STATUS_OK)
			return 0;
		ldns_rr_free(rr);
		if (p != (size_t)ttl_off[i] + 6 + rd16(out + ttl_off[i] + 4))
			return 0;
	}

	if (info->tc) {
		info->cacheable = false;
	} else if (info->rcode == DNS_RCODE_SERVFAIL) {
		info->kind = CACHE_SERVFAIL;
		info->ttl_s = pol->servfail_ttl_s;
		info->cacheable = pol->servfail_ttl_s > 0;
	} else if (negative) {
		/* RFC 2308 5: without an SOA a negative answer is not cached. */
		info->kind = info->rcode == DNS_RCODE_NXDOMAIN ? CACHE_NXDOMAIN : CACHE_NODATA;
		if (soa_seen) {
			uint32_t t = neg_ttl;
			if (min_ttl < t)
				t = min_ttl;
			info->ttl_s = t;
			info->cacheable = t > 0;
		}
	} else if (info->rcode == DNS_RCODE_NOERROR) {
		info->kind = CACHE_POSITIVE;
		info->ttl_s = min_ttl == UINT32_MAX ? 0 : min_ttl;
		info->cacheable = info->ttl_s > 0;
	}
	return blen;
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
