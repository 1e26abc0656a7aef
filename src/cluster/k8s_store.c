/* src/cluster/k8s_store.c - the cluster store: objects by name, and what changed since a publish.
 *
 * Hash maps keyed by namespace/name hold the decoded objects (k8s_objects.c),
 * plus two indexes: the slices of each Service and the number of Services of
 * each namespace. Every change marks the svc keys and namespaces it touches;
 * the publisher reads those marks (k8s_store_internal.h). A rejected event
 * leaves the store as it was. Objects decoded elsewhere (the warm-start
 * file, warm_file.c) enter through the same put functions as the API's.
 */
#include "nodedns/cluster/k8s_store.h"

#include "k8s_store_internal.h"
#include "k8s_slice_fast.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/util/hashmap.h"
#include "nodedns/util/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LOAD_FILE_MAX_BYTES (1024ull * 1024 * 1024) /* larger snapshot files are refused */

#define fail(err, errlen, ...) k8s_objects_fail(-EINVAL, err, errlen, __VA_ARGS__)

/* Slices attached to one Service (by the kubernetes.io/service-name label). */
struct k8s_slice_list {
	uint32_t n, cap;
	struct k8s_slice **v;
};

struct k8s_store {
	struct cluster_config cfg;
	struct hmap svcs;       /* svc key -> struct k8s_service */
	struct hmap slices;     /* "<ns>/<slice>" -> struct k8s_slice */
	struct hmap nss;        /* "<ns>" -> (void *)1: Namespace objects */
	struct hmap svc_slices; /* svc key -> struct k8s_slice_list */
	struct hmap ns_svcs;    /* "<ns>" -> (uintptr_t) number of Services */
	struct hmap dirty_svc;  /* svc keys changed since k8s_store_changes_clear() */
	struct hmap dirty_ns;   /* namespaces changed since then */
	bool all_dirty;         /* since then, anything may have changed */
	uint64_t n_addrs;       /* ready addresses held */
	uint64_t arrays[K8S_KIND_COUNT]; /* bytes of the objects' arrays, by kind */
	struct k8s_store_stats stats;
	bool staging;           /* a stage's store: no change marks */
	uint64_t base_objects;  /* a stage's: objects of the store it is for, other kinds */
	struct k8s_fast fast;   /* k8s_store_apply_line()'s buffers */
};

/* ---------------------------------------------------------------- store */

static void list_free(void *p)
{
	struct k8s_slice_list *l = p;

	if (l)
		free(l->v);
	free(l);
}

struct k8s_store *k8s_store_new(const struct cluster_config *cfg)
{
	struct k8s_store *s = calloc(1, sizeof(*s));
	struct hmap *maps[7];
	struct hash_key key;

	if (!s)
		return NULL;
	if (cfg)
		s->cfg = *cfg;
	hash_key_random(&key); /* one per store, copied into each map */
	maps[0] = &s->svcs;
	maps[1] = &s->slices;
	maps[2] = &s->nss;
	maps[3] = &s->svc_slices;
	maps[4] = &s->ns_svcs;
	maps[5] = &s->dirty_svc;
	maps[6] = &s->dirty_ns;
	for (size_t i = 0; i < 7; i++) {
		if (hmap_init(maps[i], &key) < 0) {
			k8s_store_free(s);
			return NULL;
		}
	}
	return s;
}

static void free_maps(struct k8s_store *s)
{
	hmap_deinit(&s->svcs, k8s_objects_service_free);
	hmap_deinit(&s->slices, k8s_objects_slice_free);
	hmap_deinit(&s->nss, NULL);
	hmap_deinit(&s->svc_slices, list_free);
	hmap_deinit(&s->ns_svcs, NULL);
	hmap_deinit(&s->dirty_svc, NULL);
	hmap_deinit(&s->dirty_ns, NULL);
}

void k8s_store_free(struct k8s_store *s)
{
	if (!s)
		return;
	free_maps(s);
	k8s_fast_deinit(&s->fast);
	free(s);
}

static uint64_t own_objects(const struct k8s_store *s)
{
	return s->svcs.n + s->slices.n + s->nss.n;
}

static uint64_t svc_arrays(const struct k8s_service *svc)
{
	return svc ? (uint64_t)svc->n_ports * sizeof(struct k8s_port) : 0;
}

static uint64_t slice_arrays(const struct k8s_slice *sl)
{
	return sl ? (uint64_t)sl->n_ports * sizeof(struct k8s_port) +
			    (uint64_t)sl->n_addrs * sizeof(struct k8s_addr) + sl->hosts_len
		  : 0;
}

/* Counted against K8S_MAX_OBJECTS. */
static uint64_t n_objects(const struct k8s_store *s)
{
	return s->base_objects + own_objects(s);
}

static int mark(const struct k8s_store *s, struct hmap *dirty, const char *key, size_t klen)
{
	return s->staging ? 0 : hmap_put(dirty, key, klen, (void *)1, NULL);
}

/* Put (or with DELETED remove) the decoded @p svc, which this consumes. */
static int put_service(struct k8s_store *s, enum k8s_event ev, struct k8s_service *svc,
		       char *err, size_t errlen)
{
	struct k8s_service *old;
	char key[K8S_KEY_MAX];
	size_t klen, nslen;
	uintptr_t cnt;
	int rc = 0;

	nslen = strlen(svc->ns);
	klen = k8s_objects_key(key, svc->ns, nslen, svc->name, strlen(svc->name));
	old = hmap_get(&s->svcs, key, klen);
	if (ev != K8S_DELETED && !old && n_objects(s) >= K8S_MAX_OBJECTS) {
		rc = k8s_objects_fail(-ENOSPC, err, errlen, "store full: %u objects", K8S_MAX_OBJECTS);
		goto out;
	}
	if ((rc = mark(s, &s->dirty_svc, key, klen)) < 0 || (rc = mark(s, &s->dirty_ns, key, nslen)) < 0)
		goto out;
	cnt = (uintptr_t)hmap_get(&s->ns_svcs, key, nslen);
	if (ev == K8S_DELETED) {
		if (!old)
			goto out;
		hmap_del(&s->svcs, key, klen, NULL);
		if (cnt <= 1)
			hmap_del(&s->ns_svcs, key, nslen, NULL);
		else
			hmap_put(&s->ns_svcs, key, nslen, (void *)(cnt - 1), NULL);
		s->arrays[K8S_SERVICE] -= svc_arrays(old);
		k8s_objects_service_free(old);
		goto out;
	}
	if ((rc = hmap_put(&s->svcs, key, klen, svc, NULL)) < 0)
		goto out;
	if (!old && (rc = hmap_put(&s->ns_svcs, key, nslen, (void *)(cnt + 1), NULL)) < 0) {
		hmap_del(&s->svcs, key, klen, NULL);
		goto out;
	}
	s->arrays[K8S_SERVICE] += svc_arrays(svc) - svc_arrays(old);
	k8s_objects_service_free(old);
	return 0;
out:
	k8s_objects_service_free(svc);
	return rc;
}

static int apply_service(struct k8s_store *s, enum k8s_event ev, const json_t *obj, char *err,
			 size_t errlen)
{
	struct k8s_service *svc = calloc(1, sizeof(*svc));
	int rc;

	if (!svc)
		return -ENOMEM;
	rc = k8s_objects_service(obj, ev == K8S_DELETED, svc, err, errlen);
	if (rc < 0) {
		k8s_objects_service_free(svc);
		return rc;
	}
	return put_service(s, ev, svc, err, errlen);
}

static void list_remove(struct k8s_store *s, struct k8s_slice *sl)
{
	char key[K8S_KEY_MAX];
	size_t klen;
	struct k8s_slice_list *l;

	if (!sl->svc[0])
		return;
	klen = k8s_objects_key(key, sl->ns, strlen(sl->ns), sl->svc, strlen(sl->svc));
	l = hmap_get(&s->svc_slices, key, klen);
	if (!l)
		return;
	for (uint32_t i = 0; i < l->n; i++) {
		if (l->v[i] == sl) {
			l->v[i] = l->v[--l->n];
			break;
		}
	}
	if (l->n == 0)
		list_free(hmap_del(&s->svc_slices, key, klen, NULL));
}

/* Make room for one more slice in the list of @p key (creating it). */
static int list_reserve(struct k8s_store *s, const char *key, size_t klen,
			struct k8s_slice_list **out)
{
	struct k8s_slice_list *l = hmap_get(&s->svc_slices, key, klen);
	int rc;

	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l || !(l->v = malloc(4 * sizeof(*l->v)))) {
			free(l);
			return -ENOMEM;
		}
		l->cap = 4;
		if ((rc = hmap_put(&s->svc_slices, key, klen, l, NULL)) < 0) {
			list_free(l);
			return rc;
		}
	}
	if (l->n == l->cap) {
		struct k8s_slice **v = realloc(l->v, 2 * l->cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap *= 2;
	}
	*out = l;
	return 0;
}

/* Put (or with DELETED remove) the decoded @p sl, which this consumes. */
static int put_slice(struct k8s_store *s, enum k8s_event ev, struct k8s_slice *sl, char *err,
		     size_t errlen)
{
	struct k8s_slice *old;
	struct k8s_slice_list *l = NULL;
	char key[K8S_KEY_MAX + K8S_SLICE_NAME_MAX], skey[K8S_KEY_MAX];
	size_t klen, sklen;
	int rc = 0;

	klen = k8s_objects_key(key, sl->ns, strlen(sl->ns), sl->name, strlen(sl->name));
	old = hmap_get(&s->slices, key, klen);
	if (old && old->svc[0]) {
		sklen = k8s_objects_key(skey, old->ns, strlen(old->ns), old->svc, strlen(old->svc));
		if ((rc = mark(s, &s->dirty_svc, skey, sklen)) < 0)
			goto out;
	}
	if (ev == K8S_DELETED) {
		if (old) {
			hmap_del(&s->slices, key, klen, NULL);
			list_remove(s, old);
			s->n_addrs -= old->n_addrs;
			s->arrays[K8S_ENDPOINTSLICE] -= slice_arrays(old);
			k8s_objects_slice_free(old);
		}
		goto out;
	}
	if ((!old && n_objects(s) >= K8S_MAX_OBJECTS) ||
	    s->n_addrs - (old ? old->n_addrs : 0) + sl->n_addrs > K8S_MAX_ADDRS_TOTAL) {
		rc = k8s_objects_fail(-ENOSPC, err, errlen, "store full: %u objects or %u addresses",
			     K8S_MAX_OBJECTS, K8S_MAX_ADDRS_TOTAL);
		goto out;
	}
	if (sl->svc[0]) {
		sklen = k8s_objects_key(skey, sl->ns, strlen(sl->ns), sl->svc, strlen(sl->svc));
		if ((rc = mark(s, &s->dirty_svc, skey, sklen)) < 0 ||
		    (rc = list_reserve(s, skey, sklen, &l)) < 0)
			goto out;
	}
	if ((rc = hmap_put(&s->slices, key, klen, sl, NULL)) < 0)
		goto out;
	if (l)
		l->v[l->n++] = sl; /* before list_remove(old) can free this list */
	if (old) {
		list_remove(s, old);
		s->n_addrs -= old->n_addrs;
		s->arrays[K8S_ENDPOINTSLICE] -= slice_arrays(old);
		k8s_objects_slice_free(old);
	}
	s->n_addrs += sl->n_addrs;
	s->arrays[K8S_ENDPOINTSLICE] += slice_arrays(sl);
	return 0;
out:
	k8s_objects_slice_free(sl);
	return rc;
}

static int apply_slice(struct k8s_store *s, enum k8s_event ev, const json_t *obj, char *err,
		       size_t errlen)
{
	struct k8s_slice *sl = calloc(1, sizeof(*sl));
	int rc;

	if (!sl)
		return -ENOMEM;
	rc = k8s_objects_slice(obj, ev == K8S_DELETED, sl, err, errlen);
	if (rc < 0) {
		k8s_objects_slice_free(sl);
		return rc;
	}
	return put_slice(s, ev, sl, err, errlen);
}

static int put_namespace(struct k8s_store *s, enum k8s_event ev, const char *name, size_t len,
			 char *err, size_t errlen)
{
	int rc;

	if (ev != K8S_DELETED && !hmap_get(&s->nss, name, len) &&
	    n_objects(s) >= K8S_MAX_OBJECTS) {
		return k8s_objects_fail(-ENOSPC, err, errlen, "store full: %u objects", K8S_MAX_OBJECTS);
	}
	if ((rc = mark(s, &s->dirty_ns, name, len)) < 0)
		return rc;
	if (ev == K8S_DELETED) {
		hmap_del(&s->nss, name, len, NULL);
		return 0;
	}
	return hmap_put(&s->nss, name, len, (void *)1, NULL);
}

static int apply_namespace(struct k8s_store *s, enum k8s_event ev, const json_t *obj, char *err,
			   size_t errlen)
{
	char name[K8S_LABEL_MAX + 1];
	int rc;

	if ((rc = k8s_objects_namespace(obj, name, err, errlen)) < 0)
		return rc;
	return put_namespace(s, ev, name, strlen(name), err, errlen);
}

/* An event's result, counted as applied or rejected (out of memory worded). */
static int counted(struct k8s_store *s, int rc, char *err, size_t errlen)
{
	if (rc == -ENOMEM)
		k8s_objects_fail(rc, err, errlen, "out of memory");
	if (rc < 0)
		s->stats.events_rejected++;
	else
		s->stats.events_applied++;
	return rc;
}

int k8s_store_apply(struct k8s_store *s, enum k8s_kind kind, enum k8s_event ev,
		    const struct json_t *obj, char *err, size_t errlen)
{
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!obj || ev > K8S_DELETED) {
		rc = fail(err, errlen, "no object or bad event");
	} else {
		switch (kind) {
		case K8S_SERVICE:
			rc = apply_service(s, ev, obj, err, errlen);
			break;
		case K8S_ENDPOINTSLICE:
			rc = apply_slice(s, ev, obj, err, errlen);
			break;
		case K8S_NAMESPACE:
			rc = apply_namespace(s, ev, obj, err, errlen);
			break;
		default:
			rc = fail(err, errlen, "unknown kind %d", (int)kind);
		}
	}
	return counted(s, rc, err, errlen);
}

/* An EndpointSlice event line decoded without a JSON tree (k8s_slice_fast)
 * and put into @p s, counted as k8s_store_apply() counts; with @p added_only,
 * any event but ADDED is left alone. @return as k8s_store_apply_line(). */
static int apply_slice_line(struct k8s_store *s, const char *obj_kind, const char *line,
			    size_t len, bool added_only, enum k8s_event *ev, char rv[K8S_RV_MAX],
			    char *err, size_t errlen)
{
	struct k8s_slice *sl;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!(sl = calloc(1, sizeof(*sl))))
		return counted(s, -ENOMEM, err, errlen);
	rc = k8s_fast_slice_event(&s->fast, line, len, obj_kind, ev, rv, sl);
	if (rc == 0 && added_only && *ev != K8S_ADDED)
		rc = K8S_FAST_UNHANDLED;
	if (rc != 0) {
		k8s_objects_slice_free(sl);
		return rc == K8S_FAST_UNHANDLED ? K8S_LINE_UNHANDLED : counted(s, rc, err, errlen);
	}
	return counted(s, put_slice(s, *ev, sl, err, errlen), err, errlen);
}

int k8s_store_apply_line(struct k8s_store *s, enum k8s_kind kind, const char *obj_kind,
			 const char *line, size_t len, enum k8s_event *ev, char rv[K8S_RV_MAX],
			 char *err, size_t errlen)
{
	rv[0] = '\0';
	if (kind != K8S_ENDPOINTSLICE)
		return K8S_LINE_UNHANDLED;
	return apply_slice_line(s, obj_kind, line, len, false, ev, rv, err, errlen);
}

void k8s_store_clear_kind(struct k8s_store *s, enum k8s_kind kind)
{
	switch (kind) {
	case K8S_SERVICE:
		hmap_clear(&s->svcs, k8s_objects_service_free);
		hmap_clear(&s->ns_svcs, NULL);
		break;
	case K8S_ENDPOINTSLICE:
		hmap_clear(&s->svc_slices, list_free);
		hmap_clear(&s->slices, k8s_objects_slice_free);
		s->n_addrs = 0;
		break;
	case K8S_NAMESPACE:
		hmap_clear(&s->nss, NULL);
		break;
	default:
		return;
	}
	s->arrays[kind] = 0;
	/* The next publish compares every record with the last snapshot and
	 * still shares what did not change. */
	s->all_dirty = true;
}

/* The bytes of a map's buckets and nodes (keys taken as @p key_bytes each). */
static uint64_t map_bytes(const struct hmap *m, size_t key_bytes)
{
	return m->nb * sizeof(*m->b) + m->n * (sizeof(struct hmap_node) + key_bytes);
}

void k8s_store_get_stats(const struct k8s_store *s, struct k8s_store_stats *out)
{
	*out = s->stats;
	out->services = s->svcs.n;
	out->endpointslices = s->slices.n;
	out->namespaces = s->nss.n;
	out->addresses = s->n_addrs;
	out->bytes_objects =
		s->svcs.n * sizeof(struct k8s_service) + s->slices.n * sizeof(struct k8s_slice) +
		s->arrays[K8S_SERVICE] + s->arrays[K8S_ENDPOINTSLICE] +
		map_bytes(&s->svcs, 16) + map_bytes(&s->slices, 32) + map_bytes(&s->nss, 8) +
		map_bytes(&s->svc_slices, 16 + sizeof(struct k8s_slice_list)) +
		map_bytes(&s->ns_svcs, 8) + map_bytes(&s->dirty_svc, 16) + map_bytes(&s->dirty_ns, 8);
	for (size_t i = 0; i < s->svc_slices.nb; i++) {
		/* the slice lists' arrays: a pointer a slice, and their spare room */
		for (const struct hmap_node *n = s->svc_slices.b[i]; n; n = n->next)
			out->bytes_objects += ((const struct k8s_slice_list *)n->val)->cap *
					      sizeof(struct k8s_slice *);
	}
}

void k8s_store_set_published_bytes(struct k8s_store *s, uint64_t records, uint64_t maps)
{
	s->stats.bytes_records = records;
	s->stats.bytes_maps = maps;
}

/* ------------------------------------------------- a list in progress */

struct k8s_store_stage {
	enum k8s_kind kind;
	struct k8s_store *list; /* the pages kept so far */
	struct k8s_store *page; /* the page in flight */
};

static struct k8s_store *stage_store(const struct k8s_store *s, uint64_t base)
{
	struct k8s_store *t = k8s_store_new(&s->cfg);

	if (t) {
		t->staging = true;
		t->base_objects = base;
	}
	return t;
}

struct k8s_store_stage *k8s_store_stage_new(const struct k8s_store *s, enum k8s_kind kind)
{
	struct k8s_store_stage *st = calloc(1, sizeof(*st));
	uint64_t mine = kind == K8S_SERVICE ? s->svcs.n
			: kind == K8S_ENDPOINTSLICE ? s->slices.n
						    : s->nss.n;

	if (!st)
		return NULL;
	st->kind = kind;
	st->list = stage_store(s, own_objects(s) - mine);
	st->page = st->list ? stage_store(s, own_objects(s) - mine) : NULL;
	if (!st->page) {
		k8s_store_stage_free(st);
		return NULL;
	}
	return st;
}

void k8s_store_stage_free(struct k8s_store_stage *st)
{
	if (!st)
		return;
	k8s_store_free(st->list);
	k8s_store_free(st->page);
	free(st);
}

int k8s_store_stage_add(struct k8s_store_stage *st, const json_t *obj, char *err, size_t errlen)
{
	return k8s_store_apply(st->page, st->kind, K8S_ADDED, obj, err, errlen);
}

int k8s_store_stage_add_line(struct k8s_store_stage *st, const char *obj_kind, const char *line,
			     size_t len, char *err, size_t errlen)
{
	enum k8s_event ev = K8S_ADDED;
	char rv[K8S_RV_MAX];

	if (st->kind != K8S_ENDPOINTSLICE)
		return K8S_LINE_UNHANDLED;
	return apply_slice_line(st->page, obj_kind, line, len, true, &ev, rv, err, errlen);
}

void k8s_store_stage_page_drop(struct k8s_store_stage *st)
{
	k8s_store_clear_kind(st->page, st->kind);
	st->page->base_objects = n_objects(st->list);
}

/* Move every object of @p src into @p dst as ADDED events (later ones
 * replace earlier ones of the same name); @p src is left empty. @return
 * the objects a limit refused, or -ENOMEM. */
static int stage_move(struct k8s_store *dst, struct k8s_store *src)
{
	int refused = 0, rc;
	bool nomem = false;

	HMAP_FOREACH(&src->svcs, n)
	{
		if ((rc = put_service(dst, K8S_ADDED, n->val, NULL, 0)) == -ENOMEM)
			nomem = true;
		else if (rc < 0)
			refused++;
	}
	hmap_clear(&src->svcs, NULL);
	hmap_clear(&src->ns_svcs, NULL);
	HMAP_FOREACH(&src->slices, n)
	{
		if ((rc = put_slice(dst, K8S_ADDED, n->val, NULL, 0)) == -ENOMEM)
			nomem = true;
		else if (rc < 0)
			refused++;
	}
	hmap_clear(&src->svc_slices, list_free);
	hmap_clear(&src->slices, NULL);
	src->n_addrs = 0;
	memset(src->arrays, 0, sizeof(src->arrays));
	HMAP_FOREACH(&src->nss, n)
	{
		if ((rc = put_namespace(dst, K8S_ADDED, (const char *)n->key, n->klen, NULL, 0)) ==
		    -ENOMEM)
			nomem = true;
		else if (rc < 0)
			refused++;
	}
	hmap_clear(&src->nss, NULL);
	return nomem ? -ENOMEM : refused;
}

int k8s_store_stage_page_keep(struct k8s_store_stage *st)
{
	int rc = stage_move(st->list, st->page);

	st->page->base_objects = n_objects(st->list);
	if (rc > 0)
		st->page->stats.events_rejected += (uint64_t)rc;
	return rc;
}

size_t k8s_store_stage_count(const struct k8s_store_stage *st)
{
	return own_objects(st->list) + own_objects(st->page);
}

int k8s_store_stage_commit(struct k8s_store *s, struct k8s_store_stage *st)
{
	struct k8s_store *t = st->list;
	struct hmap tmp;
	int rc = stage_move(t, st->page);
	uint64_t kept = own_objects(t);

	if (rc < 0) {
		k8s_store_stage_free(st);
		return rc;
	}
#define SWAP(field) (tmp = s->field, s->field = t->field, t->field = tmp)
	switch (st->kind) {
	case K8S_SERVICE:
		SWAP(svcs);
		SWAP(ns_svcs);
		break;
	case K8S_ENDPOINTSLICE: {
		uint64_t n = s->n_addrs;
		SWAP(slices);
		SWAP(svc_slices);
		s->n_addrs = t->n_addrs;
		t->n_addrs = n;
		break;
	}
	default:
		SWAP(nss);
	}
#undef SWAP
	uint64_t arrays = s->arrays[st->kind];
	s->arrays[st->kind] = t->arrays[st->kind];
	t->arrays[st->kind] = arrays;
	/* The next publish compares every record with the last snapshot and
	 * still shares what did not change. */
	s->all_dirty = true;
	s->stats.events_applied += kept;
	s->stats.events_rejected += st->page->stats.events_rejected + (uint64_t)rc;
	k8s_store_stage_free(st); /* and with it the objects the list replaced */
	return rc;
}

/* ------------------------------------------------- the publisher's view */

const struct k8s_service *k8s_store_service(const struct k8s_store *s, const void *key,
					    size_t klen)
{
	return hmap_get(&s->svcs, key, klen);
}

struct k8s_slice *const *k8s_store_service_slices(const struct k8s_store *s, const void *key,
						  size_t klen, uint32_t *n)
{
	const struct k8s_slice_list *l = hmap_get(&s->svc_slices, key, klen);

	*n = l ? l->n : 0;
	return l ? l->v : NULL;
}

bool k8s_store_ns_exists(const struct k8s_store *s, const void *ns, size_t len)
{
	return hmap_get(&s->nss, ns, len) || hmap_get(&s->ns_svcs, ns, len);
}

bool k8s_store_unchanged(const struct k8s_store *s)
{
	return !s->all_dirty && s->dirty_svc.n == 0 && s->dirty_ns.n == 0;
}

static int each_key(const struct hmap *m, const struct hmap *skip, k8s_store_key_fn fn, void *arg)
{
	int rc;

	HMAP_FOREACH(m, n)
	{
		if (skip && hmap_get(skip, n->key, n->klen))
			continue;
		if ((rc = fn(arg, n->key, n->klen)) < 0)
			return rc;
	}
	return 0;
}

int k8s_store_foreach_change(const struct k8s_store *s, k8s_store_key_fn on_svc,
			     k8s_store_key_fn on_ns, void *arg, bool *all)
{
	int rc;

	*all = s->all_dirty;
	if (!s->all_dirty) {
		if ((rc = each_key(&s->dirty_svc, NULL, on_svc, arg)) < 0)
			return rc;
		return each_key(&s->dirty_ns, NULL, on_ns, arg);
	}
	if ((rc = each_key(&s->svcs, NULL, on_svc, arg)) < 0 ||
	    (rc = each_key(&s->nss, NULL, on_ns, arg)) < 0)
		return rc;
	return each_key(&s->ns_svcs, &s->nss, on_ns, arg);
}

/* Empty a map of change marks; one that grew large (a load marks every
 * key) gets a fresh bucket array, as clearing and walking it cost its size. */
static void marks_clear(struct hmap *m)
{
	struct hmap fresh;

	if (m->nb <= 64 || hmap_init(&fresh, &m->key) < 0) {
		hmap_clear(m, NULL);
		return;
	}
	hmap_deinit(m, NULL);
	*m = fresh;
}

void k8s_store_changes_clear(struct k8s_store *s)
{
	marks_clear(&s->dirty_svc);
	marks_clear(&s->dirty_ns);
	s->all_dirty = false;
}

/* ------------------------------------------- decoded objects (a file) */

int k8s_store_put_service(struct k8s_store *s, struct k8s_service *svc, char *err,
			  size_t errlen)
{
	return counted(s, put_service(s, K8S_ADDED, svc, err, errlen), err, errlen);
}

int k8s_store_put_slice(struct k8s_store *s, struct k8s_slice *sl, char *err, size_t errlen)
{
	return counted(s, put_slice(s, K8S_ADDED, sl, err, errlen), err, errlen);
}

int k8s_store_put_namespace(struct k8s_store *s, const char *name, size_t len, char *err,
			    size_t errlen)
{
	return counted(s, put_namespace(s, K8S_ADDED, name, len, err, errlen), err, errlen);
}

int k8s_store_foreach_object(const struct k8s_store *s, enum k8s_kind kind,
			     k8s_store_obj_fn fn, void *arg)
{
	const struct hmap *m = kind == K8S_SERVICE	     ? &s->svcs
			       : kind == K8S_ENDPOINTSLICE ? &s->slices
							   : &s->nss;
	int rc;

	HMAP_FOREACH(m, n)
	{
		const void *obj = kind == K8S_NAMESPACE ? (const void *)n->key : n->val;
		if ((rc = fn(arg, obj, n->klen)) < 0)
			return rc;
	}
	return 0;
}

void k8s_store_take(struct k8s_store *s, struct k8s_store *from)
{
	/* Swap the object maps: s gets from's content, from the old one. */
	struct hmap tmp;
#define SWAP(field) (tmp = s->field, s->field = from->field, from->field = tmp)
	SWAP(svcs);
	SWAP(slices);
	SWAP(nss);
	SWAP(svc_slices);
	SWAP(ns_svcs);
#undef SWAP
	uint64_t n = s->n_addrs;
	s->n_addrs = from->n_addrs;
	from->n_addrs = n;
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		n = s->arrays[k];
		s->arrays[k] = from->arrays[k];
		from->arrays[k] = n;
	}
	s->all_dirty = true;
	s->stats.events_applied += from->stats.events_applied;
	k8s_store_free(from);
}

/* ------------------------------------------------------------ load file */

static int kind_of(const char *k, enum k8s_kind *out)
{
	if (!k)
		return -1;
	if (strcmp(k, "Service") == 0)
		*out = K8S_SERVICE;
	else if (strcmp(k, "EndpointSlice") == 0)
		*out = K8S_ENDPOINTSLICE;
	else if (strcmp(k, "Namespace") == 0)
		*out = K8S_NAMESPACE;
	else
		return 1;
	return 0;
}

/* Apply a List (or one object) to the fresh store @p t. */
static int load_doc(struct k8s_store *t, const json_t *doc, uint64_t *skipped, char *err,
		    size_t errlen)
{
	const json_t *items;
	const char *kind, *item_kind = NULL;
	char ikind[64];
	size_t len;
	enum k8s_kind k;
	int rc;

	if (!json_is_object(doc))
		return fail(err, errlen, "top level: not an object");
	if ((rc = k8s_objects_opt_string(doc, "kind", "kind", &kind, &len, err, errlen)) < 0)
		return rc;
	if (!kind)
		return fail(err, errlen, "kind: missing");
	if (kind_of(kind, &k) == 0) {
		return k8s_store_apply(t, k, K8S_ADDED, doc, err, errlen);
	}
	if (len < 4 || strcmp(kind + len - 4, "List") != 0)
		return fail(err, errlen, "kind: \"%.40s\" is neither a List nor a Service, "
				    "EndpointSlice or Namespace", kind);
	/* "ServiceList" from the API: its items carry no kind of their own */
	if (len > 4 && len - 4 < sizeof(ikind)) {
		memcpy(ikind, kind, len - 4);
		ikind[len - 4] = '\0';
		item_kind = ikind;
	}
	if ((rc = k8s_objects_opt_member(doc, "items", true, "items", &items, err, errlen)) < 0)
		return rc;
	for (size_t i = 0; items && i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		const char *ik = item_kind;
		char ierr[200];

		if (!json_is_object(it))
			return fail(err, errlen, "items[%zu]: not an object", i);
		rc = k8s_objects_opt_string(it, "kind", "kind", &kind, &len, ierr, sizeof(ierr));
		if (rc < 0)
			return fail(err, errlen, "items[%zu]: %s", i, ierr);
		if (kind)
			ik = kind;
		if (!ik)
			return fail(err, errlen, "items[%zu]: kind missing", i);
		rc = kind_of(ik, &k);
		if (rc > 0) {
			(*skipped)++;
			continue;
		}
		rc = k8s_store_apply(t, k, K8S_ADDED, it, ierr, sizeof(ierr));
		if (rc < 0)
			return k8s_objects_fail(rc, err, errlen, "items[%zu] (%s): %s", i, ik, ierr);
	}
	return 0;
}

int k8s_store_load_file(struct k8s_store *s, const char *path, char *err, size_t errlen)
{
	struct k8s_store *t;
	json_error_t jerr;
	uint64_t skipped = 0;
	struct stat st;
	json_t *doc;
	FILE *f;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		return k8s_objects_fail(rc, err, errlen, "%s: %s", path, strerror(-rc));
	}
	if (fstat(fileno(f), &st) == 0 && (uint64_t)st.st_size > LOAD_FILE_MAX_BYTES) {
		fclose(f);
		return k8s_objects_fail(-EFBIG, err, errlen, "%s: larger than %llu bytes", path,
			       (unsigned long long)LOAD_FILE_MAX_BYTES);
	}
	doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (!doc)
		return fail(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
	t = k8s_store_new(&s->cfg);
	if (!t) {
		json_decref(doc);
		return -ENOMEM;
	}
	rc = load_doc(t, doc, &skipped, err, errlen);
	json_decref(doc);
	if (rc < 0) {
		k8s_store_free(t);
		return rc;
	}
	k8s_store_take(s, t);
	if (skipped)
		log_info("cluster", "%s: skipped %llu objects of other kinds", path,
			 (unsigned long long)skipped);
	return 0;
}
