/* tests/fuzz/fuzz_k8s_stream.c - libFuzzer target for the watch stream decoder.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=k8s_stream for this one).
 * Reproduce a crash: build-fuzz/fuzz_k8s_stream crash-<sha1>
 *
 *   input := seed opts stream-bytes
 *   seed  :  chunk sizes (1 to 2^k bytes, k from the seed) and publish points
 *   opts  :  bits 0-1 max_line_bytes (64, 512, 4096, 1 MiB), bits 2-3 the
 *            resource the stream belongs to (Service, EndpointSlice,
 *            Namespace; 3 rotates on every ERROR), bit 4 pod records
 *
 * The stream bytes go to k8s_stream_feed() in chunks split at positions
 * derived from the seed, twice:
 *  1. with a callback that only collects lines: they must be exactly the
 *     lines of a reference splitter run on the whole input (split at '\n',
 *     one trailing '\r' removed, empty ones skipped, longer than
 *     max_line_bytes dropped and counted), whatever the chunking;
 *  2. as k8s_watch.c uses it: each line offered to the store's fast path
 *     (k8s_store_apply_line: what it takes must decode the generic way to
 *     the same event and rv), then through k8s_stream_decode(), each
 *     ADDED/MODIFIED/DELETED object the fast path did not take applied to a
 *     real k8s_store (k8s_store_apply) unless its "kind" names another
 *     resource, an ERROR
 *     ends the response (k8s_stream_reset(), the next bytes are a new one).
 *     Snapshots are published along the way and kept while the store
 *     changes, then asked about the objects seen (fuzz_cluster.h), old ones
 *     included. At the end every kind is cleared and the last snapshot must
 *     answer NXDOMAIN for every name it was asked before.
 *  3. as a list response: through k8s_stream_list_feed() in those chunks and
 *     in one piece; the items (each within max_line_bytes and the cost
 *     bound, with the cost k8s_stream_json_cost() gives) and the shell must
 *     be the same either way.
 */
#define FUZZ_NAME "fuzz_k8s_stream"
#include "nodedns/cluster/k8s_stream.h"
#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/util/log.h"

#include "fuzz_cluster.h"

#include <errno.h>

#define MAX_LINES 4096

static const size_t line_limits[4] = { 64, 512, 4096, 1u << 20 };
static const char *const kind_names[K8S_KIND_COUNT] = { "Service", "EndpointSlice",
							 "Namespace" };

/* ---------------------------------------------------------- chunking */

struct chunker {
	const uint8_t *p;
	size_t left;
	uint32_t state;
	unsigned bits;
};

static size_t next_chunk(struct chunker *c)
{
	c->state = c->state * 1103515245u + 12345u;
	size_t n = 1 + ((c->state >> 8) & ((1u << c->bits) - 1));
	return n < c->left ? n : c->left;
}

/* --------------------------------------------- pass 1: framing only */

struct lines {
	size_t n;
	struct {
		size_t len;
		uint32_t hash;
	} v[MAX_LINES];
	size_t max_line;
	bool overflow;
};

static uint32_t fnv(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

static int collect(void *arg, const char *line, size_t len)
{
	struct lines *l = arg;
	CHECK(len >= 1 && len <= l->max_line);
	CHECK(memchr(line, '\n', len) == NULL);
	if (l->n >= MAX_LINES) {
		l->overflow = true;
		return 0;
	}
	l->v[l->n].len = len;
	l->v[l->n].hash = fnv(line, len);
	l->n++;
	return 0;
}

/* The reference: what the stream must deliver for @p data as a whole. */
static void reference(const char *data, size_t size, size_t max_line, struct lines *ref,
		      uint64_t *total, uint64_t *oversized)
{
	size_t start = 0;
	*total = *oversized = 0;
	ref->n = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i == size) {
			/* a trailing partial line: counted once it cannot fit */
			if (size - start > max_line + 1)
				(*oversized)++;
			break;
		}
		if (data[i] != '\n')
			continue;
		size_t len = i - start;
		if (len > 0 && data[start + len - 1] == '\r')
			len--;
		if (len > max_line) {
			(*oversized)++;
		} else if (len > 0) {
			(*total)++;
			if (ref->n < MAX_LINES) {
				ref->v[ref->n].len = len;
				ref->v[ref->n].hash = fnv(data + start, len);
				ref->n++;
			} else {
				ref->overflow = true;
			}
		}
		start = i + 1;
	}
}

static struct lines g_got, g_ref;

static void pass_framing(const uint8_t *data, size_t size, uint32_t seed, size_t max_line)
{
	struct k8s_stream s;
	k8s_stream_init(&s, max_line);
	g_got.n = 0;
	g_got.max_line = max_line;
	g_got.overflow = false;
	struct chunker c = { data, size, seed, 1 + (seed & 0x0f) };
	while (c.left) {
		size_t n = next_chunk(&c);
		CHECK(k8s_stream_feed(&s, (const char *)c.p, n, collect, &g_got) == 0);
		c.p += n;
		c.left -= n;
	}
	CHECK(k8s_stream_feed(&s, NULL, 0, collect, &g_got) == 0);

	uint64_t total, oversized;
	g_ref.overflow = false;
	reference((const char *)data, size, max_line, &g_ref, &total, &oversized);
	CHECK(g_got.overflow == g_ref.overflow);
	CHECK(g_got.n == g_ref.n);
	for (size_t i = 0; i < g_ref.n; i++) {
		CHECK(g_got.v[i].len == g_ref.v[i].len);
		CHECK(g_got.v[i].hash == g_ref.v[i].hash);
	}
	CHECK(s.lines == total);
	CHECK(s.oversized == oversized);
	k8s_stream_deinit(&s);
}

/* ------------------------------------------- pass 2: decode and apply */

#define MAX_SNAPS 3
#define MAX_PUBLISHES 6 /* per input, besides the last one */

struct watch {
	struct k8s_store *store;
	struct cluster_publisher *pub; /* publishes store */
	struct cluster_config cfg;
	enum k8s_kind kind;
	bool rotate;
	uint32_t seed;
	unsigned events, publishes;
	struct fc_names names;
	struct cluster_snapshot *snaps[MAX_SNAPS]; /* oldest first */
	size_t nsnaps;
};

static void publish(struct watch *w)
{
	struct cluster_snapshot *snap = cluster_publisher_publish(w->pub, w->store);
	CHECK(snap);
	if (w->nsnaps == MAX_SNAPS) {
		cluster_snapshot_unref(w->snaps[0]);
		memmove(w->snaps, w->snaps + 1, (MAX_SNAPS - 1) * sizeof(w->snaps[0]));
		w->nsnaps--;
	}
	w->snaps[w->nsnaps++] = snap;
	/* The oldest snapshot kept still answers from what it shares. */
	fc_probe(snap, &w->cfg, &w->names, false);
	if (w->nsnaps > 1)
		fc_probe(w->snaps[0], &w->cfg, &w->names, false);
}

static int on_line(void *arg, const char *line, size_t len)
{
	struct watch *w = arg;
	struct k8s_stream_event ev;
	char err[200];
	/* k8s_watch.c offers the line to the store's fast path first; what it
	 * takes (never a line over the cost bound), the generic decoding below
	 * must accept as the same event, and is not applied a second time. */
	bool cost_ok = k8s_stream_cost_ok(k8s_stream_json_cost(line, len), len);
	enum k8s_event fev = K8S_ADDED;
	char frv[K8S_RV_MAX];
	int frc = k8s_store_apply_line(w->store, w->kind, kind_names[w->kind], line, len, &fev,
				       frv, err, sizeof(err));
	CHECK(frc == K8S_LINE_UNHANDLED || frc == 0 || frc == -EINVAL || frc == -ENOSPC);
	CHECK(frc != K8S_LINE_UNHANDLED || frv[0] == '\0');
	CHECK(frc == K8S_LINE_UNHANDLED || cost_ok);
	int rc = k8s_stream_decode(line, len, &ev, err, sizeof(err));
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK(frc == K8S_LINE_UNHANDLED || rc == 0);
	if (rc < 0) {
		CHECK(ev.root == NULL && ev.object == NULL);
		CHECK(strlen(err) < sizeof(err));
		k8s_stream_event_clear(&ev);
		return 0;
	}
	CHECK(ev.root && json_is_object(ev.object));
	CHECK(ev.rv[0] == '\0' || k8s_rv_valid(ev.rv));
	CHECK(strcmp(k8s_ev_type_name(ev.type), "?") != 0);
	int stop = 0;
	switch (ev.type) {
	case K8S_EV_ADDED:
	case K8S_EV_MODIFIED:
	case K8S_EV_DELETED: {
		const char *kind = json_string_value(json_object_get(ev.object, "kind"));
		CHECK(frc == K8S_LINE_UNHANDLED || !kind || strcmp(kind, kind_names[w->kind]) == 0);
		if (kind && strcmp(kind, kind_names[w->kind]) != 0)
			break; /* k8s_watch.c skips an object of another kind */
		enum k8s_event e = ev.type == K8S_EV_ADDED	? K8S_ADDED
				   : ev.type == K8S_EV_MODIFIED ? K8S_MODIFIED
								: K8S_DELETED;
		if (frc != K8S_LINE_UNHANDLED) {
			CHECK(fev == e && strcmp(frv, ev.rv) == 0);
			rc = frc;
		} else {
			err[0] = '\0';
			rc = k8s_store_apply(w->store, w->kind, e, ev.object, err, sizeof(err));
		}
		CHECK(rc == 0 || rc == -EINVAL || rc == -ENOSPC);
		CHECK(rc == 0 || err[0] != '\0');
		if (rc == 0 && e != K8S_DELETED)
			fc_add(&w->names, w->kind, ev.object);
		break;
	}
	case K8S_EV_BOOKMARK:
		CHECK(frc == K8S_LINE_UNHANDLED);
		CHECK(k8s_rv_valid(ev.rv));
		break;
	case K8S_EV_ERROR:
		CHECK(frc == K8S_LINE_UNHANDLED);
		CHECK(ev.code >= 0 && ev.code <= 999);
		CHECK(strlen(ev.reason) < K8S_REASON_MAX);
		for (const char *c = ev.reason; *c; c++)
			CHECK(*c >= 0x20 && *c < 0x7f);
		(void)k8s_stream_event_is_expired(&ev);
		stop = 1; /* relist: this response ends */
		break;
	}
	k8s_stream_event_clear(&ev);
	CHECK(ev.root == NULL);
	/* A publish every few events, at points the seed picks. */
	w->events++;
	if (w->publishes < MAX_PUBLISHES && ((w->seed >> (w->events % 29)) & 1) &&
	    w->events % 3 == 0) {
		w->publishes++;
		publish(w);
	}
	return stop;
}

static void pass_watch(const uint8_t *data, size_t size, uint32_t seed, size_t max_line,
		       uint8_t opts)
{
	struct watch w;
	memset(&w, 0, sizeof(w));
	strcpy(w.cfg.domain, "cluster.local");
	w.cfg.ttl_s = 5;
	w.cfg.pods_insecure = opts & 0x10;
	w.store = k8s_store_new(&w.cfg);
	w.pub = cluster_publisher_new();
	CHECK(w.store && w.pub);
	unsigned k = (opts >> 2) & 3;
	w.rotate = k == 3;
	w.kind = w.rotate ? K8S_SERVICE : (enum k8s_kind)k;
	w.seed = seed;

	struct k8s_stream s;
	k8s_stream_init(&s, max_line);
	struct chunker c = { data, size, seed ^ 0x5bd1e995u, 1 + ((seed >> 4) & 0x0f) };
	while (c.left) {
		size_t n = next_chunk(&c);
		int rc = k8s_stream_feed(&s, (const char *)c.p, n, on_line, &w);
		CHECK(rc == 0 || rc == 1);
		if (rc == 1) {
			/* ERROR: the watch ends; the rest is a new response,
			 * for the next resource when rotating. */
			k8s_stream_reset(&s);
			if (w.rotate)
				w.kind = (enum k8s_kind)((w.kind + 1) % K8S_KIND_COUNT);
		}
		c.p += n;
		c.left -= n;
	}
	k8s_stream_deinit(&s);

	publish(&w);
	struct k8s_store_stats st;
	k8s_store_get_stats(w.store, &st);
	CHECK(st.services + st.endpointslices + st.namespaces <= st.events_applied);

	/* A relist of every kind to nothing: the names are all gone. */
	for (int kk = 0; kk < K8S_KIND_COUNT; kk++)
		k8s_store_clear_kind(w.store, (enum k8s_kind)kk);
	struct cluster_snapshot *empty = cluster_publisher_publish(w.pub, w.store);
	CHECK(empty);
	fc_probe(empty, &w.cfg, &w.names, true);
	for (size_t i = 0; i < w.nsnaps; i++)
		fc_probe(w.snaps[i], &w.cfg, &w.names, false);
	cluster_publisher_free(w.pub);
	k8s_store_free(w.store); /* snapshots outlive their store and publisher */
	fc_probe(empty, &w.cfg, &w.names, true);
	cluster_snapshot_unref(empty);
	for (size_t i = 0; i < w.nsnaps; i++)
		cluster_snapshot_unref(w.snaps[i]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOGL_ERROR, false);
	return 0;
}

/* ------------------------------------------------ pass 3: list split */

static int item_cb(void *arg, const char *text, size_t len, size_t cost)
{
	struct lines *l = arg;
	if (cost != k8s_stream_json_cost(text, len) || !k8s_stream_cost_ok(cost, len) ||
	    len > l->max_line)
		__builtin_trap();
	if (l->n < MAX_LINES) {
		l->v[l->n].len = len;
		l->v[l->n].hash = fnv(text, len);
		l->n++;
	}
	return 0;
}

static void split_once(const uint8_t *p, size_t n, uint32_t seed, size_t max_item,
		       bool chunked, struct lines *out, uint32_t *shell_hash, size_t *shell_len)
{
	struct k8s_stream_list s;
	struct chunker c = { p, n, seed, 1 + (seed >> 28) };
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->max_line = max_item;
	k8s_stream_list_init(&s, max_item, 4096);
	while (c.left && rc == 0) {
		size_t k = chunked ? next_chunk(&c) : c.left;
		rc = k8s_stream_list_feed(&s, (const char *)c.p, k, item_cb, out);
		c.p += k;
		c.left -= k;
	}
	const char *sh = k8s_stream_list_shell(&s, shell_len);
	if (*shell_len > 4096)
		__builtin_trap();
	*shell_hash = rc == 0 && sh ? fnv(sh, *shell_len) : (uint32_t)rc;
	k8s_stream_list_deinit(&s);
}

static struct lines split_a, split_b;

static void pass_list(const uint8_t *p, size_t n, uint32_t seed, size_t max_item)
{
	uint32_t ha, hb;
	size_t la, lb;

	split_once(p, n, seed, max_item, true, &split_a, &ha, &la);
	split_once(p, n, seed, max_item, false, &split_b, &hb, &lb);
	if (split_a.n != split_b.n || ha != hb || la != lb)
		__builtin_trap();
	for (size_t i = 0; i < split_a.n && i < MAX_LINES; i++)
		if (split_a.v[i].len != split_b.v[i].len || split_a.v[i].hash != split_b.v[i].hash)
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint32_t seed = (uint32_t)data[0] * 0x9e3779b1u + (uint32_t)size;
	uint8_t opts = data[1];
	size_t max_line = line_limits[opts & 3];
	pass_framing(data + 2, size - 2, seed, max_line);
	pass_watch(data + 2, size - 2, seed, max_line, opts);
	pass_list(data + 2, size - 2, seed, max_line);
	return 0;
}
