/* tests/fuzz/fuzz_trim.c - libFuzzer target for dnsmsg_trim(), the UDP reply trim (RFC 2181 9).
 *
 * Build and run: FUZZ_TARGETS=trim tests/fuzz/run.sh (seed corpus
 * tests/fuzz/corpus/trim). Reproduce a crash: build-fuzz/fuzz_trim crash-<sha1>
 *
 * Input: two bytes choosing the room, then a body (a DNS response). The body
 * is trimmed as is, and once more after dnsmsg_prepare_reply() made it a body
 * as the cache holds it. Besides the sanitizers the target checks: a body that
 * fits is left alone; otherwise the result fits (or is the question with
 * TC=1), is a prefix of the body with only TC and the counts changed, keeps
 * the whole answer section unless TC is set, drops the authority section only
 * of a NOERROR answer whose authority is all NS, and its records, read by
 * rdlength with the new counts, end exactly at the new length.
 */
#include "nodedns/dns/dnsmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

#define CAP (DNS_MSG_MAX_BYTES + 64)

static const struct dnsmsg_ttl_policy pol = {
	.min_ttl_s = 0, .max_ttl_s = 86400, .neg_ttl_s = 300, .servfail_ttl_s = 2
};
static uint8_t g_in[CAP], g_out[CAP], g_body[CAP];
static uint16_t g_ttl_off[DNS_RECORDS_MAX];

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Skip a name at *p without following pointers. @return false when malformed. */
static bool skip(const uint8_t *m, size_t len, size_t *p)
{
	for (unsigned n = 0; n < 256; n++) {
		if (*p >= len)
			return false;
		uint8_t l = m[*p];
		if ((l & 0xc0) == 0xc0) {
			*p += 2;
			return *p <= len;
		}
		if (l & 0xc0)
			return false;
		*p += 1u + l;
		if (l == 0)
			return true;
	}
	return false;
}

/* Walk @p count records from *p; *ns_only cleared for a non-NS one. */
static bool walk(const uint8_t *m, size_t len, size_t *p, unsigned count, bool *ns_only)
{
	for (unsigned i = 0; i < count; i++) {
		if (!skip(m, len, p) || *p + 10 > len)
			return false;
		if (get16(m + *p) != DNS_TYPE_NS)
			*ns_only = false;
		*p += 10u + get16(m + *p + 8);
		if (*p > len)
			return false;
	}
	return true;
}

static void check_trim(const uint8_t *body, size_t len, size_t room)
{
	if (len < DNS_HEADER_BYTES || get16(body + 4) > 1)
		return;
	size_t qend = DNS_HEADER_BYTES;
	if (get16(body + 4) == 1) {
		size_t n = dnsmsg_plain_name_len(body, len, DNS_HEADER_BYTES);
		if (n == 0 || DNS_HEADER_BYTES + n + 4 > len)
			return;
		qend = DNS_HEADER_BYTES + n + 4;
	}
	if (room < qend)
		room = qend;
	memcpy(g_out, body, len);
	size_t out = dnsmsg_trim(g_out, len, qend, room);
	if (len <= room) {
		CHECK(out == len && memcmp(g_out, body, len) == 0);
		return;
	}
	CHECK(out <= len && out >= qend);
	CHECK(memcmp(g_out + 12, body + 12, out - 12) == 0); /* a prefix */
	CHECK(memcmp(g_out, body, 2) == 0 && (g_out[2] | 0x02) == (body[2] | 0x02) &&
	      g_out[3] == body[3]);
	unsigned an = get16(g_out + 6), ns = get16(g_out + 8), ar = get16(g_out + 10);
	if ((g_out[2] & 0x02) && out == qend && an == 0 && ns == 0 && ar == 0)
		return; /* the question alone with TC=1 */
	CHECK(out <= room);
	CHECK(!(g_out[2] & 0x02) || (body[2] & 0x02)); /* TC only with the question alone */
	CHECK(an == get16(body + 6));                   /* the answer stays whole */
	CHECK(ar == 0);                                 /* it did not fit: additional went first */
	if (ns != get16(body + 8)) {
		bool ns_only = true;
		size_t p = qend;
		CHECK(ns == 0 && an > 0 && (body[3] & 0x0f) == 0);
		CHECK(walk(body, len, &p, an, &ns_only));
		ns_only = true;
		CHECK(walk(body, len, &p, get16(body + 8), &ns_only) && ns_only);
	}
	bool dummy = true;
	size_t p = qend;
	CHECK(walk(g_out, out, &p, an + ns, &dummy) && p == out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size - 2 > DNS_MSG_MAX_BYTES)
		return 0;
	size_t room = DNS_UDP_NO_EDNS_BYTES - DNS_OPT_RR_BYTES +
		      (size_t)get16(data) % (DNS_EDNS_PAYLOAD_BYTES - DNS_UDP_NO_EDNS_BYTES + 12);
	size_t len = size - 2;
	memcpy(g_in, data + 2, len);
	check_trim(g_in, len, room);

	struct dnsmsg_reply_info info;
	size_t blen = dnsmsg_prepare_reply(g_in, len, &pol, g_body, sizeof(g_body), g_ttl_off,
					   DNS_RECORDS_MAX, &info);
	if (blen > 0)
		check_trim(g_body, blen, room);
	return 0;
}
