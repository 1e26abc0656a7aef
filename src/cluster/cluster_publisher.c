/* src/cluster/cluster_publisher.c - publish the store as snapshots, at the cost of what changed.
 *
 * The store remembers which svc keys and namespaces changed. For each, the
 * svc_rec is rebuilt (O(size of that Service), cluster_records.c) and
 * compared with the one in the last snapshot; equal records are dropped, so
 * a MODIFIED event that changes nothing DNS can see (status, annotations, a
 * not-ready endpoint) shares everything. The reverse entries of the old and
 * new record are diffed into the rev map. Only the shards that received an
 * edit are rebuilt; the others are shared by reference (cluster_pmap.c). So
 * one endpoint change in a 10,000-Service cluster costs: rebuild one
 * svc_rec, rebuild one svc shard (~40 entries at 10k Services) and one or
 * two rev shards, plus 3 x PMAP_SHARDS pointer copies and reference
 * increments (~768, a few microseconds). A relist or a snapshot file load
 * (the store reports "all changed") rebuilds every record to compare it, but
 * still shares every shard that did not change.
 *
 * The publisher runs on the control thread (it reads the store through
 * k8s_store_internal.h); the snapshots it returns go to any thread.
 */
#include "nodedns/cluster/cluster_publisher.h"

#include "cluster_snapshot_internal.h"
#include "k8s_store_internal.h"
#include "nodedns/util/hashmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct cluster_publisher {
	struct hash_key hkey;          /* of every snapshot's maps and of the work map */
	uint32_t generation;           /* serial of the last snapshot */
	struct cluster_snapshot *last; /* one reference, NULL before the first publish */
	uint64_t published;            /* snapshots made */
	uint64_t rec_bytes;            /* of the records of last */
};

static uint64_t svc_rec_bytes(const struct svc_rec *r)
{
	uint64_t n;

	if (!r)
		return 0;
	n = sizeof(*r) + r->ext_len + (uint64_t)(r->n_ports + r->n_pool) * sizeof(struct k8s_port) +
	    (uint64_t)r->n_targets * sizeof(struct rec_target) +
	    (uint64_t)(r->n_eps + r->n_v4 + r->n_v6) * sizeof(struct k8s_ip) +
	    (uint64_t)r->n_psets * sizeof(struct rec_portset) + sizeof(struct svc_name) +
	    r->ns_len + r->name_len;
	for (uint32_t i = 0; i < r->n_targets; i++)
		n += r->targets[i].label_len;
	return n;
}

static uint64_t rev_rec_bytes(const struct rev_rec *rr)
{
	uint64_t n;

	if (!rr)
		return 0;
	n = sizeof(*rr) + (uint64_t)rr->n * sizeof(rr->items[0]);
	for (uint32_t i = 0; i < rr->n; i++)
		n += rr->items[i].label_len;
	return n;
}

/* ------------------------------------------------------ reverse entries */

/* One reverse entry of a record added or taken away, keyed by its address.
 * The changes of a publish are gathered in one flat array, sorted by key,
 * and each address's group turns its old rev_rec into the new one. Entries
 * name their Service by its shared svc_name, so a rebuilt record whose
 * address keeps its name gives an equal entry, and that rev_rec is kept. */
struct rev_change {
	const struct svc_name *sn; /* borrowed from a record of the last snapshot or an edit */
	const char *label;         /* REV_ENDPOINT: the target's label, borrowed likewise */
	uint8_t label_len;
	uint8_t kind;
	bool add;
	uint8_t klen;
	uint8_t key[17];
};

struct rev_changes {
	size_t n, cap;
	struct rev_change *v;
};

/* An entry being worked on, its label spelled out (also a dashed one). */
struct rev_work {
	const struct svc_name *sn;
	const char *label;
	uint8_t label_len;
	uint8_t kind;
};

static int rev_push(struct rev_changes *c, const struct svc_rec *r, const struct k8s_ip *ip,
		    int kind, const struct rec_target *t, bool add)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct rev_change *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	struct rev_change *x = &c->v[c->n++];
	x->sn = r->sname;
	x->label = t ? rec_label(r, t) : NULL;
	x->label_len = t ? t->label_len : 0;
	x->kind = (uint8_t)kind;
	x->add = add;
	x->klen = (uint8_t)cluster_snapshot_rev_key(x->key, ip);
	return 0;
}

/* One reverse entry of a record: an address and what it names. */
struct rev_ent {
	struct k8s_ip ip;
	uint8_t kind;
	uint32_t target; /* REV_ENDPOINT */
};

static int rev_ent_cmp(const void *a, const void *b)
{
	const struct rev_ent *x = a, *y = b;
	int c = cluster_records_ip_cmp(&x->ip, &y->ip);

	if (c)
		return c;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->target == y->target ? 0 : x->target < y->target ? -1 : 1;
}

/* The reverse entries of @p r (may be NULL), by address: each ClusterIP
 * points at the Service name, each ready endpoint address at its endpoint
 * name (one PTR per Service: the first name in label order that holds the
 * address). */
static int rev_entries(const struct svc_rec *r, struct rev_ent **out, size_t *np)
{
	struct rev_ent *v;
	size_t n = 0, o = 0;

	*out = NULL;
	*np = 0;
	if (!r || r->n_cips + r->n_eps == 0)
		return 0;
	if (!(v = malloc((r->n_cips + r->n_eps) * sizeof(*v))))
		return -ENOMEM;
	for (uint32_t i = 0; i < r->n_cips; i++)
		v[n++] = (struct rev_ent){ r->cips[i], REV_CLUSTERIP, 0 };
	for (uint32_t t = 0; t < r->n_targets; t++) {
		for (uint32_t k = 0; k < r->targets[t].ep_n; k++)
			v[n++] = (struct rev_ent){ r->eps[r->targets[t].ep_first + k], REV_ENDPOINT, t };
	}
	qsort(v, n, sizeof(*v), rev_ent_cmp);
	for (size_t i = 0; i < n; i++) {
		if (o && cluster_records_ip_cmp(&v[o - 1].ip, &v[i].ip) == 0 &&
		    v[o - 1].kind == v[i].kind)
			continue; /* the first target in label order */
		v[o++] = v[i];
	}
	*out = v;
	*np = o;
	return 0;
}

/* Are the entries a[0..na) of @p ra and b[0..nb) of @p rb (one address
 * each) the same PTR targets? */
static bool rev_ents_same(const struct svc_rec *ra, const struct rev_ent *a, size_t na,
			  const struct svc_rec *rb, const struct rev_ent *b, size_t nb)
{
	if (na != nb || ra->sname != rb->sname)
		return false;
	for (size_t i = 0; i < na; i++) {
		if (a[i].kind != b[i].kind)
			return false;
		if (a[i].kind == REV_ENDPOINT) {
			const struct rec_target *x = &ra->targets[a[i].target];
			const struct rec_target *y = &rb->targets[b[i].target];
			if (cluster_records_label_cmp(rec_label(ra, x), x->label_len, rec_label(rb, y),
						      y->label_len))
				return false;
		}
	}
	return true;
}

static int rev_push_ents(struct rev_changes *c, const struct svc_rec *r, const struct rev_ent *e,
			 size_t n, bool add)
{
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = rev_push(c, r, &e[i].ip, e[i].kind,
			      e[i].kind == REV_ENDPOINT ? &r->targets[e[i].target] : NULL, add);
		if (!add)
			break; /* a removal takes every entry of the Service at the address */
	}
	return rc;
}

/* The reverse changes from record @p old to @p rec (either may be NULL):
 * only the addresses whose entries differ, so a change of one endpoint in a
 * large Service touches one or two addresses. */
static int rev_diff(struct rev_changes *c, const struct svc_rec *old, const struct svc_rec *rec)
{
	struct rev_ent *a = NULL, *b = NULL;
	size_t na, nb, i = 0, j = 0;
	int rc;

	if ((rc = rev_entries(old, &a, &na)) < 0 || (rc = rev_entries(rec, &b, &nb)) < 0)
		goto out;
	while (rc == 0 && (i < na || j < nb)) {
		size_t ie = i, je = j;
		int cmp = i == na ? 1 : j == nb ? -1 : cluster_records_ip_cmp(&a[i].ip, &b[j].ip);
		if (cmp <= 0)
			while (ie < na && cluster_records_ip_cmp(&a[ie].ip, &a[i].ip) == 0)
				ie++;
		if (cmp >= 0)
			while (je < nb && cluster_records_ip_cmp(&b[je].ip, &b[j].ip) == 0)
				je++;
		if (cmp == 0 && rev_ents_same(old, a + i, ie - i, rec, b + j, je - j)) {
			i = ie;
			j = je;
			continue;
		}
		if (ie > i)
			rc = rev_push_ents(c, old, a + i, ie - i, false);
		if (rc == 0 && je > j)
			rc = rev_push_ents(c, rec, b + j, je - j, true);
		i = ie;
		j = je;
	}
out:
	free(a);
	free(b);
	return rc;
}

static int rev_change_cmp(const void *a, const void *b)
{
	const struct rev_change *x = a, *y = b;

	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return memcmp(x->key, y->key, x->klen);
}

static int rev_work_cmp(const void *a, const void *b)
{
	const struct rev_work *x = a, *y = b;
	const struct svc_name *p = x->sn, *q = y->sn;
	int c;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if ((c = cluster_records_label_cmp(p->s, p->ns_len, q->s, q->ns_len)))
		return c;
	if ((c = cluster_records_label_cmp(p->s + p->ns_len, p->name_len, q->s + q->ns_len,
					   q->name_len)))
		return c;
	return cluster_records_label_cmp(x->label, x->label_len, y->label, y->label_len);
}

/* Item @p i of @p rr as a work entry; @p dashed: the address's own label. */
static struct rev_work rev_item_work(const struct rev_rec *rr, uint32_t i, const char *dashed,
				     uint8_t dlen)
{
	const struct rev_item *it = &rr->items[i];
	struct rev_work w = { it->sn, NULL, 0, it->kind };

	if (it->label_len) {
		w.label = rev_labels(rr) + it->label_off;
		w.label_len = it->label_len;
	} else if (it->kind == REV_ENDPOINT) {
		w.label = dashed;
		w.label_len = dlen;
	}
	return w;
}

/* The new entries of one address: the old ones of @p old (may be NULL)
 * with the changes g[0..n) applied, into @p w (room for old's and n).
 * @return their count. */
static uint32_t rev_group(const struct rev_rec *old, const struct rev_change *g, size_t n,
			  const char *dashed, uint8_t dlen, struct rev_work *w)
{
	uint32_t k = 0;

	for (uint32_t i = 0; old && i < old->n; i++) {
		bool gone = false;
		for (size_t j = 0; j < n && !gone; j++)
			gone = !g[j].add && g[j].sn == old->items[i].sn;
		if (!gone)
			w[k++] = rev_item_work(old, i, dashed, dlen);
	}
	for (size_t j = 0; j < n; j++) {
		bool dup = !g[j].add;
		for (uint32_t i = 0; i < k && !dup; i++)
			dup = w[i].sn == g[j].sn && w[i].kind == g[j].kind;
		if (!dup) /* one PTR per Service and kind */
			w[k++] = (struct rev_work){ g[j].sn, g[j].label, g[j].label_len, g[j].kind };
	}
	if (k > 1)
		qsort(w, k, sizeof(*w), rev_work_cmp);
	return k;
}

static bool rev_same(const struct rev_rec *old, const struct rev_work *w, uint32_t k,
		     const char *dashed, uint8_t dlen)
{
	if (!old)
		return k == 0;
	if (old->n != k)
		return false;
	for (uint32_t i = 0; i < k; i++) {
		struct rev_work o = rev_item_work(old, i, dashed, dlen);
		if (o.sn != w[i].sn || o.kind != w[i].kind ||
		    cluster_records_label_cmp(o.label, o.label_len, w[i].label, w[i].label_len))
			return false;
	}
	return true;
}

static bool is_dashed(const struct rev_work *w, const char *dashed, uint8_t dlen)
{
	return w->label_len == dlen && memcmp(w->label, dashed, dlen) == 0;
}

/* A rev_rec of w[0..k): a label equal to the address's dashed form is not kept. */
static struct rev_rec *rev_rec_new(const struct rev_work *w, uint32_t k, const char *dashed,
				   uint8_t dlen)
{
	size_t bytes = 0, off = 0;
	struct rev_rec *rr;

	for (uint32_t i = 0; i < k; i++) {
		if (w[i].kind == REV_ENDPOINT && !is_dashed(&w[i], dashed, dlen))
			bytes += w[i].label_len;
	}
	rr = malloc(sizeof(*rr) + k * sizeof(rr->items[0]) + bytes);
	if (!rr)
		return NULL;
	atomic_init(&rr->hdr.refs, 1);
	rr->hdr.type = PM_VAL_REV;
	rr->n = k;
	for (uint32_t i = 0; i < k; i++) {
		struct rev_item *it = &rr->items[i];
		it->sn = w[i].sn;
		it->kind = w[i].kind;
		it->label_off = 0;
		it->label_len = 0;
		cluster_snapshot_name_ref(it->sn);
		if (w[i].kind == REV_ENDPOINT && !is_dashed(&w[i], dashed, dlen)) {
			it->label_off = (uint16_t)off;
			it->label_len = w[i].label_len;
			memcpy((char *)rev_labels(rr) + off, w[i].label, w[i].label_len);
			off += w[i].label_len;
		}
	}
	return rr;
}

/* Turn the gathered reverse changes into edits of the rev map. */
static int rev_edits(struct rev_changes *c, const struct cluster_snapshot *last,
		     const struct hash_key *hk, struct pm_edits *e, int64_t *delta)
{
	struct rev_work *w = NULL;
	size_t cap = 0;
	int rc = 0;

	if (c->n > 1)
		qsort(c->v, c->n, sizeof(*c->v), rev_change_cmp);
	/* at most one edit an address: sized once, not doubled on the way (the
	 * first publish of a large cluster edits every address) */
	if (c->n > 64 && cluster_pmap_edits_reserve(e, c->n) < 0)
		return -ENOMEM;
	for (size_t i = 0, j; i < c->n && rc == 0; i = j) {
		const struct rev_change *g = &c->v[i];
		struct pm_val *oldv = NULL;
		const struct rev_rec *old;
		struct rev_rec *rr;
		struct k8s_addr a = { .host_len = 0 };
		char dbuf[K8S_LABEL_MAX];
		uint8_t dlen;
		uint32_t k;

		for (j = i + 1; j < c->n && rev_change_cmp(g, &c->v[j]) == 0; j++)
			;
		a.ip.fam = g->key[0];
		memcpy(a.ip.b, g->key + 1, g->klen - 1u);
		const char *dashed = k8s_objects_addr_label(NULL, &a, dbuf, &dlen);
		if (last)
			cluster_pmap_get(&last->rev, &last->hkey, g->key, g->klen, &oldv);
		old = (const struct rev_rec *)oldv;
		size_t need = (old ? old->n : 0) + (j - i);
		if (need > cap) {
			struct rev_work *v = realloc(w, need * sizeof(*v));
			if (!v) {
				rc = -ENOMEM;
				break;
			}
			w = v;
			cap = need;
		}
		k = rev_group(old, g, j - i, dashed, dlen, w);
		if (rev_same(old, w, k, dashed, dlen))
			continue;
		*delta -= (int64_t)rev_rec_bytes(old);
		if (k == 0) {
			rc = cluster_pmap_edit(e, hk, g->key, g->klen, true, NULL);
			continue;
		}
		if (!(rr = rev_rec_new(w, k, dashed, dlen))) {
			rc = -ENOMEM;
			break;
		}
		*delta += (int64_t)rev_rec_bytes(rr);
		if ((rc = cluster_pmap_edit(e, hk, g->key, g->klen, false, &rr->hdr)) < 0)
			cluster_snapshot_val_unref(&rr->hdr);
	}
	free(w);
	return rc;
}

/* -------------------------------------------------------------- publish */

struct publish {
	struct cluster_publisher *pub;
	const struct k8s_store *s;
	const struct cluster_snapshot *last;
	struct pm_edits svc, ns, rev;
	struct rev_changes work; /* reverse entries added and taken away */
	int64_t delta;           /* bytes of records added less those replaced */
};

static int publish_svc(void *arg, const uint8_t *key, size_t klen)
{
	struct publish *p = arg;
	const struct k8s_service *svc = k8s_store_service(p->s, key, klen);
	struct pm_val *old = NULL;
	struct svc_rec *rec = NULL;
	struct k8s_slice *const *slices;
	uint32_t n;
	int rc;

	if (p->last)
		cluster_pmap_get(&p->last->svc, &p->last->hkey, key, klen, &old);
	if (svc) {
		slices = k8s_store_service_slices(p->s, key, klen, &n);
		if (!(rec = cluster_records_build(svc, slices, n, (const struct svc_rec *)old)))
			return -ENOMEM;
	}
	if (cluster_records_equal((const struct svc_rec *)old, rec)) {
		cluster_snapshot_val_unref(rec ? &rec->hdr : NULL);
		return 0;
	}
	rc = cluster_pmap_edit(&p->svc, &p->pub->hkey, key, klen, rec == NULL,
			       rec ? &rec->hdr : NULL);
	if (rc < 0) {
		cluster_snapshot_val_unref(rec ? &rec->hdr : NULL);
		return rc;
	}
	p->delta += (int64_t)svc_rec_bytes(rec) - (int64_t)svc_rec_bytes((const struct svc_rec *)old);
	return rev_diff(&p->work, (const struct svc_rec *)old, rec);
}

static int publish_ns(void *arg, const uint8_t *key, size_t klen)
{
	struct publish *p = arg;
	bool want = k8s_store_ns_exists(p->s, key, klen);
	bool have = p->last && cluster_pmap_get(&p->last->ns, &p->last->hkey, key, klen, NULL);

	if (want == have)
		return 0;
	return cluster_pmap_edit(&p->ns, &p->pub->hkey, key, klen, !want, NULL);
}

/* Everything that changed into edits; after "all changed", also what the
 * last snapshot has and the store no longer does. */
static int publish_collect(struct publish *p)
{
	bool all;
	int rc;

	if ((rc = k8s_store_foreach_change(p->s, publish_svc, publish_ns, p, &all)) < 0)
		return rc;
	if (!all || !p->last)
		return 0;
	PMAP_FOREACH(&p->last->svc, slot)
	{
		if (!k8s_store_service(p->s, slot->key, slot->klen) &&
		    (rc = publish_svc(p, slot->key, slot->klen)) < 0)
			return rc;
	}
	PMAP_FOREACH(&p->last->ns, slot)
	{
		if (!k8s_store_ns_exists(p->s, slot->key, slot->klen) &&
		    (rc = publish_ns(p, slot->key, slot->klen)) < 0)
			return rc;
	}
	return 0;
}

static void publish_done(struct publish *p)
{
	cluster_pmap_edits_free(&p->svc);
	cluster_pmap_edits_free(&p->ns);
	cluster_pmap_edits_free(&p->rev);
	free(p->work.v);
}

/* The last snapshot with the edits of @p p applied. NULL: no memory. */
static struct cluster_snapshot *publish_snapshot(struct publish *p)
{
	struct cluster_publisher *pub = p->pub;
	struct cluster_snapshot *snap = calloc(1, sizeof(*snap));

	if (!snap)
		return NULL;
	atomic_init(&snap->refs, 1);
	snap->hkey = pub->hkey;
	snap->serial = pub->generation + 1;
	if (pub->last) {
		cluster_pmap_share(&snap->svc, &pub->last->svc);
		cluster_pmap_share(&snap->ns, &pub->last->ns);
		cluster_pmap_share(&snap->rev, &pub->last->rev);
	}
	if (cluster_pmap_apply(&snap->svc, &p->svc) < 0 ||
	    cluster_pmap_apply(&snap->ns, &p->ns) < 0 ||
	    cluster_pmap_apply(&snap->rev, &p->rev) < 0) {
		cluster_snapshot_unref(snap);
		return NULL;
	}
	return snap;
}

struct cluster_snapshot *cluster_publisher_publish(struct cluster_publisher *pub,
						   struct k8s_store *s)
{
	struct publish p = { .pub = pub, .s = s, .last = pub->last };
	struct cluster_snapshot *snap;

	if (pub->last && k8s_store_unchanged(s))
		goto unchanged;
	if (publish_collect(&p) < 0 || rev_edits(&p.work, p.last, &pub->hkey, &p.rev, &p.delta) < 0)
		goto fail;
	if (pub->last && p.svc.n == 0 && p.ns.n == 0 && p.rev.n == 0) {
		publish_done(&p);
		goto clean;
	}
	if (!(snap = publish_snapshot(&p)))
		goto fail;
	publish_done(&p);
	pub->generation = snap->serial;
	cluster_snapshot_unref(pub->last);
	pub->last = snap;
	pub->published++;
	pub->rec_bytes += (uint64_t)p.delta;
	k8s_store_set_published_bytes(s, pub->rec_bytes,
				      snap->svc.bytes + snap->ns.bytes + snap->rev.bytes);
clean:
	k8s_store_changes_clear(s);
unchanged:
	cluster_snapshot_ref(pub->last);
	return pub->last;
fail:
	/* the store keeps its changes: the next publish tries again */
	publish_done(&p);
	return NULL;
}

struct cluster_publisher *cluster_publisher_new(void)
{
	struct cluster_publisher *p = calloc(1, sizeof(*p));

	if (p)
		hash_key_random(&p->hkey);
	return p;
}

void cluster_publisher_free(struct cluster_publisher *p)
{
	if (!p)
		return;
	cluster_snapshot_unref(p->last);
	free(p);
}

uint64_t cluster_publisher_count(const struct cluster_publisher *p)
{
	return p->published;
}
