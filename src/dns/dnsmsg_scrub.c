/* src/dns/dnsmsg_scrub.c - checks of an upstream reply before it is used: its structure, its EDNS rcode, its answer chain. */
#include "nodedns/dns/dnsmsg.h"

#include <string.h>

#include <ldns/ldns.h>

#define SCRUB_CHAIN_MAX 16 /* CNAME targets followed from the question name */
/* Compression pointers followed in one name: a name has at most 127 labels,
 * and an encoder needs no more pointers than labels. Without a bound a
 * 64 KiB reply of one long pointer chain and 2,000 records named by its end
 * cost 0.6 s of a worker here. */
#define SCRUB_POINTERS_MAX 127u

/* Read the name at *pos into @p out (lower-cased, uncompressed, >= 255
 * bytes), following compression pointers backwards only, at most
 * SCRUB_POINTERS_MAX of them; *pos moves past the name as written.
 * @return its uncompressed length, or 0 when malformed. */
static size_t read_name(const uint8_t *w, size_t len, size_t *pos, uint8_t *out)
{
	size_t p = *pos, n = 0, end = 0;
	unsigned hops = 0;
	for (;;) {
		if (p >= len)
			return 0;
		uint8_t l = w[p];
		if ((l & 0xc0) == 0xc0) {
			if (p + 2 > len || ++hops > SCRUB_POINTERS_MAX)
				return 0;
			size_t target = (size_t)(l & 0x3f) << 8 | w[p + 1];
			if (target < DNS_HEADER_BYTES || target >= p)
				return 0;
			if (!end)
				end = p + 2;
			p = target;
			continue;
		}
		if (l & 0xc0 || n + 1u + l > DNS_NAME_MAX_BYTES || p + 1u + l > len)
			return 0;
		out[n++] = l;
		for (unsigned i = 0; i < l; i++)
			out[n++] = wire_lower(w[p + 1 + i]);
		p += 1u + l;
		if (l == 0)
			break;
	}
	*pos = end ? end : p;
	return n;
}

int dnsmsg_reply_edns(const uint8_t *msg, size_t len, uint8_t *ext_rcode)
{
	uint8_t name[DNS_NAME_MAX_BYTES];
	if (len < DNS_HEADER_BYTES)
		return -1;
	size_t p = DNS_HEADER_BYTES;
	for (unsigned i = 0, qd = wire_get16(msg + 4); i < qd; i++) {
		if (read_name(msg, len, &p, name) == 0 || p + 4 > len)
			return -1;
		p += 4;
	}
	unsigned an = wire_get16(msg + 6), ns = wire_get16(msg + 8), ar = wire_get16(msg + 10);
	int found = 0;
	for (unsigned i = 0; i < an + ns + ar; i++) {
		if (read_name(msg, len, &p, name) == 0 || p + 10 > len)
			return -1;
		size_t end = p + 10u + wire_get16(msg + p + 8);
		if (end > len)
			return -1;
		if (wire_get16(msg + p) == DNS_TYPE_OPT && i >= an + ns && !found) {
			found = 1;
			*ext_rcode = msg[p + 4];
		}
		p = end;
	}
	return found;
}

/* Whether the wire name @p a (@p alen bytes, lower-case) is @p b or an
 * ancestor of it, at a label boundary. */
static bool name_at_or_above(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return dnsmsg_name_under(b, blen, a, alen);
}

struct chain {
	uint8_t names[SCRUB_CHAIN_MAX][DNS_NAME_MAX_BYTES];
	uint8_t lens[SCRUB_CHAIN_MAX];
	unsigned n;
	uint16_t qtype;
};

static int chain_find(const struct chain *ch, const uint8_t *name, size_t len)
{
	for (unsigned i = 0; i < ch->n; i++) {
		if (ch->lens[i] == len && memcmp(ch->names[i], name, len) == 0)
			return (int)i;
	}
	return -1;
}

static bool chain_has_below(const struct chain *ch, const uint8_t *name, size_t len)
{
	for (unsigned i = 0; i < ch->n; i++) {
		if (name_at_or_above(name, len, ch->names[i], ch->lens[i]))
			return true;
	}
	return false;
}

/* One pass over the @p an answer records from @p p: mark in @p keep those
 * that belong to the chain, adding CNAME targets to it. @return how many
 * were newly kept, or -1 when malformed. */
static int chain_pass(struct chain *ch, const uint8_t *w, size_t len, size_t p, unsigned an,
		      uint8_t *keep)
{
	uint8_t owner[DNS_NAME_MAX_BYTES], target[DNS_NAME_MAX_BYTES];
	int added = 0;
	for (unsigned i = 0; i < an; i++) {
		size_t olen = read_name(w, len, &p, owner);
		if (olen == 0 || p + 10 > len)
			return -1;
		uint16_t type = wire_get16(w + p);
		size_t rdata = p + 10, end = rdata + wire_get16(w + p + 8);
		if (end > len)
			return -1;
		p = end;
		if (keep[i / 8] & (1u << (i % 8)))
			continue;
		bool in = chain_find(ch, owner, olen) >= 0;
		bool ok = in && (type == ch->qtype || ch->qtype == DNS_TYPE_ANY ||
				 type == DNS_TYPE_CNAME || type == DNS_TYPE_RRSIG);
		if (type == DNS_TYPE_DNAME && chain_has_below(ch, owner, olen))
			ok = true;
		if (!ok)
			continue;
		keep[i / 8] |= (uint8_t)(1u << (i % 8));
		added++;
		if (type == DNS_TYPE_CNAME && ch->qtype != DNS_TYPE_CNAME) {
			size_t r = rdata;
			size_t tlen = read_name(w, len, &r, target);
			if (tlen == 0 || r != end)
				return -1;
			if (chain_find(ch, target, tlen) < 0 && ch->n < SCRUB_CHAIN_MAX) {
				memcpy(ch->names[ch->n], target, tlen);
				ch->lens[ch->n++] = (uint8_t)tlen;
			}
		}
	}
	return added;
}

/* Re-encode @p buf without the answer records not marked in @p keep; @p qend
 * is where its question ends. Records are read one by one into a packet made
 * from the header and question alone: ldns_wire2pkt() on the whole reply
 * leaks a record of a message with two TSIGs (found by fuzz_trim), which an
 * upstream can send on every reply. */
static int rebuild(uint8_t *buf, size_t *len, size_t cap, size_t qend, const uint8_t *keep)
{
	static const ldns_pkt_section sections[3] = { LDNS_SECTION_ANSWER, LDNS_SECTION_AUTHORITY,
						      LDNS_SECTION_ADDITIONAL };
	uint8_t head[DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4];
	ldns_pkt *pkt = NULL;
	int rc = -1;

	if (qend > sizeof(head))
		return -1;
	memcpy(head, buf, qend);
	memset(head + 6, 0, 6); /* no records: only the header and the question */
	if (ldns_wire2pkt(&pkt, head, qend) != LDNS_STATUS_OK)
		goto out;
	size_t p = qend;
	for (unsigned s = 0; s < 3; s++) {
		for (unsigned i = 0, n = wire_get16(buf + 6 + 2 * s); i < n; i++) {
			ldns_rr *rr = NULL;
			if (ldns_wire2rr(&rr, buf, *len, &p, sections[s]) != LDNS_STATUS_OK)
				goto out;
			if (s == 0 && !(keep[i / 8] & (1u << (i % 8)))) {
				ldns_rr_free(rr);
				continue;
			}
			if (!ldns_pkt_push_rr(pkt, sections[s], rr)) {
				ldns_rr_free(rr);
				goto out;
			}
		}
	}
	uint8_t *wire = NULL;
	size_t n = 0;
	if (ldns_pkt2wire(&wire, pkt, &n) == LDNS_STATUS_OK && n <= cap && n >= DNS_HEADER_BYTES) {
		memcpy(buf, wire, n);
		*len = n;
		rc = 0;
	}
	LDNS_FREE(wire);
out:
	ldns_pkt_free(pkt);
	return rc;
}

int dnsmsg_scrub_answer(uint8_t *buf, size_t *len, size_t cap)
{
	static const unsigned bits = 8;
	uint8_t keep[(DNS_RECORDS_MAX + 7) / 8];
	struct chain ch;
	size_t n = *len;
	if (n < DNS_HEADER_BYTES || wire_get16(buf + 4) != 1)
		return 0;
	unsigned an = wire_get16(buf + 6);
	if (an == 0)
		return 0;
	if (an > DNS_RECORDS_MAX)
		return -1;
	size_t p = DNS_HEADER_BYTES;
	size_t qlen = read_name(buf, n, &p, ch.names[0]);
	if (qlen == 0 || p + 4 > n)
		return -1;
	ch.lens[0] = (uint8_t)qlen;
	ch.n = 1;
	ch.qtype = wire_get16(buf + p);
	p += 4;
	const size_t qend = p;
	memset(keep, 0, (an + bits - 1) / bits);
	int nkept = 0;
	for (unsigned pass = 0; pass < SCRUB_CHAIN_MAX; pass++) {
		int added = chain_pass(&ch, buf, n, p, an, keep);
		if (added < 0)
			return -1;
		if (added == 0)
			break;
		nkept += added;
	}
	if (nkept == 0)
		return -1; /* nothing usable left */
	if ((unsigned)nkept == an)
		return 0;
	if (rebuild(buf, len, cap, qend, keep) < 0)
		return -1;
	return (int)an - nkept;
}
