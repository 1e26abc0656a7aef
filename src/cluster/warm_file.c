/* src/cluster/warm_file.c - encode the cluster store into a checked buffer and back (the warm start).
 *
 * The format is described in include/nodedns/cluster/warm_file.h. Encoding
 * walks the store's objects (k8s_store_foreach_object); decoding checks every
 * field as k8s_objects.c checks the API's JSON, builds the objects into a new
 * store and hands its content over only when the whole buffer was good
 * (k8s_store_take), so a bad file never leaves half a cluster behind.
 */
#include "nodedns/cluster/warm_file.h"

#include "k8s_objects_internal.h"
#include "k8s_store_internal.h"
#include "nodedns/util/wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const uint8_t warm_magic[8] = { 'N', 'D', 'N', 'S', 'W', 'A', 'R', 'M' };

#define OFF_VERSION 8
#define OFF_CRC 12
#define OFF_LENGTH 16
#define OFF_CREATED 24
#define OFF_COUNTS 32
#define CRC_FROM OFF_LENGTH

uint32_t warm_file_crc(const uint8_t *p, size_t len)
{
	uLong c = crc32(0L, Z_NULL, 0);

	while (len) {
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		c = crc32(c, p, n);
		p += n;
		len -= n;
	}
	return (uint32_t)c;
}

static void put64(uint8_t *p, uint64_t v)
{
	wire_put32(p, (uint32_t)(v >> 32));
	wire_put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)wire_get32(p) << 32 | wire_get32(p + 4);
}

/* ------------------------------------------------------------- encoding */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err; /* first error: -ENOMEM or -EFBIG */
};

static uint8_t *w_room(struct wbuf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (b->len + n > WARM_FILE_MAX_BYTES) {
		b->err = -EFBIG;
		return NULL;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->p = p;
		b->cap = cap;
	}
	uint8_t *at = b->p + b->len;
	b->len += n;
	return at;
}

static void w_u8(struct wbuf *b, unsigned v)
{
	uint8_t *p = w_room(b, 1);
	if (p)
		*p = (uint8_t)v;
}

static void w_u16(struct wbuf *b, unsigned v)
{
	uint8_t *p = w_room(b, 2);
	if (p)
		wire_put16(p, (uint16_t)v);
}

static void w_u32(struct wbuf *b, uint32_t v)
{
	uint8_t *p = w_room(b, 4);
	if (p)
		wire_put32(p, v);
}

static void w_bytes(struct wbuf *b, const void *s, size_t n)
{
	uint8_t *p = w_room(b, n);
	if (p && n)
		memcpy(p, s, n);
}

/* A string of at most 255 bytes with its length. */
static void w_str8(struct wbuf *b, const char *s, size_t n)
{
	w_u8(b, (unsigned)n);
	w_bytes(b, s, n);
}

static void w_ip(struct wbuf *b, const struct k8s_ip *ip)
{
	w_u8(b, ip->fam);
	w_bytes(b, ip->b, ip->fam == 4 ? 4 : 16);
}

static void w_ports(struct wbuf *b, const struct k8s_port *ports, uint16_t n)
{
	w_u16(b, n);
	for (uint16_t i = 0; i < n; i++) {
		w_u16(b, ports[i].port);
		w_u8(b, ports[i].proto);
		w_str8(b, ports[i].name, ports[i].name_len);
	}
}

static int enc_ns(void *arg, const void *obj, size_t len)
{
	w_str8(arg, obj, len);
	return 0;
}

static int enc_service(void *arg, const void *obj, size_t len)
{
	const struct k8s_service *svc = obj;
	struct wbuf *b = arg;

	(void)len;
	w_str8(b, svc->ns, strlen(svc->ns));
	w_str8(b, svc->name, strlen(svc->name));
	w_u8(b, svc->kind);
	w_u8(b, svc->n_ips);
	for (uint8_t i = 0; i < svc->n_ips; i++)
		w_ip(b, &svc->ips[i]);
	w_u8(b, svc->ext_len);
	w_bytes(b, svc->ext, svc->ext_len);
	w_ports(b, svc->ports, svc->n_ports);
	return b->err;
}

static int enc_slice(void *arg, const void *obj, size_t len)
{
	const struct k8s_slice *sl = obj;
	struct wbuf *b = arg;

	(void)len;
	w_str8(b, sl->ns, strlen(sl->ns));
	w_str8(b, sl->name, strlen(sl->name));
	w_str8(b, sl->svc, strlen(sl->svc));
	w_ports(b, sl->ports, sl->n_ports);
	w_u32(b, sl->n_addrs);
	for (uint32_t i = 0; i < sl->n_addrs; i++) {
		char buf[K8S_LABEL_MAX];
		uint8_t n;
		const char *label = k8s_objects_addr_label(sl, &sl->addrs[i], buf, &n);
		w_ip(b, &sl->addrs[i].ip);
		w_str8(b, label, n);
	}
	return b->err;
}

int warm_file_encode(const struct k8s_store *s, const char *domain, const char *server,
		     uint64_t created_s, uint8_t **out, size_t *outlen)
{
	struct wbuf b = { 0 };
	struct k8s_store_stats st;
	size_t dlen = strlen(domain), slen = strlen(server);

	*out = NULL;
	*outlen = 0;
	if (dlen > 253 || slen > WARM_FILE_SERVER_MAX)
		return -EINVAL;
	k8s_store_get_stats(s, &st);
	w_room(&b, WARM_FILE_HEADER_BYTES);
	w_str8(&b, domain, dlen);
	w_u16(&b, (unsigned)slen);
	w_bytes(&b, server, slen);
	k8s_store_foreach_object(s, K8S_NAMESPACE, enc_ns, &b);
	k8s_store_foreach_object(s, K8S_SERVICE, enc_service, &b);
	k8s_store_foreach_object(s, K8S_ENDPOINTSLICE, enc_slice, &b);
	if (b.err) {
		free(b.p);
		return b.err;
	}
	memcpy(b.p, warm_magic, sizeof(warm_magic));
	wire_put32(b.p + OFF_VERSION, WARM_FILE_VERSION);
	put64(b.p + OFF_LENGTH, b.len);
	put64(b.p + OFF_CREATED, created_s);
	wire_put32(b.p + OFF_COUNTS, (uint32_t)st.namespaces);
	wire_put32(b.p + OFF_COUNTS + 4, (uint32_t)st.services);
	wire_put32(b.p + OFF_COUNTS + 8, (uint32_t)st.endpointslices);
	wire_put32(b.p + OFF_CRC, warm_file_crc(b.p + CRC_FROM, b.len - CRC_FROM));
	*out = b.p;
	*outlen = b.len;
	return 0;
}

/* --------------------------------------------------------------- header */

#define bad(rc, ...) k8s_objects_fail(rc, err, errlen, __VA_ARGS__)

int warm_file_check(const uint8_t *buf, size_t len, struct warm_file_info *info, char *err,
		    size_t errlen)
{
	struct warm_file_info tmp;
	uint64_t flen;

	if (!info)
		info = &tmp;
	memset(info, 0, sizeof(*info));
	if (len < WARM_FILE_HEADER_BYTES || memcmp(buf, warm_magic, sizeof(warm_magic)) != 0)
		return bad(-EBADMSG, len < WARM_FILE_HEADER_BYTES ? "truncated header (%zu bytes)"
								   : "not a warm-start file (%zu bytes)",
			   len);
	info->version = wire_get32(buf + OFF_VERSION);
	if (info->version != WARM_FILE_VERSION)
		return bad(-EPROTONOSUPPORT, "version %u, this build reads %u", info->version,
			   WARM_FILE_VERSION);
	flen = get64(buf + OFF_LENGTH);
	if (flen != len)
		return bad(-EBADMSG, "%s: %zu bytes, the header says %llu",
			   flen > len ? "truncated" : "trailing bytes", len, (unsigned long long)flen);
	if (warm_file_crc(buf + CRC_FROM, len - CRC_FROM) != wire_get32(buf + OFF_CRC))
		return bad(-EBADMSG, "checksum mismatch");
	info->length = flen;
	info->created_s = get64(buf + OFF_CREATED);
	info->namespaces = wire_get32(buf + OFF_COUNTS);
	info->services = wire_get32(buf + OFF_COUNTS + 4);
	info->slices = wire_get32(buf + OFF_COUNTS + 8);
	return 0;
}

/* -------------------------------------------------------------- reading */

struct rd {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static const uint8_t *r_take(struct rd *r, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = true;
		return NULL;
	}
	r->off += n;
	return r->p + r->off - n;
}

static unsigned r_u8(struct rd *r)
{
	const uint8_t *p = r_take(r, 1);
	return p ? *p : 0;
}

static unsigned r_u16(struct rd *r)
{
	const uint8_t *p = r_take(r, 2);
	return p ? wire_get16(p) : 0;
}

static uint32_t r_u32(struct rd *r)
{
	const uint8_t *p = r_take(r, 4);
	return p ? wire_get32(p) : 0;
}

static bool lower_label_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A lower-case DNS label of 1..63 bytes (0.. with @p may_be_empty) into
 * @p out (terminated when @p term). */
static bool r_label(struct rd *r, bool may_be_empty, char *out, uint8_t *outlen, bool term)
{
	unsigned n = r_u8(r);
	const uint8_t *p = r_take(r, n);

	if (!p || n > K8S_LABEL_MAX || (n == 0 && !may_be_empty))
		return r->bad = true, false;
	for (unsigned i = 0; i < n; i++)
		if (!lower_label_char(p[i]))
			return r->bad = true, false;
	memcpy(out, p, n);
	if (term)
		out[n] = '\0';
	if (outlen)
		*outlen = (uint8_t)n;
	return true;
}

static bool r_ip(struct rd *r, struct k8s_ip *ip)
{
	unsigned fam = r_u8(r);
	const uint8_t *p;

	memset(ip, 0, sizeof(*ip));
	if (fam != 4 && fam != 6)
		return r->bad = true, false;
	if (!(p = r_take(r, fam == 4 ? 4 : 16)))
		return false;
	ip->fam = (uint8_t)fam;
	memcpy(ip->b, p, fam == 4 ? 4 : 16);
	return true;
}

/* Ports into a new array (*out, malloc; NULL when there are none). */
static bool r_ports(struct rd *r, bool service, struct k8s_port **out, uint16_t *nout)
{
	unsigned n = r_u16(r);

	*out = NULL;
	*nout = 0;
	if (r->bad || n > K8S_MAX_PORTS || (size_t)n * 4 > r->len - r->off)
		return r->bad = true, false;
	if (n == 0)
		return true;
	struct k8s_port *ports = calloc(n, sizeof(*ports));
	if (!ports)
		return false; /* not bad: the caller sees no port array and n > 0 */
	*out = ports;
	*nout = (uint16_t)n;
	for (unsigned i = 0; i < n; i++) {
		ports[i].port = (uint16_t)r_u16(r);
		ports[i].proto = (uint8_t)r_u8(r);
		if (ports[i].proto > K8S_PROTO_OTHER || (service && ports[i].port == 0))
			return r->bad = true, false;
		if (!r_label(r, true, ports[i].name, &ports[i].name_len, false))
			return false;
	}
	return true;
}

/* An ExternalName target in wire form: lower-case labels of 1..63 and the
 * root label ending it exactly at its length. */
static bool ext_valid(const uint8_t *w, unsigned len)
{
	unsigned o = 0;

	if (len == 0)
		return true;
	while (o < len) {
		unsigned ll = w[o++];
		if (ll == 0)
			return o == len && o > 1;
		if (ll > K8S_LABEL_MAX || ll > len - o)
			return false;
		for (unsigned i = 0; i < ll; i++)
			if (!lower_label_char(w[o + i]))
				return false;
		o += ll;
	}
	return false;
}

/* ------------------------------------------------------------- records */

static int read_namespace(struct rd *r, struct k8s_store *t, char *err, size_t errlen)
{
	char name[K8S_LABEL_MAX + 1];
	uint8_t n;

	if (!r_label(r, false, name, &n, true))
		return bad(-EBADMSG, "namespace at byte %zu: malformed", r->off);
	return k8s_store_put_namespace(t, name, n, err, errlen);
}

static int read_service(struct rd *r, struct k8s_store *t, char *err, size_t errlen)
{
	struct k8s_service *svc = calloc(1, sizeof(*svc));
	size_t at = r->off;
	const uint8_t *ext;

	if (!svc)
		return -ENOMEM;
	if (!r_label(r, false, svc->ns, NULL, true) || !r_label(r, false, svc->name, NULL, true))
		goto bad;
	svc->kind = (uint8_t)r_u8(r);
	svc->n_ips = (uint8_t)r_u8(r);
	if (svc->kind > K8S_SVC_EXTERNAL || svc->n_ips > K8S_MAX_CLUSTER_IPS ||
	    (svc->kind != K8S_SVC_CLUSTERIP && svc->n_ips))
		goto bad;
	for (uint8_t i = 0; i < svc->n_ips; i++)
		if (!r_ip(r, &svc->ips[i]))
			goto bad;
	svc->ext_len = (uint8_t)r_u8(r);
	ext = r_take(r, svc->ext_len);
	if (!ext || (svc->ext_len && svc->kind != K8S_SVC_EXTERNAL) ||
	    !ext_valid(ext, svc->ext_len))
		goto bad;
	memcpy(svc->ext, ext, svc->ext_len);
	if (!r_ports(r, true, &svc->ports, &svc->n_ports)) {
		if (!r->bad) {
			k8s_objects_service_free(svc);
			return -ENOMEM;
		}
		goto bad;
	}
	return k8s_store_put_service(t, svc, err, errlen);
bad:
	k8s_objects_service_free(svc);
	return bad(-EBADMSG, "service at byte %zu: malformed", at);
}

/* A slice name: 1..253 bytes without NUL, terminated into @p out. */
static bool r_slice_name(struct rd *r, char *out)
{
	unsigned n = r_u8(r);
	const uint8_t *p = r_take(r, n);

	if (!p || n == 0 || n > K8S_SLICE_NAME_MAX || memchr(p, 0, n))
		return r->bad = true, false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

/* The ready addresses of a slice (the smallest is 7 bytes). */
static int r_addrs(struct rd *r, struct k8s_slice *sl)
{
	uint32_t n = r_u32(r);

	if (r->bad || n > K8S_MAX_ADDRS_PER_SLICE || (size_t)n * 7 > r->len - r->off) {
		r->bad = true;
		return -EBADMSG;
	}
	if (n == 0)
		return 0;
	sl->addrs = calloc(n, sizeof(*sl->addrs));
	if (!sl->addrs)
		return -ENOMEM;
	uint32_t hosts_cap = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct k8s_ip ip;
		char label[K8S_LABEL_MAX];
		uint8_t len;
		if (!r_ip(r, &ip) || !r_label(r, false, label, &len, false))
			return -EBADMSG;
		if (k8s_objects_addr_set(sl, &hosts_cap, &ip, label, len) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int read_slice(struct rd *r, struct k8s_store *t, char *err, size_t errlen)
{
	struct k8s_slice *sl = calloc(1, sizeof(*sl));
	size_t at = r->off;
	int rc;

	if (!sl)
		return -ENOMEM;
	if (!r_label(r, false, sl->ns, NULL, true) || !r_slice_name(r, sl->name) ||
	    !r_label(r, true, sl->svc, NULL, true)) {
		rc = -EBADMSG;
		goto out;
	}
	if (!r_ports(r, false, &sl->ports, &sl->n_ports)) {
		rc = r->bad ? -EBADMSG : -ENOMEM;
		goto out;
	}
	if ((rc = r_addrs(r, sl)) < 0)
		goto out;
	return k8s_store_put_slice(t, sl, err, errlen);
out:
	k8s_objects_slice_free(sl);
	if (rc == -EBADMSG)
		return bad(rc, "endpointslice at byte %zu: malformed", at);
	return rc;
}

/* --------------------------------------------------------------- loading */

/* The domain and server after the fixed header, into @p info. */
static int read_ids(struct rd *r, struct warm_file_info *info, char *err, size_t errlen)
{
	unsigned n = r_u8(r);
	const uint8_t *p = r_take(r, n);

	if (!p || n > 253 || memchr(p, 0, n))
		return bad(-EBADMSG, "malformed cluster domain");
	memcpy(info->domain, p, n);
	info->domain[n] = '\0';
	n = r_u16(r);
	p = r_take(r, n);
	if (!p || n > WARM_FILE_SERVER_MAX || memchr(p, 0, n))
		return bad(-EBADMSG, "malformed API server identity");
	memcpy(info->server, p, n);
	info->server[n] = '\0';
	return 0;
}

static int check_ours(const struct warm_file_info *info, const struct warm_file_expect *exp,
		      char *err, size_t errlen)
{
	if (strcmp(info->domain, exp->domain) != 0)
		return bad(-EREMCHG, "written for cluster domain \"%s\", not \"%s\"", info->domain,
			   exp->domain);
	if (strcmp(info->server, exp->server) != 0)
		return bad(-EREMCHG, "written for API server \"%s\", not \"%s\"", info->server,
			   exp->server);
	if (info->created_s > exp->now_s + WARM_FILE_FUTURE_SLACK_S)
		return bad(-ESTALE, "created %llu s in the future",
			   (unsigned long long)(info->created_s - exp->now_s));
	if (exp->max_age_s && info->created_s < exp->now_s &&
	    exp->now_s - info->created_s > exp->max_age_s)
		return bad(-ESTALE, "%llu s old, older than the limit of %llu s",
			   (unsigned long long)(exp->now_s - info->created_s),
			   (unsigned long long)exp->max_age_s);
	return 0;
}

/* Every record into the new store @p t. */
static int read_records(struct rd *r, const struct warm_file_info *info, struct k8s_store *t,
			char *err, size_t errlen)
{
	int rc = 0;

	for (uint32_t i = 0; rc == 0 && i < info->namespaces; i++)
		rc = read_namespace(r, t, err, errlen);
	for (uint32_t i = 0; rc == 0 && i < info->services; i++)
		rc = read_service(r, t, err, errlen);
	for (uint32_t i = 0; rc == 0 && i < info->slices; i++)
		rc = read_slice(r, t, err, errlen);
	if (rc == 0 && r->off != r->len)
		rc = bad(-EBADMSG, "%zu bytes after the last record", r->len - r->off);
	if (rc == -ENOMEM)
		k8s_objects_fail(rc, err, errlen, "out of memory");
	return rc;
}

int warm_file_load(struct k8s_store *s, const uint8_t *buf, size_t len,
		   const struct warm_file_expect *exp, struct warm_file_info *info, char *err,
		   size_t errlen)
{
	struct warm_file_info tmp;
	struct rd r = { buf, len, WARM_FILE_HEADER_BYTES, false };
	struct k8s_store *t;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!info)
		info = &tmp;
	if (len > WARM_FILE_MAX_BYTES)
		return bad(-EFBIG, "%zu bytes, more than %u", len, WARM_FILE_MAX_BYTES);
	if ((rc = warm_file_check(buf, len, info, err, errlen)) < 0 ||
	    (rc = read_ids(&r, info, err, errlen)) < 0 ||
	    (rc = check_ours(info, exp, err, errlen)) < 0)
		return rc;
	if (!(t = k8s_store_new(NULL)))
		return bad(-ENOMEM, "out of memory");
	if ((rc = read_records(&r, info, t, err, errlen)) < 0) {
		k8s_store_free(t);
		return rc;
	}
	k8s_store_take(s, t);
	return 0;
}
