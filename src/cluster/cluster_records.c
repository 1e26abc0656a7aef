/* src/cluster/cluster_records.c - build the immutable record of one Service from its objects.
 *
 * A svc_rec holds everything needed to answer for a Service and the names
 * below it: its ClusterIPs or ExternalName, its ports sorted and
 * deduplicated, and its ready endpoints from every EndpointSlice merged by
 * endpoint name, each name with the union of its slices' ports. Building
 * costs O(size of that Service). Equal records (cluster_records_equal) let a
 * publisher keep the old one, so an event nothing DNS-visible changed in
 * shares everything.
 */
#include "cluster_snapshot_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int port_cmp(const void *a, const void *b)
{
	const struct k8s_port *x = a, *y = b;

	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->proto != y->proto)
		return x->proto < y->proto ? -1 : 1;
	if (x->name_len != y->name_len)
		return x->name_len < y->name_len ? -1 : 1;
	return memcmp(x->name, y->name, x->name_len);
}

int cluster_records_ip_cmp(const void *a, const void *b)
{
	const struct k8s_ip *x = a, *y = b;

	if (x->fam != y->fam)
		return x->fam < y->fam ? -1 : 1;
	return memcmp(x->b, y->b, sizeof(x->b));
}

int cluster_records_label_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0; /* a label may be absent (NULL, 0) */

	if (c)
		return c;
	return alen == blen ? 0 : alen < blen ? -1 : 1;
}

struct cand {
	const struct k8s_ip *ip;
	const char *label;
	uint8_t label_len;
	uint32_t pset;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	int c = cluster_records_label_cmp(x->label, x->label_len, y->label, y->label_len);

	if (c)
		return c;
	if ((c = cluster_records_ip_cmp(x->ip, y->ip)))
		return c;
	return x->pset == y->pset ? 0 : x->pset < y->pset ? -1 : 1;
}

struct pool {
	struct svc_rec *r;
	uint32_t cap_pool, cap_psets;
};

static int pool_reserve(struct pool *p, size_t nports)
{
	struct svc_rec *r = p->r;

	if (!r->pool || r->n_pool + nports > p->cap_pool) {
		size_t cap = p->cap_pool ? p->cap_pool : 4;
		while (cap < r->n_pool + nports)
			cap *= 2;
		struct k8s_port *v = realloc(r->pool, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		r->pool = v;
		p->cap_pool = (uint32_t)cap;
	}
	if (r->n_psets == p->cap_psets) {
		size_t cap = p->cap_psets ? p->cap_psets * 2 : 4;
		struct rec_portset *v = realloc(r->psets, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		r->psets = v;
		p->cap_psets = (uint32_t)cap;
	}
	return 0;
}

/* Sort and deduplicate pool[off..off+n) in place; @return the new count. */
static uint32_t ports_normalize(struct k8s_port *v, uint32_t n)
{
	uint32_t o = 0;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), port_cmp);
	for (uint32_t i = 0; i < n; i++) {
		if (v[i].port == 0)
			continue; /* no number: no SRV */
		if (o && port_cmp(&v[o - 1], &v[i]) == 0)
			continue;
		v[o++] = v[i];
	}
	return o;
}

static bool ports_equal(const struct k8s_port *a, const struct k8s_port *b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		if (port_cmp(&a[i], &b[i]))
			return false;
	}
	return true;
}

static bool pset_equal(const struct svc_rec *r, uint32_t a, const struct svc_rec *rb, uint32_t b)
{
	const struct rec_portset *x = &r->psets[a], *y = &rb->psets[b];

	return x->n == y->n && ports_equal(&r->pool[x->off], &rb->pool[y->off], x->n);
}

/* Add the ports of one slice as a port set, sharing an equal one. */
static int pset_add_slice(struct pool *p, const struct k8s_slice *sl, uint32_t *idx)
{
	struct svc_rec *r = p->r;
	struct rec_portset *ps;
	int rc;

	if ((rc = pool_reserve(p, sl->n_ports)) < 0)
		return rc;
	ps = &r->psets[r->n_psets];
	ps->off = r->n_pool;
	if (sl->n_ports)
		memset(&r->pool[ps->off], 0, sl->n_ports * sizeof(struct k8s_port));
	for (uint32_t i = 0; i < sl->n_ports; i++) {
		struct k8s_port *d = &r->pool[ps->off + i];
		d->port = sl->ports[i].port;
		d->proto = sl->ports[i].proto;
		d->name_len = sl->ports[i].name_len;
		memcpy(d->name, sl->ports[i].name, d->name_len);
	}
	ps->n = ports_normalize(&r->pool[ps->off], sl->n_ports);
	for (uint32_t k = 0; k < r->n_psets; k++) {
		if (pset_equal(r, k, r, r->n_psets)) {
			*idx = k;
			return 0;
		}
	}
	r->n_pool += ps->n;
	*idx = r->n_psets++;
	return 0;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x == y ? 0 : x < y ? -1 : 1;
}

/* The union of the port sets of cands[0..n) (one endpoint name), at most
 * K8S_MAX_TARGET_PORTS ports. */
static int pset_union(struct pool *p, const struct cand *c, size_t n, uint32_t *idx)
{
	struct svc_rec *r = p->r;
	uint32_t *ids = malloc(n * sizeof(*ids));
	size_t nids = 0;
	uint32_t total = 0, off, limit;
	int rc;

	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		ids[i] = c[i].pset;
	qsort(ids, n, sizeof(*ids), u32_cmp);
	for (size_t i = 0; i < n; i++) {
		if (nids && ids[nids - 1] == ids[i])
			continue;
		ids[nids++] = ids[i];
		total += r->psets[ids[i]].n;
	}
	limit = total < K8S_MAX_TARGET_PORTS ? total : K8S_MAX_TARGET_PORTS;
	if ((rc = pool_reserve(p, limit)) < 0) {
		free(ids);
		return rc;
	}
	off = r->n_pool;
	total = 0;
	for (size_t i = 0; i < nids; i++) {
		const struct rec_portset *ps = &r->psets[ids[i]];
		for (uint32_t k = 0; k < ps->n && total < limit; k++)
			r->pool[off + total++] = r->pool[ps->off + k];
	}
	free(ids);
	r->psets[r->n_psets].off = off;
	r->psets[r->n_psets].n = ports_normalize(&r->pool[off], total);
	r->n_pool += r->psets[r->n_psets].n;
	*idx = r->n_psets++;
	return 0;
}

static uint8_t proto_mask(const struct k8s_port *v, uint32_t n)
{
	uint8_t m = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (v[i].name_len && v[i].port && v[i].proto != K8S_PROTO_OTHER)
			m |= (uint8_t)(1u << v[i].proto);
	}
	return m;
}

/* Give back the unused end of an array sized for the worst case (a record
 * lives long; keeping it when realloc fails is fine). */
static void shrink(void **p, size_t bytes)
{
	void *v = bytes ? realloc(*p, bytes) : NULL;

	if (v)
		*p = v;
}

/* The endpoints of the Service: every ready address of its slices, grouped
 * by endpoint name, deduplicated across slices. */
static int rec_build_endpoints(struct svc_rec *r, struct k8s_slice *const *slices, uint32_t nsl)
{
	struct pool p = { .r = r };
	struct cand *c = NULL;
	uint32_t *slice_pset = NULL, nlabels = 0;
	size_t total = 0, n = 0, label_bytes = 0, ndashed = 0;
	char *dashed = NULL; /* the derived labels */
	int rc = -ENOMEM;

	for (uint32_t i = 0; i < nsl; i++) {
		total += slices[i]->n_addrs;
		for (uint32_t k = 0; k < slices[i]->n_addrs; k++) {
			uint8_t hl = slices[i]->addrs[k].host_len;
			label_bytes += hl ? hl : K8S_LABEL_MAX;
			ndashed += hl ? 0 : K8S_LABEL_MAX;
		}
	}
	if (total == 0)
		return 0;
	c = malloc(total * sizeof(*c));
	slice_pset = malloc(nsl * sizeof(*slice_pset));
	dashed = malloc(ndashed ? ndashed : 1);
	r->targets = calloc(total, sizeof(*r->targets));
	r->eps = calloc(total, sizeof(*r->eps));
	r->labels = malloc(label_bytes);
	if (!c || !slice_pset || !dashed || !r->targets || !r->eps || !r->labels)
		goto out;
	ndashed = 0;
	for (uint32_t i = 0; i < nsl; i++) {
		const struct k8s_slice *sl = slices[i];
		if ((rc = pset_add_slice(&p, sl, &slice_pset[i])) < 0)
			goto out;
		for (uint32_t k = 0; k < sl->n_addrs; k++) {
			const struct k8s_addr *a = &sl->addrs[k];
			struct cand *x = &c[n++];
			x->ip = &a->ip;
			x->pset = slice_pset[i];
			x->label = k8s_objects_addr_label(sl, a, dashed + ndashed, &x->label_len);
			if (!a->host_len)
				ndashed += x->label_len;
		}
	}
	qsort(c, n, sizeof(*c), cand_cmp);

	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		bool one_pset = true;
		struct rec_target *t = &r->targets[r->n_targets++];

		while (j < n && cluster_records_label_cmp(c[i].label, c[i].label_len, c[j].label,
							  c[j].label_len) == 0) {
			one_pset &= c[j].pset == c[i].pset;
			j++;
		}
		t->label_len = c[i].label_len;
		t->label_off = nlabels;
		memcpy(r->labels + nlabels, c[i].label, t->label_len);
		nlabels += t->label_len;
		t->ep_first = r->n_eps;
		for (size_t k = i; k < j; k++) {
			if (k > i && cluster_records_ip_cmp(c[k].ip, c[k - 1].ip) == 0)
				continue;
			r->eps[r->n_eps++] = *c[k].ip;
		}
		t->ep_n = r->n_eps - t->ep_first;
		if (one_pset)
			t->portset = c[i].pset;
		else if ((rc = pset_union(&p, c + i, j - i, &t->portset)) < 0)
			goto out;
		r->ep_protos |= proto_mask(&r->pool[r->psets[t->portset].off],
					   r->psets[t->portset].n);
		i = j;
	}

	/* distinct addresses, IPv4 first */
	r->ips = malloc(r->n_eps * sizeof(*r->ips));
	if (!r->ips) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(r->ips, r->eps, r->n_eps * sizeof(*r->ips));
	qsort(r->ips, r->n_eps, sizeof(*r->ips), cluster_records_ip_cmp);
	for (uint32_t i = 0, o = 0; i < r->n_eps; i++) {
		if (o && cluster_records_ip_cmp(&r->ips[o - 1], &r->ips[i]) == 0)
			continue;
		r->ips[o++] = r->ips[i];
		if (r->ips[i].fam == 4)
			r->n_v4++;
		else
			r->n_v6++;
	}
	shrink((void **)&r->ips, (r->n_v4 + r->n_v6) * sizeof(*r->ips));
	shrink((void **)&r->targets, r->n_targets * sizeof(*r->targets));
	shrink((void **)&r->eps, r->n_eps * sizeof(*r->eps));
	shrink((void **)&r->labels, nlabels);
	shrink((void **)&r->pool, r->n_pool * sizeof(*r->pool));
	shrink((void **)&r->psets, r->n_psets * sizeof(*r->psets));
	rc = 0;
out:
	free(c);
	free(slice_pset);
	free(dashed);
	return rc;
}

struct svc_rec *cluster_records_build(const struct k8s_service *svc,
				      struct k8s_slice *const *slices, uint32_t n,
				      const struct svc_rec *prev)
{
	struct svc_rec *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	atomic_init(&r->hdr.refs, 1);
	r->hdr.type = PM_VAL_SVC;
	r->kind = svc->kind;
	r->ns_len = (uint8_t)strlen(svc->ns);
	r->name_len = (uint8_t)strlen(svc->name);
	memcpy(r->ns, svc->ns, r->ns_len);
	memcpy(r->name, svc->name, r->name_len);
	if (prev && prev->ns_len == r->ns_len && prev->name_len == r->name_len &&
	    memcmp(prev->ns, r->ns, r->ns_len) == 0 && memcmp(prev->name, r->name, r->name_len) == 0) {
		r->sname = prev->sname;
		cluster_snapshot_name_ref(r->sname);
	} else {
		r->sname = cluster_snapshot_name_new(r->ns, r->ns_len, r->name, r->name_len);
	}
	if (!r->sname)
		goto nomem;
	r->n_cips = svc->n_ips;
	memcpy(r->cips, svc->ips, sizeof(r->cips));
	if (svc->ext_len) {
		if (!(r->ext = malloc(svc->ext_len)))
			goto nomem;
		memcpy(r->ext, svc->ext, svc->ext_len);
		r->ext_len = svc->ext_len;
	}
	if (svc->kind == K8S_SVC_EXTERNAL)
		return r; /* no ports, no endpoints: nothing below an ExternalName */
	if (svc->n_ports) {
		r->ports = malloc(svc->n_ports * sizeof(*r->ports));
		if (!r->ports)
			goto nomem;
		memcpy(r->ports, svc->ports, svc->n_ports * sizeof(*r->ports));
		r->n_ports = ports_normalize(r->ports, svc->n_ports);
		r->svc_protos = proto_mask(r->ports, r->n_ports);
	}
	if (n && rec_build_endpoints(r, slices, n) < 0)
		goto nomem;
	return r;
nomem:
	cluster_snapshot_val_unref(&r->hdr); /* the only reference: frees it */
	return NULL;
}

bool cluster_records_equal(const struct svc_rec *a, const struct svc_rec *b)
{
	if (!a || !b)
		return a == b;
	if (a->kind != b->kind || a->ns_len != b->ns_len || a->name_len != b->name_len ||
	    memcmp(a->ns, b->ns, a->ns_len) || memcmp(a->name, b->name, a->name_len) ||
	    a->n_cips != b->n_cips || memcmp(a->cips, b->cips, sizeof(a->cips)) ||
	    a->ext_len != b->ext_len || (a->ext_len && memcmp(a->ext, b->ext, a->ext_len)) ||
	    a->n_ports != b->n_ports || !ports_equal(a->ports, b->ports, a->n_ports) ||
	    a->n_targets != b->n_targets || a->n_eps != b->n_eps ||
	    (a->n_eps && memcmp(a->eps, b->eps, a->n_eps * sizeof(*a->eps))))
		return false;
	for (uint32_t i = 0; i < a->n_targets; i++) {
		const struct rec_target *x = &a->targets[i], *y = &b->targets[i];
		if (x->ep_first != y->ep_first || x->ep_n != y->ep_n ||
		    cluster_records_label_cmp(rec_label(a, x), x->label_len, rec_label(b, y),
					      y->label_len) ||
		    !pset_equal(a, x->portset, b, y->portset))
			return false;
	}
	return true;
}
