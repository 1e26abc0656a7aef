/* include/nodedns/cluster/cluster_zone.h - the cluster zone: its settings and the answerer.
 *
 * cluster_answer(): snapshot + question -> a complete DNS answer, per the
 * Kubernetes DNS-Based Service Discovery specification 1.1.0. Pure (no libuv,
 * no curl), no allocation, any thread: a snapshot is only read.
 *
 * Answers are produced as a "body": a complete DNS response without an OPT
 * record, ID 0, the question exactly as the client asked it (case preserved),
 * QR=1 AA=1 RA=1. The caller patches the ID and RD/CD bits, appends its own
 * OPT record and applies the client's UDP size limit (TC).
 */
#ifndef NODEDNS_CLUSTER_ZONE_H
#define NODEDNS_CLUSTER_ZONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cluster_snapshot;

/* Defaults (--cluster-domain, --cluster-ttl). */
#define CLUSTER_DOMAIN_DEFAULT "cluster.local"
#define CLUSTER_TTL_S_DEFAULT 5

struct cluster_config {
	char domain[256];   /* "cluster.local": lower-case, no trailing dot */
	uint32_t ttl_s;     /* TTL of every record and of the SOA minimum */
	bool pods_insecure; /* answer a-b-c-d.NS.pod.DOMAIN */
};

enum cluster_verdict {
	CLUSTER_NOT_MINE = 0, /* not in the cluster zone (or an unknown reverse name): forward */
	CLUSTER_ANSWERED,     /* *outlen bytes of body in out */
};

struct cluster_answer_info {
	int rcode;               /* 0 NOERROR, 2 SERVFAIL (an ExternalName loop), 3 NXDOMAIN */
	bool nodata;             /* NOERROR without an answer for the type */
	/* ExternalName: for A/AAAA, the CNAME target outside the zone that the
	 * caller should resolve and append (wire form, lower-case). */
	uint8_t chase_name[255];
	size_t chase_len;        /* 0: nothing to chase */
};

/**
 * Answer the question (@p qname wire form as the client sent it, uncompressed,
 * @p qname_len bytes including the root label) from @p snap (may be NULL for
 * "not synced yet": then names in the zone return CLUSTER_ANSWERED never; the
 * caller must handle the unsynced case first, see cluster_in_zone()).
 * The body goes to @p out (capacity @p cap); if it does not fit, the answer is
 * a body with TC=1 and no records. Additional records that do not fit are
 * dropped without TC (RFC 2181 9). If not even the question fits: a bare
 * 12-byte header with TC=1 and QDCOUNT 0 (*outlen 0 when cap < 12).
 * @p info may be NULL. Any thread; @p snap is only read.
 */
enum cluster_verdict cluster_answer(const struct cluster_snapshot *snap,
				    const struct cluster_config *cfg, const uint8_t *qname,
				    size_t qname_len, uint16_t qtype, uint16_t qclass,
				    uint8_t *out, size_t cap, size_t *outlen,
				    struct cluster_answer_info *info);

/**
 * The same over a stream (TCP), where @p cap is the transport's limit (64 KiB
 * less what the caller adds): an answer that does not fit keeps as many whole
 * answer records as fit (no authority or additional records), with TC never
 * set; SERVFAIL if not one fits.
 */
enum cluster_verdict cluster_answer_stream(const struct cluster_snapshot *snap,
					   const struct cluster_config *cfg, const uint8_t *qname,
					   size_t qname_len, uint16_t qtype, uint16_t qclass,
					   uint8_t *out, size_t cap, size_t *outlen,
					   struct cluster_answer_info *info);

/** True when @p qname (wire form) is the cluster domain or below it. Reverse
 * names are not "in zone" by this test: they are answered only when known. */
bool cluster_in_zone(const struct cluster_config *cfg, const uint8_t *qname, size_t qname_len);

#endif
