/* include/nodedns/dns/dnsmsg.h - DNS wire format on the path of a query.
 *
 * The hot path (parse a client query, finalize a stored answer for one
 * client) works on the wire directly, with no allocation: a cache hit must
 * cost a memcpy and a few stores (see DESIGN.md). The cold path (checking an
 * upstream reply before it is cached) validates with ldns first, then walks
 * the wire to find TTL fields.
 *
 * Glossary:
 *  - body: a complete DNS response without an OPT record. Cached answers and
 *    cluster answers are bodies; dnsmsg_finalize() turns a body into the reply
 *    for one client (ID, RD/CD, question case, OPT, TC).
 *  - key: the cache key of a question: lower-cased wire name, type, class and
 *    one flags byte (DO, CD).
 */
#ifndef NODEDNS_DNSMSG_H
#define NODEDNS_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodedns/util/wire.h"

#define DNS_NAME_MAX_BYTES 255
#define DNS_EDNS_PAYLOAD_BYTES 1232 /* what we advertise and send at most over UDP */
#define DNS_UDP_NO_EDNS_BYTES 512
#define DNS_OPT_RR_BYTES 11
#define DNS_MSG_MAX_BYTES 65535
/* Records a message can hold: each takes at least 11 bytes (root owner,
 * type, class, TTL, rdlength); a bound for arrays of TTL offsets. */
#define DNS_RECORDS_MAX ((DNS_MSG_MAX_BYTES - DNS_HEADER_BYTES) / 11 + 1)

#define DNS_CLASS_IN 1
#define DNS_CLASS_CH 3
#define DNS_TYPE_A 1
#define DNS_TYPE_NS 2
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_SOA 6
#define DNS_TYPE_PTR 12
#define DNS_TYPE_TXT 16
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_SRV 33
#define DNS_TYPE_DNAME 39
#define DNS_TYPE_OPT 41
#define DNS_TYPE_RRSIG 46
#define DNS_TYPE_IXFR 251
#define DNS_TYPE_AXFR 252
#define DNS_TYPE_ANY 255

#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP 4
#define DNS_RCODE_REFUSED 5
#define DNS_RCODE_BADVERS 16 /* extended: upper bits in OPT */

/** What dnsmsg_parse_query() concluded. */
enum dnsmsg_verdict {
	DNSMSG_OK = 0,
	DNSMSG_DROP,    /* no header, or QR=1: send nothing */
	DNSMSG_FORMERR, /* answer FORMERR (question echoed when it parsed) */
	DNSMSG_NOTIMP,  /* opcode other than QUERY */
	DNSMSG_BADVERS, /* EDNS version other than 0 */
};

/** A parsed client query. Only the fields a reply needs; ~540 bytes. */
struct dnsmsg_query {
	uint16_t id;
	uint8_t opcode;
	bool rd, cd;
	bool has_question;           /* the question parsed (also set on some errors) */
	uint8_t qname[DNS_NAME_MAX_BYTES];  /* wire form as the client sent it */
	uint8_t lname[DNS_NAME_MAX_BYTES];  /* the same, lower-cased (A-Z only) */
	uint8_t qname_len;           /* bytes, including the root label; 255 max */
	uint8_t nlabels;             /* labels, not counting the root */
	uint16_t qtype, qclass;
	bool edns;                   /* an OPT record was present */
	bool do_bit;
	uint16_t udp_size;           /* client's EDNS payload size (>= 512), 512 without EDNS */
};

/**
 * Parse a client query (@p wire, @p len; borrowed). Strict where it matters
 * (exactly one question, an uncompressed name of at most 255 bytes, every
 * record after it well formed, at most one OPT and only in the additional
 * section with the root owner) and lenient about trailing bytes. The opcode
 * is checked first (NOTIMP whatever the sections hold). For NOTIMP and for a
 * QDCOUNT other than 1 the rest is still read, best effort, so that the
 * error reply echoes the question and mirrors an OPT (RFC 6891 6.1.1).
 * @return a dnsmsg_verdict; @p q is filled as far as parsing got.
 */
enum dnsmsg_verdict dnsmsg_parse_query(const uint8_t *wire, size_t len, struct dnsmsg_query *q);

/**
 * Whether @p reply (@p len bytes, borrowed; at least a header) carries
 * exactly the question of @p query: one question, the same name compared
 * without case (a compression pointer never matches), type and class.
 * @p query (borrowed) is one we built or checked: one question whose
 * uncompressed name bounds the walk, ending at @p qend.
 */
bool dnsmsg_question_match(const uint8_t *query, size_t qend, const uint8_t *reply, size_t len);

/** The UDP reply limit for @p q: 512 without EDNS, else the client's size
 * capped at DNS_EDNS_PAYLOAD_BYTES (never below 512). */
size_t dnsmsg_udp_limit(const struct dnsmsg_query *q);

/** Build the cache key of @p q into @p key (capacity >= 260): lower-cased name,
 * type, class, and one byte with DO (bit 0) and CD (bit 1). @return length. */
size_t dnsmsg_key(const struct dnsmsg_query *q, uint8_t *key);

/**
 * Turn the body in @p buf[0..body_len) into the reply to @p q, in place
 * (capacity @p cap >= body_len + DNS_OPT_RR_BYTES): set ID, QR, RD and CD as
 * asked, RA=1, copy the client's question name (its case) over the body's
 * when both have the same length, append an OPT record (payload 1232, DO as
 * asked) when the query had one, and when the result exceeds @p limit trim
 * it with dnsmsg_trim() (the OPT always stays).
 * @return the reply length, or 0 if @p buf does not hold a valid body header.
 */
size_t dnsmsg_finalize(uint8_t *buf, size_t body_len, size_t cap, const struct dnsmsg_query *q,
		       size_t limit);

/**
 * Make the body in @p buf (@p len bytes, question ending at @p qend) fit in
 * @p room bytes, in place (RFC 2181 9): unchanged when it fits; else without
 * its additional records; else, for a NOERROR answer whose authority section
 * is only NS records, without authority and additional; else the header and
 * question alone with TC=1. TC is thus set only when the answer section
 * itself, or an authority section the answer needs (SOA, DNSSEC proofs),
 * does not fit. A body whose records do not walk is cut to the question with
 * TC=1, as is one whose question alone exceeds @p room (the result is then
 * longer than @p room). Compression pointers in what stays must point
 * backwards (true of every server's output, and of owner names in every body
 * this module accepts).
 * @return the new length.
 */
size_t dnsmsg_trim(uint8_t *buf, size_t len, size_t qend, size_t room);

/**
 * Build a body with no records and rcode @p rcode for @p q (question echoed
 * when q->has_question) into @p buf (capacity >= 12 + 255 + 4). For
 * DNS_RCODE_BADVERS the rcode field is 0 and the caller's OPT carries the
 * upper bits: use dnsmsg_finalize_rcode(). @return the body length.
 */
size_t dnsmsg_error_body(const struct dnsmsg_query *q, int rcode, uint8_t *buf);

/** Like dnsmsg_finalize() for an error body, with the extended rcode bits of
 * BADVERS put in the OPT record. Always appends an OPT for BADVERS. */
size_t dnsmsg_finalize_rcode(uint8_t *buf, size_t body_len, size_t cap,
			     const struct dnsmsg_query *q, int rcode, size_t limit);

/**
 * Build the query we send upstream for @p q into @p buf (capacity >= 12 + 255
 * + 4 + 11): ID 0, RD=1, CD as asked, the lower-cased name, an OPT record with
 * payload 1232 and DO as asked. @return its length.
 */
size_t dnsmsg_upstream_query(const struct dnsmsg_query *q, uint8_t *buf);

/** Answer a CH-class query (version.bind, version.server, id.server,
 * hostname.bind TXT) into a body. @return body length, or 0 when the name is
 * not one of those (the caller answers REFUSED). */
size_t dnsmsg_chaos_body(const struct dnsmsg_query *q, const char *version, const char *ident,
			 uint8_t *buf, size_t cap);

/** TTL policy applied to upstream replies before caching. */
struct dnsmsg_ttl_policy {
	uint32_t min_ttl_s, max_ttl_s; /* clamp for positive answers */
	uint32_t neg_ttl_s;            /* cap for negative answers */
	uint32_t servfail_ttl_s;       /* how long a SERVFAIL is kept, e.g. 2 */
};

/** What dnsmsg_prepare_reply() found in an upstream reply. */
struct dnsmsg_reply_info {
	int rcode;
	bool tc;
	int kind;          /* enum cache_kind */
	bool cacheable;    /* false: pass to the client but do not cache */
	uint32_t ttl_s;    /* how long the entry is fresh */
	uint16_t nttl;     /* TTL fields found (offsets in ttl_off) */
};

/**
 * Check an upstream reply (@p reply, @p len; borrowed) with ldns, then copy it
 * into @p out (capacity @p cap) as a body: the answer section scrubbed
 * (dnsmsg_scrub_answer()), the OPT record removed, positive
 * TTLs clamped to the policy, negative answers' SOA TTL set to the negative
 * TTL (min of SOA TTL, SOA minimum and the cap). Records the offset of every
 * TTL field in @p ttl_off (capacity @p ttl_cap).
 * @return the body length, or 0 when the reply is malformed (ldns says so,
 * or a TTL field count above ttl_cap), carries an extended rcode in its OPT
 * (BADVERS: we send EDNS version 0, so a broken upstream), or has nothing
 * usable left after scrubbing.
 */
size_t dnsmsg_prepare_reply(const uint8_t *reply, size_t len, const struct dnsmsg_ttl_policy *pol,
			    uint8_t *out, size_t cap, uint16_t *ttl_off, size_t ttl_cap,
			    struct dnsmsg_reply_info *info);

/**
 * The answer to an ExternalName chase: the cluster zone's CNAME answer
 * (@p cname, @p clen; a body, borrowed) followed by the answer records of the
 * target's answer (@p target, @p tlen; borrowed), whose rcode it takes when
 * that is NOERROR or NXDOMAIN; any other rcode leaves the CNAME answer alone.
 * Goes through ldns (not a hot path; the target may use compression pointers
 * that must not be copied as bytes); of the target only the question and
 * answer records are read. Written to @p out (capacity @p cap), which may be
 * @p target's buffer.
 * @return the length, or 0 when either does not parse or the result does
 * not fit (the caller sends the CNAME alone).
 */
size_t dnsmsg_merge_chase(const uint8_t *cname, size_t clen, const uint8_t *target, size_t tlen,
			  uint8_t *out, size_t cap);

/** Wire length (root label included, 255 at most) of the uncompressed name
 * at @p off in @p wire, or 0 when it runs off the message, holds a
 * compression pointer or an extended label type, or is too long. */
size_t dnsmsg_plain_name_len(const uint8_t *wire, size_t len, size_t off);

/** Convert a lower-case dotted domain ("cluster.local", "." for the root;
 * no trailing dot) to wire form in @p out (>= 255 bytes).
 * @return the wire length, or 0 for an invalid name. */
size_t dnsmsg_name_from_text(const char *domain, uint8_t *out);

/** True when the wire name @p name (lower-case, @p len bytes) is @p zone
 * (lower-case wire, @p zlen bytes) or below it, at a label boundary. */
bool dnsmsg_name_under(const uint8_t *name, size_t len, const uint8_t *zone, size_t zlen);

/**
 * Walk every record of the message @p msg (@p len bytes, borrowed): names
 * (compression pointers backwards only), record lengths within the message.
 * @return -1 when it does not walk (a cut or desynchronised frame), 0 when
 * it holds no OPT record, 1 when it does (@p ext_rcode: the upper 8 bits of
 * its rcode, e.g. 1 for BADVERS). Cold path: upstream replies only
 * (src/dns/dnsmsg_scrub.c).
 */
int dnsmsg_reply_edns(const uint8_t *msg, size_t len, uint8_t *ext_rcode);

/**
 * Scrub the answer section of the upstream reply in @p buf (*@p len bytes,
 * capacity @p cap), in place: keep only the records of the question's name
 * and its CNAME chain (the question's type, CNAME, RRSIG, or any type for
 * ANY) and DNAMEs above a name of the chain, as unbound does; re-encode the
 * message with ldns when a record was dropped. A message with other than one
 * question or without answer records is left alone.
 * @return how many records were dropped (0: untouched), or -1 when the
 * answer section does not walk or nothing of it is left (a failure).
 */
int dnsmsg_scrub_answer(uint8_t *buf, size_t *len, size_t cap);

/** Clear AD (byte 3, 0x20) in a body, for clients that asked for neither DO
 * nor AD (RFC 6840 5.8). */
static inline void dnsmsg_clear_ad(uint8_t *wire)
{
	wire[3] &= (uint8_t)~0x20u;
}

/** Read the rcode (low 4 bits) of a message header. */
static inline int dnsmsg_rcode(const uint8_t *wire)
{
	return wire[3] & 0x0f;
}

/** Write @p name (wire form) as dotted text into @p out (capacity >= 1010);
 * non-printable bytes are escaped \DDD. @return @p out. */
char *dnsmsg_name_str(const uint8_t *name, size_t len, char *out, size_t cap);

/** Mnemonic of a type ("A", "AAAA", ... or "TYPE123") into @p out (>= 16). */
const char *dnsmsg_type_str(uint16_t type, char *out, size_t cap);

/** Mnemonic of an rcode ("NOERROR", ...). */
const char *dnsmsg_rcode_str(int rcode);

#endif
