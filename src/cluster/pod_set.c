/* src/cluster/pod_set.c - the control thread's set of the node's pods. */
#include "nodedns/cluster/pod_set.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/util/hashmap.h"
#include "nodedns/util/metrics.h"

struct pod_set {
	struct hmap pods; /* "<ns>/<name>" -> struct pod_object * */
	char *node;
	struct pod_set_stats stats;
};

static void set_gauge(_Atomic uint64_t *g, uint64_t v)
{
	atomic_store_explicit(g, v, memory_order_relaxed);
}

struct pod_set *pod_set_new(const char *node)
{
	struct pod_set *s = calloc(1, sizeof(*s));
	struct hash_key key;
	if (!s)
		return NULL;
	hash_key_random(&key);
	if (hmap_init(&s->pods, &key) < 0 || (node && !(s->node = strdup(node)))) {
		pod_set_free(s);
		return NULL;
	}
	return s;
}

void pod_set_free(struct pod_set *s)
{
	if (!s)
		return;
	hmap_deinit(&s->pods, free);
	free(s->node);
	free(s);
}

static void count(struct pod_set *s)
{
	uint64_t eligible = 0;
	HMAP_FOREACH(&s->pods, node) {
		const struct pod_object *p = node->val;
		eligible += p->verdict == POD_ELIGIBLE;
	}
	set_gauge(&s->stats.pods, hmap_count(&s->pods));
	set_gauge(&s->stats.eligible, eligible);
}

int pod_set_apply(struct pod_set *s, bool deleted, const json_t *obj, char *err, size_t errlen)
{
	struct pod_object *p = malloc(sizeof(*p));
	char key[POD_KEY_MAX];
	void *old = NULL;
	int rc;
	if (!p)
		return -ENOMEM;
	if ((rc = pod_object_decode(obj, s->node, p, err, errlen)) < 0) {
		atomic_fetch_add_explicit(&s->stats.rejected, 1, memory_order_relaxed);
		free(p);
		return rc;
	}
	size_t klen = pod_object_key(p, key);
	/* A pod of another node is one to forget, not to keep. */
	if (deleted || p->verdict == POD_OTHER_NODE) {
		free(hmap_del(&s->pods, key, klen, NULL));
		free(p);
		count(s);
		return 0;
	}
	if (hmap_count(&s->pods) >= POD_SET_MAX && !hmap_get(&s->pods, key, klen)) {
		free(p);
		return -E2BIG;
	}
	if ((rc = hmap_put(&s->pods, key, klen, p, &old)) < 0) {
		free(p);
		return rc;
	}
	free(old);
	count(s);
	return 0;
}

void pod_set_clear(struct pod_set *s)
{
	hmap_clear(&s->pods, free);
	count(s);
}

struct pod_table *pod_set_build(struct pod_set *s)
{
	size_t n = 0, i = 0;
	HMAP_FOREACH(&s->pods, node) {
		const struct pod_object *p = node->val;
		if (p->verdict == POD_ELIGIBLE)
			n += p->nips;
	}
	struct pod_table_pair *pairs = calloc(n ? n : 1, sizeof(*pairs));
	if (!pairs)
		return NULL;
	HMAP_FOREACH(&s->pods, node) {
		const struct pod_object *p = node->val;
		if (p->verdict != POD_ELIGIBLE)
			continue;
		for (unsigned k = 0; k < p->nips; k++) {
			pairs[i].ip = p->ips[k];
			pairs[i].ns = p->ns;
			i++;
		}
	}
	struct pod_table *t = pod_table_new(pairs, n);
	free(pairs);
	if (t)
		set_gauge(&s->stats.addresses, pod_table_count(t));
	return t;
}

const struct pod_set_stats *pod_set_stats(const struct pod_set *s)
{
	return &s->stats;
}

void pod_set_metrics_render(struct mbuf *b, const struct pod_set_stats *st)
{
	metrics_gauge(b, "nodedns_autopath_pods", "Pods of this node known to autopath.",
		      (int64_t)atomic_load_explicit(&st->pods, memory_order_relaxed));
	metrics_gauge(b, "nodedns_autopath_pods_eligible",
		      "Pods of this node whose queries autopath answers.",
		      (int64_t)atomic_load_explicit(&st->eligible, memory_order_relaxed));
	metrics_gauge(b, "nodedns_autopath_pod_addresses",
		      "Pod addresses in the table the workers read.",
		      (int64_t)atomic_load_explicit(&st->addresses, memory_order_relaxed));
	metrics_counter(b, "nodedns_autopath_pods_rejected_total",
			"Pod objects from the API that did not decode.",
			atomic_load_explicit(&st->rejected, memory_order_relaxed));
}
