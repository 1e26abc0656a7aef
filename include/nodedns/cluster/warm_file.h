/* include/nodedns/cluster/warm_file.h - the warm-start file: the cluster store as checked bytes.
 *
 * Encodes the content of a k8s_store (its decoded Services, EndpointSlices
 * and Namespaces) into one buffer, and decodes such a buffer back into a
 * store, so a restarted resolver can answer cluster names before its first
 * list from the API. Pure: buffers only; the file I/O is the caller's
 * (src/io/warm_start.c).
 *
 * Format, version 1; integers big-endian:
 *
 *   offset size
 *    0      8   magic "NDNSWARM"
 *    8      4   version (1)
 *   12      4   CRC-32 (zlib's) of bytes [16, length)
 *   16      8   length of the whole file in bytes
 *   24      8   created: Unix time in seconds when the content was current
 *   32      4   number of Namespaces, Services, EndpointSlices (3 x 4)
 *   44      1+n cluster domain (lower case, no trailing dot)
 *           2+n API server identity (URL, and the CA's checksum)
 *   then the Namespaces, the Services and the EndpointSlices:
 *   namespace:  u8 len, name
 *   service:    u8 len ns, u8 len name, u8 kind, u8 n_ips, ips,
 *               u8 ext_len, ext (wire form), u16 n_ports, ports
 *   slice:      u8 len ns, u8 len name, u8 len svc, u16 n_ports, ports,
 *               u32 n_addrs, addrs
 *   ip:         u8 family (4 or 6), 4 or 16 bytes
 *   port:       u16 port, u8 protocol, u8 len name, name
 *   addr:       ip, u8 len label, label
 *
 * Every field is checked on load as k8s_objects.c checks the API's JSON (the
 * same lengths, characters and limits), so whatever passes is something the
 * API could have said; a file fails whole and the store is left unchanged.
 */
#ifndef NODEDNS_CLUSTER_WARM_FILE_H
#define NODEDNS_CLUSTER_WARM_FILE_H

#include <stddef.h>
#include <stdint.h>

struct k8s_store;

#define WARM_FILE_VERSION 1u
#define WARM_FILE_HEADER_BYTES 44u
#define WARM_FILE_MAX_BYTES (256u << 20) /* larger files are neither written nor read */
#define WARM_FILE_SERVER_MAX 1024u       /* bytes of the API server identity */
#define WARM_FILE_FUTURE_SLACK_S 300u    /* a file this far in the future is refused */

/* What the loader expects of a file. */
struct warm_file_expect {
	const char *domain;  /* the cluster domain we serve */
	const char *server;  /* the API server identity we sync from */
	uint64_t now_s;      /* Unix time now */
	uint64_t max_age_s;  /* older files are refused; 0: any age */
};

/* What a file's header says. */
struct warm_file_info {
	uint32_t version;
	uint64_t length, created_s;
	uint32_t namespaces, services, slices;
	char domain[256];
	char server[WARM_FILE_SERVER_MAX + 1];
};

/**
 * Encode the content of @p s (borrowed) with @p domain, @p server and
 * @p created_s into a new buffer *out (malloc, the caller's) of *outlen bytes.
 * @return 0, -EFBIG (over WARM_FILE_MAX_BYTES), -EINVAL (domain or server
 * too long), -ENOMEM.
 */
int warm_file_encode(const struct k8s_store *s, const char *domain, const char *server,
		     uint64_t created_s, uint8_t **out, size_t *outlen);

/**
 * Check the header and checksum of @p buf and fill @p info (may be NULL).
 * @return 0; -EBADMSG for a buffer that is not a whole, intact warm-start
 * file (not one at all, truncated, checksum mismatch); -EPROTONOSUPPORT for
 * another version. @p err (may be NULL) says why.
 */
int warm_file_check(const uint8_t *buf, size_t len, struct warm_file_info *info, char *err,
		    size_t errlen);

/**
 * Check @p buf (warm_file_check()), that it is ours (@p exp) and not too old,
 * then replace the content of @p s with it. On any error @p s is unchanged
 * and @p err says why. @return 0; the errors of warm_file_check(); -EREMCHG
 * for another cluster domain or API server; -ESTALE for too old (or from the
 * future); -EBADMSG for a malformed record; -ENOSPC, -ENOMEM.
 */
int warm_file_load(struct k8s_store *s, const uint8_t *buf, size_t len,
		   const struct warm_file_expect *exp, struct warm_file_info *info, char *err,
		   size_t errlen);

/** The CRC-32 warm_file_check() verifies, of @p len bytes at @p p (for tests
 * and the fuzz target, which repair the checksum of what they change). */
uint32_t warm_file_crc(const uint8_t *p, size_t len);

#endif
