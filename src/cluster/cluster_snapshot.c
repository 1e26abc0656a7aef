/* src/cluster/cluster_snapshot.c - immutable cluster snapshots, published from the store at the cost of what changed.
 *
 * Structure. A snapshot is three persistent hash maps (services, namespaces,
 * reverse addresses), each split into PMAP_SHARDS immutable shards. A shard
 * holds references to immutable records: one svc_rec per Service (everything
 * needed to answer for it and the names below it, its EndpointSlices already
 * merged and deduplicated) and one rev_rec per IP address (its PTR targets).
 * Shards and records carry atomic reference counts and are shared by every
 * snapshot that has them.
 *
 * Publishing. The store remembers which service keys and namespaces changed.
 * For each, the svc_rec is rebuilt (O(size of that Service)) and compared with
 * the one in the last snapshot; equal records are dropped, so a MODIFIED event
 * that changes nothing DNS can see (status, annotations, a not-ready
 * endpoint) shares everything. The reverse entries of the old and new record
 * are diffed into the rev map. Only the shards that received an edit are
 * rebuilt; the others are shared by reference. So one endpoint change in a
 * 10,000-Service cluster costs: rebuild one svc_rec, rebuild one svc shard
 * (~40 entries at 10k Services) and one or two rev shards, plus
 * 3 x PMAP_SHARDS pointer copies and reference increments (~768, a few
 * microseconds). A relist or a snapshot file load (all_dirty) rebuilds every
 * record to compare it, but still shares every shard that did not change.
 *
 * Threads. Publishing runs on the control thread (it reads the store); the
 * snapshots it returns are read-only and may be used and released from any
 * thread. The last reference, wherever it is dropped, frees the snapshot and
 * every shard and record no other snapshot holds.
 */
#include "nodedns/cluster/cluster.h"

#include "cluster_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- shared values */

static void rec_free(struct svc_rec *r)
{
	free(r->ports);
	free(r->targets);
	free(r->eps);
	free(r->ips);
	free(r->psets);
	free(r->pool);
	free(r);
}

void cluster_val_ref(struct pm_val *v)
{
	if (v)
		atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void cluster_val_unref(struct pm_val *v)
{
	if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (v->type == PM_VAL_SVC)
		rec_free((struct svc_rec *)v);
	else
		free(v);
}

size_t cluster_rev_key(uint8_t key[17], const struct k8s_ip *ip)
{
	size_t n = ip->fam == 4 ? 4 : 16;

	key[0] = ip->fam;
	memcpy(key + 1, ip->b, n);
	return n + 1;
}

/* ---------------------------------------------------------------- pmap */

static void shard_unref(struct pm_shard *sh)
{
	if (!sh || atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i <= sh->mask; i++) {
		if (sh->slots[i].key)
			cluster_val_unref(sh->slots[i].val);
	}
	free(sh);
}

static uint32_t shard_of(uint64_t h)
{
	return (uint32_t)(h >> (64 - PMAP_SHARD_BITS));
}

bool cluster_pmap_get(const struct pmap *m, uint64_t seed, const void *key, size_t klen,
		      struct pm_val **val)
{
	uint64_t h = k8s_hash(seed, key, klen);
	const struct pm_shard *sh = m->shard[shard_of(h)];

	if (!sh)
		return false;
	for (uint32_t i = (uint32_t)h & sh->mask;; i = (i + 1) & sh->mask) {
		const struct pm_slot *s = &sh->slots[i];
		if (!s->key)
			return false;
		if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
			if (val)
				*val = s->val;
			return true;
		}
	}
}

struct pm_edit {
	uint64_t hash;
	uint16_t klen;
	bool del;
	struct pm_val *val; /* one reference, moved into the new shard */
	uint8_t key[K8S_KEY_MAX];
};

struct edits {
	size_t n, cap;
	struct pm_edit *v;
};

static int edits_push(struct edits *e, uint64_t seed, const void *key, size_t klen, bool del,
		      struct pm_val *val)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 64;
		struct pm_edit *v = realloc(e->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		e->v = v;
		e->cap = cap;
	}
	struct pm_edit *x = &e->v[e->n++];
	x->hash = k8s_hash(seed, key, klen);
	x->klen = (uint16_t)klen;
	x->del = del;
	x->val = val;
	memcpy(x->key, key, klen);
	return 0;
}

static void edits_free(struct edits *e)
{
	for (size_t i = 0; i < e->n; i++)
		cluster_val_unref(e->v[i].val);
	free(e->v);
	e->v = NULL;
	e->n = e->cap = 0;
}

static int edit_cmp(const void *a, const void *b)
{
	const struct pm_edit *x = a, *y = b;
	uint32_t sx = shard_of(x->hash), sy = shard_of(y->hash);

	if (sx != sy)
		return sx < sy ? -1 : 1;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return memcmp(x->key, y->key, x->klen);
}

static bool group_has(const struct pm_edit *g, size_t n, const struct pm_slot *s)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_edit *e = &g[mid];
		int c = e->hash != s->hash ? (e->hash < s->hash ? -1 : 1)
			: e->klen != s->klen ? (e->klen < s->klen ? -1 : 1)
					     : memcmp(e->key, s->key, s->klen);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static void slot_insert(struct pm_shard *sh, uint8_t **arena, uint64_t h, const uint8_t *key,
			uint16_t klen, struct pm_val *val)
{
	uint32_t i = (uint32_t)h & sh->mask;

	while (sh->slots[i].key)
		i = (i + 1) & sh->mask;
	memcpy(*arena, key, klen);
	sh->slots[i] = (struct pm_slot){ .hash = h, .key = *arena, .klen = klen, .val = val };
	*arena += klen;
	sh->n++;
}

/* Replace the shard that the edits g[0..n) fall into by a new one. */
static int shard_rebuild(struct pmap *m, struct pm_edit *g, size_t n)
{
	uint32_t idx = shard_of(g[0].hash);
	struct pm_shard *old = m->shard[idx], *sh = NULL;
	size_t total = 0, keybytes = 0, cap = 8;
	uint8_t *arena;

	for (uint32_t i = 0; old && i <= old->mask; i++) {
		const struct pm_slot *s = &old->slots[i];
		if (s->key && !group_has(g, n, s)) {
			total++;
			keybytes += s->klen;
		}
	}
	for (size_t k = 0; k < n; k++) {
		if (!g[k].del) {
			total++;
			keybytes += g[k].klen;
		}
	}
	if (total) {
		while (cap < 2 * total)
			cap *= 2;
		sh = calloc(1, sizeof(*sh) + cap * sizeof(struct pm_slot) + keybytes);
		if (!sh)
			return -ENOMEM;
		atomic_init(&sh->refs, 1);
		sh->mask = (uint32_t)(cap - 1);
		sh->slots = (struct pm_slot *)(sh + 1);
		arena = (uint8_t *)(sh->slots + cap);
		for (uint32_t i = 0; old && i <= old->mask; i++) {
			const struct pm_slot *s = &old->slots[i];
			if (s->key && !group_has(g, n, s)) {
				cluster_val_ref(s->val);
				slot_insert(sh, &arena, s->hash, s->key, s->klen, s->val);
			}
		}
		for (size_t k = 0; k < n; k++) {
			if (!g[k].del) {
				slot_insert(sh, &arena, g[k].hash, g[k].key, g[k].klen, g[k].val);
				g[k].val = NULL; /* moved */
			}
		}
	}
	m->shard[idx] = sh;
	shard_unref(old);
	return 0;
}

static int pmap_apply(struct pmap *m, struct edits *e)
{
	size_t i = 0;
	int rc;

	if (e->n == 0)
		return 0;
	qsort(e->v, e->n, sizeof(*e->v), edit_cmp);
	while (i < e->n) {
		size_t j = i + 1;
		while (j < e->n && shard_of(e->v[j].hash) == shard_of(e->v[i].hash))
			j++;
		if ((rc = shard_rebuild(m, e->v + i, j - i)) < 0)
			return rc;
		i = j;
	}
	return 0;
}

static void pmap_share(struct pmap *dst, const struct pmap *src)
{
	for (uint32_t i = 0; i < PMAP_SHARDS; i++) {
		dst->shard[i] = src->shard[i];
		if (dst->shard[i])
			atomic_fetch_add_explicit(&dst->shard[i]->refs, 1, memory_order_relaxed);
	}
}

static void pmap_release(struct pmap *m)
{
	for (uint32_t i = 0; i < PMAP_SHARDS; i++) {
		shard_unref(m->shard[i]);
		m->shard[i] = NULL;
	}
}

#define PMAP_FOREACH(m, slot)                                                  \
	for (uint32_t pm_i_ = 0; pm_i_ < PMAP_SHARDS; pm_i_++)                 \
		for (uint32_t pm_j_ = 0; (m)->shard[pm_i_] && pm_j_ <= (m)->shard[pm_i_]->mask; pm_j_++) \
			for (const struct pm_slot *slot = &(m)->shard[pm_i_]->slots[pm_j_]; \
			     slot && slot->key; slot = NULL)

/* ------------------------------------------------------------ snapshots */

void cluster_snapshot_ref(struct cluster_snapshot *snap)
{
	if (snap)
		atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
}

void cluster_snapshot_unref(struct cluster_snapshot *snap)
{
	if (!snap || atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) != 1)
		return;
	pmap_release(&snap->svc);
	pmap_release(&snap->ns);
	pmap_release(&snap->rev);
	free(snap);
}

/* ------------------------------------------------- building one svc_rec */

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

static int ip_cmp(const void *a, const void *b)
{
	const struct k8s_ip *x = a, *y = b;

	if (x->fam != y->fam)
		return x->fam < y->fam ? -1 : 1;
	return memcmp(x->b, y->b, sizeof(x->b));
}

static int label_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen == blen ? 0 : alen < blen ? -1 : 1;
}

struct cand {
	const struct k8s_addr *a;
	uint32_t pset;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	int c = label_cmp(x->a->label, x->a->label_len, y->a->label, y->a->label_len);

	if (c)
		return c;
	if ((c = ip_cmp(&x->a->ip, &y->a->ip)))
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
		size_t cap = p->cap_pool ? p->cap_pool : 16;
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

/* The endpoints of the Service: every ready address of its slices, grouped
 * by endpoint name, deduplicated across slices. */
static int rec_build_endpoints(struct svc_rec *r, const struct k8s_slice_list *l)
{
	struct pool p = { .r = r };
	struct cand *c = NULL;
	uint32_t *slice_pset = NULL;
	size_t total = 0, n = 0;
	int rc = -ENOMEM;

	for (uint32_t i = 0; i < l->n; i++)
		total += l->v[i]->n_addrs;
	if (total == 0)
		return 0;
	c = malloc(total * sizeof(*c));
	slice_pset = malloc(l->n * sizeof(*slice_pset));
	r->targets = calloc(total, sizeof(*r->targets));
	r->eps = calloc(total, sizeof(*r->eps));
	if (!c || !slice_pset || !r->targets || !r->eps)
		goto out;
	for (uint32_t i = 0; i < l->n; i++) {
		if ((rc = pset_add_slice(&p, l->v[i], &slice_pset[i])) < 0)
			goto out;
		for (uint32_t k = 0; k < l->v[i]->n_addrs; k++)
			c[n++] = (struct cand){ .a = &l->v[i]->addrs[k], .pset = slice_pset[i] };
	}
	qsort(c, n, sizeof(*c), cand_cmp);

	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		bool one_pset = true;
		struct rec_target *t = &r->targets[r->n_targets++];

		while (j < n && label_cmp(c[i].a->label, c[i].a->label_len, c[j].a->label,
					  c[j].a->label_len) == 0) {
			one_pset &= c[j].pset == c[i].pset;
			j++;
		}
		t->label_len = c[i].a->label_len;
		memcpy(t->label, c[i].a->label, t->label_len);
		t->ep_first = r->n_eps;
		for (size_t k = i; k < j; k++) {
			if (k > i && ip_cmp(&c[k].a->ip, &c[k - 1].a->ip) == 0)
				continue;
			r->eps[r->n_eps++] = c[k].a->ip;
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
	qsort(r->ips, r->n_eps, sizeof(*r->ips), ip_cmp);
	for (uint32_t i = 0, o = 0; i < r->n_eps; i++) {
		if (o && ip_cmp(&r->ips[o - 1], &r->ips[i]) == 0)
			continue;
		r->ips[o++] = r->ips[i];
		if (r->ips[i].fam == 4)
			r->n_v4++;
		else
			r->n_v6++;
	}
	rc = 0;
out:
	free(c);
	free(slice_pset);
	return rc;
}

/* @return the record of Service @p key, NULL with *rc = 0 when there is none. */
static struct svc_rec *rec_build(const struct k8s_store *s, const char *key, size_t klen, int *rc)
{
	const struct k8s_service *svc = k8s_hmap_get(&s->svcs, key, klen);
	const struct k8s_slice_list *l;
	struct svc_rec *r;

	*rc = 0;
	if (!svc)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		goto nomem;
	atomic_init(&r->hdr.refs, 1);
	r->hdr.type = PM_VAL_SVC;
	r->kind = svc->kind;
	r->ns_len = (uint8_t)strlen(svc->ns);
	r->name_len = (uint8_t)strlen(svc->name);
	memcpy(r->ns, svc->ns, r->ns_len);
	memcpy(r->name, svc->name, r->name_len);
	r->n_cips = svc->n_ips;
	memcpy(r->cips, svc->ips, sizeof(r->cips));
	r->ext_len = svc->ext_len;
	memcpy(r->ext, svc->ext, svc->ext_len);
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
	l = k8s_hmap_get(&s->svc_slices, key, klen);
	if (l && (*rc = rec_build_endpoints(r, l)) < 0)
		goto nomem;
	return r;
nomem:
	if (r)
		rec_free(r);
	*rc = -ENOMEM;
	return NULL;
}

static bool rec_equal(const struct svc_rec *a, const struct svc_rec *b)
{
	if (!a || !b)
		return a == b;
	if (a->kind != b->kind || a->ns_len != b->ns_len || a->name_len != b->name_len ||
	    memcmp(a->ns, b->ns, a->ns_len) || memcmp(a->name, b->name, a->name_len) ||
	    a->n_cips != b->n_cips || memcmp(a->cips, b->cips, sizeof(a->cips)) ||
	    a->ext_len != b->ext_len || memcmp(a->ext, b->ext, a->ext_len) ||
	    a->n_ports != b->n_ports || !ports_equal(a->ports, b->ports, a->n_ports) ||
	    a->n_targets != b->n_targets || a->n_eps != b->n_eps ||
	    (a->n_eps && memcmp(a->eps, b->eps, a->n_eps * sizeof(*a->eps))))
		return false;
	for (uint32_t i = 0; i < a->n_targets; i++) {
		const struct rec_target *x = &a->targets[i], *y = &b->targets[i];
		if (x->ep_first != y->ep_first || x->ep_n != y->ep_n ||
		    label_cmp(x->label, x->label_len, y->label, y->label_len) ||
		    !pset_equal(a, x->portset, b, y->portset))
			return false;
	}
	return true;
}

/* ------------------------------------------------------ reverse entries */

struct rev_work {
	uint32_t n, cap;
	struct rev_item *items;
	struct k8s_ip ip;
};

static void rev_work_free(void *p)
{
	struct rev_work *w = p;

	if (w)
		free(w->items);
	free(w);
}

static struct rev_work *rev_work_get(struct k8s_hmap *work, const struct cluster_snapshot *last,
				     const struct k8s_ip *ip)
{
	uint8_t key[17];
	size_t klen = cluster_rev_key(key, ip);
	struct rev_work *w = k8s_hmap_get(work, key, klen);
	struct pm_val *v = NULL;

	if (w)
		return w;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->ip = *ip;
	if (last && cluster_pmap_get(&last->rev, last->seed, key, klen, &v) && v) {
		const struct rev_rec *rr = (const struct rev_rec *)v;
		w->items = malloc((rr->n + 1) * sizeof(*w->items));
		if (!w->items) {
			free(w);
			return NULL;
		}
		memcpy(w->items, rr->items, rr->n * sizeof(*w->items));
		w->n = rr->n;
		w->cap = rr->n + 1;
	}
	if (k8s_hmap_put(work, key, klen, w, NULL) < 0) {
		rev_work_free(w);
		return NULL;
	}
	return w;
}

static int rev_edit(struct k8s_hmap *work, const struct cluster_snapshot *last,
		    const struct svc_rec *r, const struct k8s_ip *ip, int kind,
		    const struct rec_target *t, bool add)
{
	struct rev_work *w = rev_work_get(work, last, ip);

	if (!w)
		return -ENOMEM;
	if (!add) {
		for (uint32_t i = 0; i < w->n;) {
			const struct rev_item *it = &w->items[i];
			if (it->ns_len == r->ns_len && it->name_len == r->name_len &&
			    memcmp(it->ns, r->ns, r->ns_len) == 0 &&
			    memcmp(it->name, r->name, r->name_len) == 0)
				w->items[i] = w->items[--w->n];
			else
				i++;
		}
		return 0;
	}
	for (uint32_t i = 0; i < w->n; i++) {
		const struct rev_item *it = &w->items[i];
		if (it->kind == kind && it->ns_len == r->ns_len && it->name_len == r->name_len &&
		    memcmp(it->ns, r->ns, r->ns_len) == 0 &&
		    memcmp(it->name, r->name, r->name_len) == 0)
			return 0; /* one PTR per Service and kind */
	}
	if (w->n == w->cap) {
		uint32_t cap = w->cap ? w->cap * 2 : 2;
		struct rev_item *v = realloc(w->items, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		w->items = v;
		w->cap = cap;
	}
	struct rev_item *it = &w->items[w->n++];
	memset(it, 0, sizeof(*it));
	it->kind = (uint8_t)kind;
	it->ns_len = r->ns_len;
	it->name_len = r->name_len;
	memcpy(it->ns, r->ns, r->ns_len);
	memcpy(it->name, r->name, r->name_len);
	if (t) {
		it->label_len = t->label_len;
		memcpy(it->label, t->label, t->label_len);
	}
	return 0;
}

struct ep_ref {
	struct k8s_ip ip;
	uint32_t target;
};

static int ep_ref_cmp(const void *a, const void *b)
{
	const struct ep_ref *x = a, *y = b;
	int c = ip_cmp(&x->ip, &y->ip);

	return c ? c : x->target == y->target ? 0 : x->target < y->target ? -1 : 1;
}

/* Add or remove the reverse entries of @p r: each ClusterIP points at the
 * Service name, each ready endpoint address at its endpoint name (one PTR
 * per Service: the first name in label order that holds the address). */
static int rev_apply(struct k8s_hmap *work, const struct cluster_snapshot *last,
		     const struct svc_rec *r, bool add)
{
	struct ep_ref *refs;
	size_t n = 0;
	int rc = 0;

	if (!r)
		return 0;
	for (uint32_t i = 0; i < r->n_cips; i++) {
		if ((rc = rev_edit(work, last, r, &r->cips[i], REV_CLUSTERIP, NULL, add)) < 0)
			return rc;
	}
	if (r->n_eps == 0)
		return 0;
	refs = malloc(r->n_eps * sizeof(*refs));
	if (!refs)
		return -ENOMEM;
	for (uint32_t t = 0; t < r->n_targets; t++) {
		for (uint32_t k = 0; k < r->targets[t].ep_n; k++)
			refs[n++] = (struct ep_ref){ r->eps[r->targets[t].ep_first + k], t };
	}
	qsort(refs, n, sizeof(*refs), ep_ref_cmp);
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (i && ip_cmp(&refs[i].ip, &refs[i - 1].ip) == 0)
			continue;
		rc = rev_edit(work, last, r, &refs[i].ip, REV_ENDPOINT, &r->targets[refs[i].target],
			      add);
	}
	free(refs);
	return rc;
}

static int rev_item_cmp(const void *a, const void *b)
{
	const struct rev_item *x = a, *y = b;
	int c;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if ((c = label_cmp(x->ns, x->ns_len, y->ns, y->ns_len)))
		return c;
	if ((c = label_cmp(x->name, x->name_len, y->name, y->name_len)))
		return c;
	return label_cmp(x->label, x->label_len, y->label, y->label_len);
}

/* Turn the worked-on reverse entries into edits of the rev map. */
static int rev_edits(struct k8s_hmap *work, const struct cluster_snapshot *last, uint64_t seed,
		     struct edits *e)
{
	K8S_HMAP_FOREACH(work, node)
	{
		struct rev_work *w = node->val;
		struct pm_val *old = NULL;
		struct rev_rec *rr;

		if (last)
			cluster_pmap_get(&last->rev, last->seed, node->key, node->klen, &old);
		if (w->n)
			qsort(w->items, w->n, sizeof(*w->items), rev_item_cmp);
		if (old) {
			const struct rev_rec *o = (const struct rev_rec *)old;
			if (o->n == w->n &&
			    (!w->n || memcmp(o->items, w->items, w->n * sizeof(*w->items)) == 0))
				continue;
		} else if (w->n == 0) {
			continue;
		}
		if (w->n == 0) {
			if (edits_push(e, seed, node->key, node->klen, true, NULL) < 0)
				return -ENOMEM;
			continue;
		}
		rr = malloc(sizeof(*rr) + w->n * sizeof(rr->items[0]));
		if (!rr)
			return -ENOMEM;
		atomic_init(&rr->hdr.refs, 1);
		rr->hdr.type = PM_VAL_REV;
		rr->n = w->n;
		memcpy(rr->items, w->items, w->n * sizeof(*w->items));
		if (edits_push(e, seed, node->key, node->klen, false, &rr->hdr) < 0) {
			free(rr);
			return -ENOMEM;
		}
	}
	return 0;
}

/* -------------------------------------------------------------- publish */

struct publish {
	struct k8s_store *s;
	const struct cluster_snapshot *last;
	struct edits svc, ns, rev;
	struct k8s_hmap work; /* rev key -> struct rev_work */
};

static int publish_svc(struct publish *p, const uint8_t *key, size_t klen)
{
	struct pm_val *old = NULL;
	struct svc_rec *rec;
	int rc;

	if (p->last)
		cluster_pmap_get(&p->last->svc, p->last->seed, key, klen, &old);
	rec = rec_build(p->s, (const char *)key, klen, &rc);
	if (rc < 0)
		return rc;
	if (rec_equal((const struct svc_rec *)old, rec)) {
		if (rec)
			rec_free(rec);
		return 0;
	}
	if ((rc = edits_push(&p->svc, p->s->seed, key, klen, rec == NULL, rec ? &rec->hdr : NULL)) <
	    0) {
		if (rec)
			rec_free(rec);
		return rc;
	}
	if ((rc = rev_apply(&p->work, p->last, (const struct svc_rec *)old, false)) < 0)
		return rc;
	return rev_apply(&p->work, p->last, rec, true);
}

/* A namespace exists when its Namespace object does, or a Service is in it. */
static int publish_ns(struct publish *p, const uint8_t *key, size_t klen)
{
	bool want = k8s_hmap_get(&p->s->nss, key, klen) || k8s_hmap_get(&p->s->ns_svcs, key, klen);
	bool have = p->last && cluster_pmap_get(&p->last->ns, p->last->seed, key, klen, NULL);

	if (want == have)
		return 0;
	return edits_push(&p->ns, p->s->seed, key, klen, !want, NULL);
}

static int publish_collect(struct publish *p)
{
	struct k8s_store *s = p->s;
	int rc;

	if (!s->all_dirty) {
		K8S_HMAP_FOREACH(&s->dirty_svc, n)
		{
			if ((rc = publish_svc(p, n->key, n->klen)) < 0)
				return rc;
		}
		K8S_HMAP_FOREACH(&s->dirty_ns, n)
		{
			if ((rc = publish_ns(p, n->key, n->klen)) < 0)
				return rc;
		}
		return 0;
	}
	K8S_HMAP_FOREACH(&s->svcs, n)
	{
		if ((rc = publish_svc(p, n->key, n->klen)) < 0)
			return rc;
	}
	K8S_HMAP_FOREACH(&s->nss, n)
	{
		if ((rc = publish_ns(p, n->key, n->klen)) < 0)
			return rc;
	}
	K8S_HMAP_FOREACH(&s->ns_svcs, n)
	{
		if (!k8s_hmap_get(&s->nss, n->key, n->klen) &&
		    (rc = publish_ns(p, n->key, n->klen)) < 0)
			return rc;
	}
	if (!p->last)
		return 0;
	/* what the last snapshot has and the store no longer does */
	PMAP_FOREACH(&p->last->svc, slot)
	{
		if (!k8s_hmap_get(&s->svcs, slot->key, slot->klen) &&
		    (rc = publish_svc(p, slot->key, slot->klen)) < 0)
			return rc;
	}
	PMAP_FOREACH(&p->last->ns, slot)
	{
		if (!k8s_hmap_get(&s->nss, slot->key, slot->klen) &&
		    !k8s_hmap_get(&s->ns_svcs, slot->key, slot->klen) &&
		    (rc = publish_ns(p, slot->key, slot->klen)) < 0)
			return rc;
	}
	return 0;
}

struct cluster_snapshot *k8s_store_publish(struct k8s_store *s)
{
	struct publish p = { .s = s, .last = s->last };
	struct cluster_snapshot *snap = NULL;

	if (s->last && !s->all_dirty && s->dirty_svc.n == 0 && s->dirty_ns.n == 0)
		goto unchanged;
	if (k8s_hmap_init(&p.work, s->seed) < 0)
		return NULL;
	if (publish_collect(&p) < 0 || rev_edits(&p.work, p.last, s->seed, &p.rev) < 0)
		goto fail;
	if (s->last && p.svc.n == 0 && p.ns.n == 0 && p.rev.n == 0) {
		edits_free(&p.svc);
		edits_free(&p.ns);
		edits_free(&p.rev);
		k8s_hmap_deinit(&p.work, rev_work_free);
		goto clean;
	}

	snap = calloc(1, sizeof(*snap));
	if (!snap)
		goto fail;
	atomic_init(&snap->refs, 1);
	snap->seed = s->seed;
	snap->serial = s->generation + 1;
	if (s->last) {
		pmap_share(&snap->svc, &s->last->svc);
		pmap_share(&snap->ns, &s->last->ns);
		pmap_share(&snap->rev, &s->last->rev);
	}
	if (pmap_apply(&snap->svc, &p.svc) < 0 || pmap_apply(&snap->ns, &p.ns) < 0 ||
	    pmap_apply(&snap->rev, &p.rev) < 0)
		goto fail;
	edits_free(&p.svc);
	edits_free(&p.ns);
	edits_free(&p.rev);
	k8s_hmap_deinit(&p.work, rev_work_free);

	s->generation = snap->serial;
	cluster_snapshot_unref(s->last);
	s->last = snap;
	s->stats.snapshots_published++;
clean:
	k8s_hmap_clear(&s->dirty_svc, NULL);
	k8s_hmap_clear(&s->dirty_ns, NULL);
	s->all_dirty = false;
unchanged:
	cluster_snapshot_ref(s->last);
	return s->last;
fail:
	/* the store keeps its dirty marks: the next publish tries again */
	cluster_snapshot_unref(snap);
	edits_free(&p.svc);
	edits_free(&p.ns);
	edits_free(&p.rev);
	k8s_hmap_deinit(&p.work, rev_work_free);
	return NULL;
}
