/* src/cluster/cluster_zone.c - answer cluster-domain and known reverse names from a snapshot.
 *
 * A pure function of (snapshot, config, question): one O(1) hash lookup per
 * name level (namespace, then service; targets by binary search), then the
 * answer is written straight into the caller's buffer, without allocation.
 *
 * Decisions (Kubernetes DNS spec 1.1.0; CoreDNS where the spec is silent,
 * except where CoreDNS breaks RFC 2308/8020):
 *  - a name that exists without the asked type is NODATA, never NXDOMAIN;
 *    empty non-terminals (svc.Z, pod.Z, dns.Z, N.svc.Z, _tcp.S.N.svc.Z when a
 *    matching SRV name exists below) are NODATA too;
 *  - a headless Service without ready endpoints does not exist (NXDOMAIN,
 *    the spec's SHOULD, as CoreDNS);
 *  - endpoint names (hostname, else the dashed IP) exist under ClusterIP
 *    Services as well (CoreDNS);
 *  - SRV: priority 0, weight max(1, 100/N) over the N records sent; the
 *    bare Service name answers every numbered port (CoreDNS); _p._t names
 *    answer SRV only (A/AAAA there is NODATA, unlike CoreDNS);
 *  - ExternalName: the CNAME for every type; for A/AAAA an in-zone target is
 *    resolved here (at most CHASE_DEPTH_MAX links), an outside one is left
 *    to the caller through info->chase_name; a chain that comes back to a
 *    Service already in it (a loop, itself included) is SERVFAIL;
 *  - size: over UDP an answer that does not fit is TC=1 without records;
 *    over a stream (cluster_answer_stream) as many whole answer records as
 *    fit in the 64 KiB, never TC (as CoreDNS does);
 *  - pod names (pods_insecure) need the namespace to exist (CoreDNS);
 *  - PTR: a ClusterIP answers with its Service name only; otherwise one PTR
 *    per Service with a ready endpoint at that address. Unknown addresses and
 *    partial reverse names are not ours (the caller forwards them); other
 *    types at a known reverse name are NODATA with an SOA owned by
 *    in-addr.arpa / ip6.arpa;
 *  - every negative answer has the zone's SOA in the authority section,
 *    serial = snapshot generation; every record has TTL cfg->ttl_s.
 *
 * Wire: names are compressed by pointing at the question (answer owners, the
 * zone suffix) or at names written earlier (Service names), never inside
 * SRV RDATA (RFC 2782). The owner of every answer is the question name as the
 * client wrote it; names taken from objects are lower case; the zone inside
 * targets is written as the client wrote it (as CoreDNS does).
 */
#include "nodedns/cluster/cluster_zone.h"

#include "cluster_names_internal.h"
#include "cluster_snapshot_internal.h"
#include "nodedns/util/wire.h"

#include <string.h>

enum {
	T_A = 1,
	T_NS = 2,
	T_CNAME = 5,
	T_SOA = 6,
	T_PTR = 12,
	T_TXT = 16,
	T_AAAA = 28,
	T_SRV = 33,
	T_ANY = 255,
};

#define CLASS_IN 1
#define CHASE_DEPTH_MAX 8
#define PTR_MAX_OFF 0x3fff
#define SCHEMA_VERSION "1.1.0"
#define SOA_REFRESH_S 7200
#define SOA_RETRY_S 1800
#define SOA_EXPIRE_S 86400

enum res { RES_ANSWER = 0, RES_NODATA, RES_NX, RES_LOOP };

struct srv_filter {
	const uint8_t *name; /* port name without '_', NULL: any port */
	uint8_t name_len;
	int proto;                     /* -1: any */
	const struct rec_target *target; /* NULL: every endpoint name */
};

struct resp {
	uint8_t *out;
	size_t cap, len;
	bool ovf;
	uint16_t an, ns, ar;
	uint16_t qtype;
	uint32_t ttl;
	const struct cluster_snapshot *snap;
	const struct cluster_config *cfg;
	struct cluster_answer_info *info;
	const uint8_t *zone_wire; /* the zone as written into names */
	size_t zone_wire_len;
	uint16_t zone_off;  /* where the zone already is in the message, 0: nowhere */
	uint16_t owner_off; /* owner of answer records: the question, or a CNAME target */
	uint16_t soa_owner_off; /* 0: the zone */
	const struct svc_rec *svc_rec; /* svc_off holds this Service's name */
	uint16_t svc_off;
	bool stream;	    /* cluster_answer_stream: keep what fits, never TC */
	size_t fit_len;	    /* the message up to the last whole answer record */
	uint16_t fit_an;
	const struct svc_rec *chain[CHASE_DEPTH_MAX + 1]; /* ExternalNames followed */
	int chain_n;
	bool add_pending; /* SRV answer: targets' addresses go to additional */
	const struct svc_rec *add_rec;
	struct srv_filter add_filter;
};

/* ------------------------------------------------------------- names */

bool cluster_in_zone(const struct cluster_config *cfg, const uint8_t *qname, size_t qname_len)
{
	struct lab labs[MAX_LABELS];
	struct zone z;
	int n;

	if (!cfg || !cluster_names_zone(cfg->domain, &z))
		return false;
	n = cluster_names_split(qname, qname_len, labs, NULL);
	return n >= 0 && cluster_names_in_zone(labs, n, &z);
}

/* ------------------------------------------------------------- writer */

static bool room(struct resp *r, size_t n)
{
	if (r->ovf || r->len + n > r->cap) {
		r->ovf = true;
		return false;
	}
	return true;
}

static void put_bytes(struct resp *r, const void *p, size_t n)
{
	if (room(r, n)) {
		memcpy(r->out + r->len, p, n);
		r->len += n;
	}
}

static void put_u16(struct resp *r, uint16_t v)
{
	uint8_t b[2];

	wire_put16(b, v);
	put_bytes(r, b, 2);
}

static void put_u32(struct resp *r, uint32_t v)
{
	uint8_t b[4];

	wire_put32(b, v);
	put_bytes(r, b, 4);
}

static void put_ptr(struct resp *r, uint16_t off)
{
	put_u16(r, (uint16_t)(0xc000 | off));
}

/* labels[0..n), then the zone: a pointer when @p compress and the zone is
 * already in the message, else its labels (remembered for later pointers). */
static void put_name(struct resp *r, const struct lab *labels, int n, bool compress)
{
	for (int i = 0; i < n; i++) {
		put_bytes(r, &labels[i].len, 1);
		put_bytes(r, labels[i].p, labels[i].len);
	}
	if (compress && r->zone_off) {
		put_ptr(r, r->zone_off);
		return;
	}
	size_t pos = r->len;
	put_bytes(r, r->zone_wire, r->zone_wire_len);
	if (!r->zone_off && !r->ovf && r->zone_wire_len > 1 && pos <= PTR_MAX_OFF)
		r->zone_off = (uint16_t)pos;
}

static const struct lab lab_svc = { (const uint8_t *)"svc", 3 };

/* [label.]name.ns.svc.<zone> of @p rec (and target @p t). */
static void put_svc_name(struct resp *r, const struct svc_rec *rec, const struct rec_target *t,
			 bool compress)
{
	struct lab l[3] = { { (const uint8_t *)rec->name, rec->name_len },
			    { (const uint8_t *)rec->ns, rec->ns_len },
			    lab_svc };

	if (t) {
		put_bytes(r, &t->label_len, 1);
		put_bytes(r, rec_label(rec, t), t->label_len);
	}
	if (compress && r->svc_rec == rec && r->svc_off) {
		put_ptr(r, r->svc_off);
		return;
	}
	size_t pos = r->len;
	put_name(r, l, 3, compress);
	if (!r->ovf && pos <= PTR_MAX_OFF) {
		r->svc_rec = rec;
		r->svc_off = (uint16_t)pos;
	}
}

/* type, class, TTL and an RDLENGTH to fill in; the owner is written already */
static size_t rr_start(struct resp *r, uint16_t type)
{
	put_u16(r, type);
	put_u16(r, CLASS_IN);
	put_u32(r, r->ttl);
	put_u16(r, 0);
	return r->len - 2;
}

/* One more whole answer record: where a stream answer may be cut. */
static void answer_done(struct resp *r)
{
	r->an++;
	if (!r->ovf) {
		r->fit_len = r->len;
		r->fit_an = r->an;
	}
}

static void rr_end(struct resp *r, size_t rdlen_pos)
{
	size_t n = r->len - rdlen_pos - 2;

	if (r->ovf)
		return;
	wire_put16(r->out + rdlen_pos, (uint16_t)n);
}

/* An A or AAAA record; the owner is written already. */
static void rr_ip(struct resp *r, const struct k8s_ip *ip)
{
	size_t rd = rr_start(r, ip->fam == 4 ? T_A : T_AAAA);

	put_bytes(r, ip->b, ip->fam == 4 ? 4 : 16);
	rr_end(r, rd);
}

static void answer_ip(struct resp *r, const struct k8s_ip *ip)
{
	put_ptr(r, r->owner_off);
	rr_ip(r, ip);
	answer_done(r);
}

static const struct lab lab_ns_dns[2] = { { (const uint8_t *)"ns", 2 },
					  { (const uint8_t *)"dns", 3 } };
static const struct lab lab_hostmaster = { (const uint8_t *)"hostmaster", 10 };

static void put_soa(struct resp *r, uint16_t owner_off)
{
	size_t rd;

	if (owner_off)
		put_ptr(r, owner_off);
	else
		put_name(r, NULL, 0, true);
	rd = rr_start(r, T_SOA);
	put_name(r, lab_ns_dns, 2, true);
	put_name(r, &lab_hostmaster, 1, true);
	put_u32(r, r->snap->serial);
	put_u32(r, SOA_REFRESH_S);
	put_u32(r, SOA_RETRY_S);
	put_u32(r, SOA_EXPIRE_S);
	put_u32(r, r->ttl);
	rr_end(r, rd);
}

static bool want(const struct resp *r, uint16_t type)
{
	return r->qtype == type || r->qtype == T_ANY;
}

/* ------------------------------------------------------------- lookups */

/* Lower-case @p l into @p buf; @return its length. */
static size_t lower_into(char *buf, const struct lab *l)
{
	wire_lower_copy((uint8_t *)buf, l->p, l->len);
	return l->len;
}

static bool ns_exists(const struct resp *r, const struct lab *ns)
{
	char key[K8S_LABEL_MAX];
	size_t n = lower_into(key, ns);

	return cluster_pmap_get(&r->snap->ns, &r->snap->hkey, key, n, NULL);
}

static const struct svc_rec *svc_find(const struct resp *r, const struct lab *ns,
				      const struct lab *name)
{
	char key[K8S_KEY_MAX];
	struct pm_val *v = NULL;
	size_t n = lower_into(key, ns);

	key[n++] = '/';
	n += lower_into(key + n, name);
	if (!cluster_pmap_get(&r->snap->svc, &r->snap->hkey, key, n, &v) || !v)
		return NULL;
	return (const struct svc_rec *)v;
}

static const struct rec_target *target_find(const struct svc_rec *rec, const struct lab *l)
{
	char key[K8S_LABEL_MAX];
	size_t n = lower_into(key, l), lo = 0, hi = rec->n_targets;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct rec_target *t = &rec->targets[mid];
		int c = memcmp(rec_label(rec, t), key, t->label_len < n ? t->label_len : n);
		if (c == 0)
			c = t->label_len == n ? 0 : t->label_len < n ? -1 : 1;
		if (c == 0)
			return t;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* "_tcp" -> K8S_PROTO_TCP; -1 for anything else */
static int proto_label(const struct lab *l)
{
	struct lab rest = { l->p + 1, (uint8_t)(l->len - 1) };

	if (l->len < 2 || l->p[0] != '_')
		return -1;
	if (cluster_names_label_is(&rest, "tcp"))
		return K8S_PROTO_TCP;
	if (cluster_names_label_is(&rest, "udp"))
		return K8S_PROTO_UDP;
	if (cluster_names_label_is(&rest, "sctp"))
		return K8S_PROTO_SCTP;
	return -1;
}

/* ----------------------------------------------------------------- SRV */

enum srv_mode { SRV_COUNT, SRV_ANSWER, SRV_ADDITIONAL };

static bool port_match(const struct k8s_port *p, const struct srv_filter *f)
{
	if (!p->port || (f->proto >= 0 && p->proto != f->proto))
		return false;
	if (!f->name)
		return true;
	if (p->name_len != f->name_len)
		return false;
	for (uint8_t i = 0; i < f->name_len; i++) {
		if ((uint8_t)p->name[i] != wire_lower(f->name[i]))
			return false;
	}
	return true;
}

static void answer_srv(struct resp *r, const struct svc_rec *rec, const struct rec_target *t,
		       uint16_t port, uint16_t weight)
{
	size_t rd;

	put_ptr(r, r->owner_off);
	rd = rr_start(r, T_SRV);
	put_u16(r, 0);
	put_u16(r, weight);
	put_u16(r, port);
	put_svc_name(r, rec, t, false); /* RFC 2782: no compression */
	rr_end(r, rd);
	answer_done(r);
}

/* Walk the SRV records of @p rec that @p f selects (deduplicated by target
 * and port): count them, write them, or write their targets' addresses.
 * ClusterIP Services take the Service's ports and point at the Service
 * name; endpoint names (headless, or one named in the query) take the
 * EndpointSlice ports. */
static unsigned srv_walk(struct resp *r, const struct svc_rec *rec, const struct srv_filter *f,
			 enum srv_mode mode, uint16_t weight)
{
	unsigned n = 0;

	if (rec->kind == K8S_SVC_CLUSTERIP && !f->target) {
		int last = -1;
		for (uint32_t i = 0; i < rec->n_ports; i++) {
			if (!port_match(&rec->ports[i], f) || rec->ports[i].port == last)
				continue;
			last = rec->ports[i].port;
			n++;
			if (mode == SRV_ANSWER)
				answer_srv(r, rec, NULL, rec->ports[i].port, weight);
		}
		for (uint32_t i = 0; mode == SRV_ADDITIONAL && n && i < rec->n_cips; i++) {
			put_svc_name(r, rec, NULL, true);
			rr_ip(r, &rec->cips[i]);
			r->ar++;
		}
		return n;
	}
	for (uint32_t ti = 0; ti < rec->n_targets; ti++) {
		const struct rec_target *t = &rec->targets[ti];
		const struct rec_portset *ps = &rec->psets[t->portset];
		unsigned tn = 0;
		int last = -1;

		if (f->target && f->target != t)
			continue;
		for (uint32_t i = 0; i < ps->n; i++) {
			const struct k8s_port *p = &rec->pool[ps->off + i];
			if (!port_match(p, f) || p->port == last)
				continue;
			last = p->port;
			tn++;
			if (mode == SRV_ANSWER)
				answer_srv(r, rec, t, p->port, weight);
		}
		n += tn;
		for (uint32_t k = 0; mode == SRV_ADDITIONAL && tn && k < t->ep_n; k++) {
			put_svc_name(r, rec, t, true);
			rr_ip(r, &rec->eps[t->ep_first + k]);
			r->ar++;
		}
	}
	return n;
}

/* SRV answers, with the targets' addresses queued for the additional
 * section (SRV questions only). @return the number of records. */
static unsigned srv_answer(struct resp *r, const struct svc_rec *rec, const struct srv_filter *f)
{
	unsigned n = srv_walk(r, rec, f, SRV_COUNT, 0);
	uint16_t weight = n ? (uint16_t)(100 / n ? 100 / n : 1) : 0;

	if (!n)
		return 0;
	srv_walk(r, rec, f, SRV_ANSWER, weight);
	if (r->qtype == T_SRV) {
		r->add_pending = true;
		r->add_rec = rec;
		r->add_filter = *f;
	}
	return n;
}

/* ------------------------------------------------------------ resolving */

static enum res resolve(struct resp *r, const struct lab *rel, int n, int depth);

/* The CNAME of an ExternalName Service, and what it leads to. */
static enum res external(struct resp *r, const struct svc_rec *rec, int depth)
{
	struct lab labs[MAX_LABELS];
	struct zone z;
	size_t rd, pos;
	int n;

	if (!rec->ext_len)
		return RES_NODATA;
	for (int i = 0; i < r->chain_n; i++)
		if (r->chain[i] == rec)
			return RES_LOOP;
	if (r->chain_n < CHASE_DEPTH_MAX + 1)
		r->chain[r->chain_n++] = rec;
	put_ptr(r, r->owner_off);
	rd = rr_start(r, T_CNAME);
	pos = r->len;
	put_bytes(r, rec->ext, rec->ext_len);
	rr_end(r, rd);
	answer_done(r);
	if (r->qtype != T_A && r->qtype != T_AAAA)
		return RES_ANSWER; /* the CNAME alone; CNAME and ANY questions end here */
	n = cluster_names_split(rec->ext, rec->ext_len, labs, NULL);
	if (n < 0 || !cluster_names_zone(r->cfg->domain, &z))
		return RES_ANSWER;
	if (!cluster_names_in_zone(labs, n, &z)) {
		memcpy(r->info->chase_name, rec->ext, rec->ext_len);
		r->info->chase_len = rec->ext_len;
		return RES_ANSWER;
	}
	if (depth >= CHASE_DEPTH_MAX || r->ovf || pos > PTR_MAX_OFF)
		return RES_ANSWER; /* a loop, or too long a chain: stop here */
	r->owner_off = (uint16_t)pos;
	return resolve(r, labs, n - z.n, depth + 1);
}

/* A Service name and the names below it; extra[0..nextra) are the labels
 * left of the Service label. */
static enum res svc_node(struct resp *r, const struct svc_rec *rec, const struct lab *extra,
			 int nextra, int depth)
{
	struct srv_filter f = { .proto = -1 };
	unsigned c = 0;

	if (rec->kind == K8S_SVC_HEADLESS && rec->n_targets == 0)
		return RES_NX; /* spec: no ready endpoints, no name */
	if (nextra == 0) {
		if (rec->kind == K8S_SVC_EXTERNAL)
			return external(r, rec, depth);
		if (rec->kind == K8S_SVC_CLUSTERIP) {
			for (uint32_t i = 0; i < rec->n_cips; i++) {
				if ((rec->cips[i].fam == 4 && want(r, T_A)) ||
				    (rec->cips[i].fam == 6 && want(r, T_AAAA))) {
					answer_ip(r, &rec->cips[i]);
					c++;
				}
			}
		} else {
			for (uint32_t i = 0; want(r, T_A) && i < rec->n_v4; i++, c++)
				answer_ip(r, &rec->ips[i]);
			for (uint32_t i = 0; want(r, T_AAAA) && i < rec->n_v6; i++, c++)
				answer_ip(r, &rec->ips[rec->n_v4 + i]);
		}
		if (want(r, T_SRV))
			c += srv_answer(r, rec, &f);
		return c ? RES_ANSWER : RES_NODATA;
	}
	if (rec->kind == K8S_SVC_EXTERNAL)
		return RES_NX;
	if (nextra == 1) {
		const struct rec_target *t = target_find(rec, &extra[0]);
		int proto;

		if (t) {
			for (uint32_t i = 0; i < t->ep_n; i++) {
				const struct k8s_ip *ip = &rec->eps[t->ep_first + i];
				if ((ip->fam == 4 && want(r, T_A)) || (ip->fam == 6 && want(r, T_AAAA))) {
					answer_ip(r, ip);
					c++;
				}
			}
			if (want(r, T_SRV)) {
				f.target = t;
				c += srv_answer(r, rec, &f);
			}
			return c ? RES_ANSWER : RES_NODATA;
		}
		/* _proto.S: an empty non-terminal when some _port._proto.S exists */
		proto = proto_label(&extra[0]);
		if (proto >= 0 &&
		    ((rec->kind == K8S_SVC_CLUSTERIP ? rec->svc_protos : rec->ep_protos) &
		     (1u << proto)))
			return RES_NODATA;
		return RES_NX;
	}
	if (nextra == 2) {
		f.proto = proto_label(&extra[1]);
		if (f.proto < 0 || extra[0].len < 2 || extra[0].p[0] != '_')
			return RES_NX;
		f.name = extra[0].p + 1;
		f.name_len = (uint8_t)(extra[0].len - 1);
		if (!srv_walk(r, rec, &f, SRV_COUNT, 0))
			return RES_NX;
		if (want(r, T_SRV))
			c = srv_answer(r, rec, &f);
		return c ? RES_ANSWER : RES_NODATA;
	}
	return RES_NX;
}

static enum res resolve_pod(struct resp *r, const struct lab *rel, int n)
{
	struct k8s_ip ip;

	if (n == 1)
		return RES_NODATA; /* pod.Z */
	if (!r->cfg->pods_insecure || n > 3 || !ns_exists(r, &rel[n - 2]))
		return RES_NX;
	if (n == 2)
		return RES_NODATA; /* N.pod.Z */
	if (!cluster_names_pod_ip(&rel[0], &ip))
		return RES_NX;
	if (!want(r, ip.fam == 4 ? T_A : T_AAAA))
		return RES_NODATA;
	answer_ip(r, &ip);
	return RES_ANSWER;
}

static enum res resolve_svc(struct resp *r, const struct lab *rel, int n, int depth)
{
	const struct svc_rec *rec;

	if (n == 1)
		return RES_NODATA; /* svc.Z */
	if (!ns_exists(r, &rel[n - 2]))
		return RES_NX;
	if (n == 2)
		return RES_NODATA; /* N.svc.Z */
	rec = svc_find(r, &rel[n - 2], &rel[n - 3]);
	if (!rec)
		return RES_NX;
	return svc_node(r, rec, rel, n - 3, depth);
}

/* The name rel[0..n) relative to the zone. */
static enum res resolve(struct resp *r, const struct lab *rel, int n, int depth)
{
	const struct lab *top;
	size_t rd;
	unsigned c = 0;

	if (n == 0) {
		if (want(r, T_SOA)) {
			put_soa(r, r->owner_off);
			answer_done(r);
			c++;
		}
		if (want(r, T_NS)) {
			put_ptr(r, r->owner_off);
			rd = rr_start(r, T_NS);
			put_name(r, lab_ns_dns, 2, true);
			rr_end(r, rd);
			answer_done(r);
			c++;
		}
		return c ? RES_ANSWER : RES_NODATA;
	}
	top = &rel[n - 1];
	if (cluster_names_label_is(top, "svc"))
		return resolve_svc(r, rel, n, depth);
	if (cluster_names_label_is(top, "pod"))
		return resolve_pod(r, rel, n);
	if (cluster_names_label_is(top, "dns-version")) {
		if (n != 1)
			return RES_NX;
		if (!want(r, T_TXT))
			return RES_NODATA;
		put_ptr(r, r->owner_off);
		rd = rr_start(r, T_TXT);
		put_bytes(r, "\005" SCHEMA_VERSION, 1 + strlen(SCHEMA_VERSION));
		rr_end(r, rd);
		answer_done(r);
		return RES_ANSWER;
	}
	if (cluster_names_label_is(top, "dns")) {
		/* dns.Z and ns.dns.Z, the NS target: names without data here */
		if (n == 1 || (n == 2 && cluster_names_label_is(&rel[0], "ns")))
			return RES_NODATA;
		return RES_NX;
	}
	return RES_NX;
}

/* ------------------------------------------------------------- reverse */

static void answer_ptrs(struct resp *r, const struct rev_rec *rr, const struct k8s_ip *ip)
{
	char dbuf[K8S_LABEL_MAX];
	uint8_t dlen = 0;
	const char *dashed = NULL;

	for (uint32_t i = 0; i < rr->n; i++) {
		const struct rev_item *it = &rr->items[i];
		const struct svc_name *sn = it->sn;
		struct lab l[4];
		int k = 0;
		size_t rd;

		if (i && it->kind != rr->items[0].kind)
			break; /* a ClusterIP answers with its Service name only */
		if (it->label_len) {
			l[k++] = (struct lab){ (const uint8_t *)rev_labels(rr) + it->label_off,
					       it->label_len };
		} else if (it->kind == REV_ENDPOINT) {
			if (!dashed) {
				struct k8s_addr a = { .ip = *ip, .host_len = 0 };
				dashed = k8s_objects_addr_label(NULL, &a, dbuf, &dlen);
			}
			l[k++] = (struct lab){ (const uint8_t *)dashed, dlen };
		}
		l[k++] = (struct lab){ (const uint8_t *)sn->s + sn->ns_len, sn->name_len };
		l[k++] = (struct lab){ (const uint8_t *)sn->s, sn->ns_len };
		l[k++] = lab_svc;
		put_ptr(r, r->owner_off);
		rd = rr_start(r, T_PTR);
		put_name(r, l, k, true);
		rr_end(r, rd);
		answer_done(r);
	}
}

/* --------------------------------------------------------------- entry */

static void put_header(struct resp *r, bool tc, int rcode, uint16_t qd)
{
	uint8_t *h = r->out;

	memset(h, 0, DNS_HEADER_BYTES);
	h[2] = (uint8_t)(0x80 | 0x04 | (tc ? 0x02 : 0)); /* QR AA [TC] */
	h[3] = (uint8_t)(0x80 | (rcode & 0x0f));        /* RA */
	wire_put16(h + 4, qd);
	wire_put16(h + 6, r->an);
	wire_put16(h + 8, r->ns);
	wire_put16(h + 10, r->ar);
}

/* Where the zone is for this question: the question is in it (and the zone
 * is written as the client wrote it), or it is a known reverse name (*rr).
 * @return false when the name is not ours. */
static bool answer_locate(struct resp *r, const uint8_t *qname, size_t qname_len,
			  const struct lab *labs, const uint16_t *offs, int n,
			  const struct zone *z, const struct rev_rec **rr, struct k8s_ip *ipp)
{
	struct pm_val *v = NULL;
	struct k8s_ip ip;
	uint8_t key[17];
	size_t klen;
	int rev;

	if (cluster_names_in_zone(labs, n, z)) {
		int zi = n - z->n; /* first zone label */
		r->zone_wire = z->n ? qname + offs[zi] : qname + qname_len - 1;
		r->zone_wire_len = z->n ? qname_len - offs[zi] : 1;
		r->zone_off = z->n ? (uint16_t)(DNS_HEADER_BYTES + offs[zi]) : 0;
		return true;
	}
	rev = cluster_names_reverse(labs, n, &ip);
	if (rev < 0)
		return false;
	klen = cluster_snapshot_rev_key(key, &ip);
	if (!cluster_pmap_get(&r->snap->rev, &r->snap->hkey, key, klen, &v) || !v)
		return false;
	*rr = (const struct rev_rec *)v;
	*ipp = ip;
	r->zone_wire = z->wire;
	r->zone_wire_len = z->wire_len;
	r->soa_owner_off = (uint16_t)(DNS_HEADER_BYTES + offs[rev]);
	return true;
}

/* The SOA of a negative answer, the additional section, the header; on
 * overflow a body with TC=1 and the question only (@p qend bytes). */
static void answer_finish(struct resp *r, enum res res, size_t qend)
{
	if (res == RES_NODATA || res == RES_NX) {
		put_soa(r, r->soa_owner_off);
		r->ns++;
	}
	if (res == RES_ANSWER && r->add_pending && !r->ovf) {
		size_t mark = r->len;
		srv_walk(r, r->add_rec, &r->add_filter, SRV_ADDITIONAL, 0);
		if (r->ovf) { /* additional data is optional: drop it, no TC */
			r->ovf = false;
			r->len = mark;
			r->ar = 0;
		}
	}
	r->info->rcode = res == RES_NX ? 3 : res == RES_LOOP ? 2 : 0;
	r->info->nodata = res == RES_NODATA;
	if (r->ovf && r->stream && r->fit_an > 0) {
		/* The transport's limit: the whole records that fit, no TC. */
		r->ovf = false;
		r->len = r->fit_len;
		r->an = r->fit_an;
		r->ns = r->ar = 0;
		r->info->chase_len = 0;
		r->info->nodata = false;
		r->info->rcode = 0;
	}
	if (r->ovf || res == RES_LOOP) {
		r->len = qend;
		r->an = r->ns = r->ar = 0;
		r->info->chase_len = 0;
	}
	if (r->ovf && r->stream)
		r->info->rcode = 2; /* not one record fits in 64 KiB */
	put_header(r, r->ovf && !r->stream, r->info->rcode, 1);
}

static enum cluster_verdict answer(const struct cluster_snapshot *snap,
				   const struct cluster_config *cfg, const uint8_t *qname,
				   size_t qname_len, uint16_t qtype, uint16_t qclass, uint8_t *out,
				   size_t cap, size_t *outlen, struct cluster_answer_info *info,
				   bool stream)
{
	struct cluster_answer_info dummy;
	struct lab labs[MAX_LABELS];
	uint16_t offs[MAX_LABELS];
	struct zone z;
	struct resp r;
	const struct rev_rec *rr = NULL;
	struct k8s_ip rev_ip;
	enum res res;
	int n;

	if (!info)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	if (outlen)
		*outlen = 0;
	if (!snap || !cfg || !out || !outlen)
		return CLUSTER_NOT_MINE;
	n = cluster_names_split(qname, qname_len, labs, offs);
	if (n < 0 || !cluster_names_zone(cfg->domain, &z))
		return CLUSTER_NOT_MINE;
	memset(&r, 0, sizeof(r));
	r.snap = snap;
	if (!answer_locate(&r, qname, qname_len, labs, offs, n, &z, &rr, &rev_ip))
		return CLUSTER_NOT_MINE;

	r.out = out;
	r.cap = cap;
	r.stream = stream;
	r.qtype = qtype;
	r.ttl = cfg->ttl_s;
	r.cfg = cfg;
	r.info = info;
	r.owner_off = DNS_HEADER_BYTES;
	if (cap < DNS_HEADER_BYTES + qname_len + 4) {
		/* not even the question fits: an empty truncated header */
		if (cap >= DNS_HEADER_BYTES) {
			put_header(&r, true, 0, 0);
			*outlen = DNS_HEADER_BYTES;
		}
		return CLUSTER_ANSWERED;
	}
	r.len = DNS_HEADER_BYTES;
	put_bytes(&r, qname, qname_len);
	put_u16(&r, qtype);
	put_u16(&r, qclass);

	if (rr) {
		res = want(&r, T_PTR) ? RES_ANSWER : RES_NODATA;
		if (res == RES_ANSWER)
			answer_ptrs(&r, rr, &rev_ip);
	} else {
		res = resolve(&r, labs, n - z.n, 0);
	}
	answer_finish(&r, res, DNS_HEADER_BYTES + qname_len + 4);
	*outlen = r.len;
	return CLUSTER_ANSWERED;
}

enum cluster_verdict cluster_answer(const struct cluster_snapshot *snap,
				    const struct cluster_config *cfg, const uint8_t *qname,
				    size_t qname_len, uint16_t qtype, uint16_t qclass,
				    uint8_t *out, size_t cap, size_t *outlen,
				    struct cluster_answer_info *info)
{
	return answer(snap, cfg, qname, qname_len, qtype, qclass, out, cap, outlen, info, false);
}

enum cluster_verdict cluster_answer_stream(const struct cluster_snapshot *snap,
					   const struct cluster_config *cfg, const uint8_t *qname,
					   size_t qname_len, uint16_t qtype, uint16_t qclass,
					   uint8_t *out, size_t cap, size_t *outlen,
					   struct cluster_answer_info *info)
{
	return answer(snap, cfg, qname, qname_len, qtype, qclass, out, cap, outlen, info, true);
}
