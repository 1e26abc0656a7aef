/* tests/fuzz/fuzz_k8s_slice_fast.c - libFuzzer target: the EndpointSlice fast path against the generic decoder.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=k8s_slice_fast for this one).
 * Reproduce a crash: build-fuzz/fuzz_k8s_slice_fast crash-<sha1>
 *
 *   input := flags line
 *   flags :  bit 0: the watch's object kind is "Service" instead of
 *            "EndpointSlice" (an event whose "kind" names it is not the
 *            slice watch's); bit 1: decode the line twice with the same
 *            buffers (what is kept from one line must not leak into the next)
 *
 * The line goes to k8s_fast_slice_event() (k8s_slice_fast.c), which either
 * decodes it or leaves it to the generic path. When it decodes it, the
 * generic path must too, to the same thing: k8s_stream_decode() accepts the
 * line, its type is ADDED, MODIFIED or DELETED (the same one), its
 * resourceVersion is the same, its object's "kind" is absent, not a string,
 * or the watch's, and k8s_objects_slice() accepts the object and gives a
 * slice equal field by field (name, namespace, service, ports, ready
 * addresses and their labels), and the decoding cost it counted from the
 * callbacks is exactly k8s_stream_json_cost() of the line, within the
 * bound. The fast path returns nothing but 0, K8S_FAST_UNHANDLED and
 * -ENOMEM.
 */
#define FUZZ_NAME "fuzz_k8s_slice_fast"
#include "cluster/k8s_objects_internal.h"
#include "cluster/k8s_slice_fast.h"
#include "nodedns/cluster/k8s_stream.h"
#include "nodedns/util/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOGL_ERROR, false);
	return 0;
}

static void same_slice(const struct k8s_slice *a, const struct k8s_slice *b)
{
	CHECK(strcmp(a->ns, b->ns) == 0);
	CHECK(strcmp(a->name, b->name) == 0);
	CHECK(strcmp(a->svc, b->svc) == 0);
	CHECK(a->n_ports == b->n_ports);
	for (uint16_t i = 0; i < a->n_ports; i++) {
		const struct k8s_port *p = &a->ports[i], *q = &b->ports[i];
		CHECK(p->port == q->port && p->proto == q->proto && p->name_len == q->name_len);
		CHECK(memcmp(p->name, q->name, p->name_len) == 0);
	}
	CHECK(a->n_addrs == b->n_addrs);
	for (uint32_t i = 0; i < a->n_addrs; i++) {
		char la[K8S_LABEL_MAX], lb[K8S_LABEL_MAX];
		uint8_t na, nb;
		const char *x = k8s_objects_addr_label(a, &a->addrs[i], la, &na);
		const char *y = k8s_objects_addr_label(b, &b->addrs[i], lb, &nb);
		CHECK(a->addrs[i].ip.fam == b->addrs[i].ip.fam);
		CHECK(memcmp(a->addrs[i].ip.b, b->addrs[i].ip.b, sizeof(a->addrs[i].ip.b)) == 0);
		CHECK(na == nb && memcmp(x, y, na) == 0);
	}
}

/* The generic path on @p line: it must accept it as the fast path did. */
static void check_generic(const char *line, size_t len, const char *obj_kind, enum k8s_event fev,
			  const char *frv, const struct k8s_slice *fsl)
{
	struct k8s_stream_event ev;
	char err[200];
	int rc = k8s_stream_decode(line, len, &ev, err, sizeof(err));

	if (rc != 0)
		fprintf(stderr, FUZZ_NAME ": generic decode: %s\n", err);
	CHECK(rc == 0);
	enum k8s_event gev = ev.type == K8S_EV_ADDED	  ? K8S_ADDED
			     : ev.type == K8S_EV_MODIFIED ? K8S_MODIFIED
							  : K8S_DELETED;
	CHECK(ev.type == K8S_EV_ADDED || ev.type == K8S_EV_MODIFIED || ev.type == K8S_EV_DELETED);
	CHECK(gev == fev);
	CHECK(strcmp(ev.rv, frv) == 0);
	const char *kind = json_string_value(json_object_get(ev.object, "kind"));
	CHECK(!kind || strcmp(kind, obj_kind) == 0);
	struct k8s_slice *sl = calloc(1, sizeof(*sl));
	CHECK(sl);
	rc = k8s_objects_slice(ev.object, gev == K8S_DELETED, sl, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, FUZZ_NAME ": generic slice: %s\n", err);
	CHECK(rc == 0);
	same_slice(fsl, sl);
	k8s_objects_slice_free(sl);
	k8s_stream_event_clear(&ev);
}

static void one(struct k8s_fast *c, const char *line, size_t len, const char *obj_kind)
{
	struct k8s_slice *sl = calloc(1, sizeof(*sl));
	enum k8s_event ev = K8S_ADDED;
	char rv[K8S_RV_MAX];

	CHECK(sl);
	int rc = k8s_fast_slice_event(c, line, len, obj_kind, &ev, rv, sl);
	CHECK(rc == 0 || rc == K8S_FAST_UNHANDLED || rc == -ENOMEM);
	if (rc == 0) {
		/* the cost counted from the callbacks is the text scan's */
		size_t cost = k8s_stream_json_cost(line, len);
		CHECK(c->cost == cost && k8s_stream_cost_ok(cost, len));
		check_generic(line, len, obj_kind, ev, rv, sl);
	}
	else
		CHECK(rv[0] == '\0');
	k8s_objects_slice_free(sl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct k8s_fast c;

	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	const char *line = (const char *)data + 1;
	size_t len = size - 1;
	const char *obj_kind = (flags & 1) ? "Service" : "EndpointSlice";

	/* Unterminated, as k8s_stream_feed() hands lines over. */
	char *copy = malloc(len ? len : 1);
	CHECK(copy);
	memcpy(copy, line, len);
	one(&c, copy, len, obj_kind);
	if (flags & 2)
		one(&c, copy, len, obj_kind);
	free(copy);
	if (flags & 4)
		k8s_fast_deinit(&c);
	return 0;
}
