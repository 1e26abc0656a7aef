/* tests/fuzz/fuzz_pods.c - libFuzzer target for the autopath Pod decoder, set and table.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=pods for this one).
 * Reproduce a crash: build-fuzz/fuzz_pods crash-<sha1>
 *
 *   input := record*
 *   record:= ctl json-value            (values read one after the other)
 *   ctl   :  bit 0 the event is DELETED; bit 1 clear the set first (a
 *            relist); bit 2 build the table and look up every address seen;
 *            bit 3 decode for node "n1" (else any node)
 *
 * Checked: decode returns 0 or -EINVAL with a reason; a decoded pod has a
 * namespace that is a DNS label, at most POD_MAX_IPS addresses of family 4
 * or 6, a known verdict; a table of one eligible pod's addresses finds its
 * namespace at each of them; the set's apply returns 0, -EINVAL, -E2BIG or
 * -ENOMEM; every lookup in a built table is NULL or a well-formed label;
 * the set's gauges never exceed POD_SET_MAX.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/cluster/pod_object.h"
#include "nodedns/cluster/pod_set.h"
#include "nodedns/cluster/pod_table.h"

#define SEEN_MAX 64

static struct pod_ip g_seen[SEEN_MAX];
static size_t g_nseen;

static void label_ok(const uint8_t *l)
{
	if (!l)
		return;
	if (l[0] == 0 || l[0] > POD_LABEL_MAX)
		abort();
	for (unsigned i = 1; i <= l[0]; i++)
		if (!((l[i] >= 'a' && l[i] <= 'z') || (l[i] >= '0' && l[i] <= '9') || l[i] == '-'))
			abort();
}

static const uint8_t *lookup(const struct pod_table *t, const struct pod_ip *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (ip->fam == 4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, ip->b, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, ip->b, 16);
	}
	return pod_table_lookup(t, (const struct sockaddr *)&ss);
}

static void check_decoded(const struct pod_object *p)
{
	size_t n = strlen(p->ns);
	if (n == 0 || n > POD_LABEL_MAX || strlen(p->name) == 0 || p->nips > POD_MAX_IPS ||
	    p->verdict > POD_OTHER_NODE)
		abort();
	struct pod_table_pair pairs[POD_MAX_IPS];
	for (unsigned i = 0; i < p->nips; i++) {
		if (p->ips[i].fam != 4 && p->ips[i].fam != 6)
			abort();
		pairs[i].ip = p->ips[i];
		pairs[i].ns = p->ns;
		if (g_nseen < SEEN_MAX)
			g_seen[g_nseen++] = p->ips[i];
	}
	/* Alone in a table, the pod is found at each of its addresses. An
	 * IPv4-mapped IPv6 address is the IPv4 one (it may collide with it). */
	struct pod_table *t = pod_table_new(pairs, p->nips);
	if (!t)
		return;
	for (unsigned i = 0; i < p->nips; i++) {
		const uint8_t *l = lookup(t, &p->ips[i]);
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		bool is_mapped = p->ips[i].fam == 6 && memcmp(p->ips[i].b, mapped, 12) == 0;
		if (!is_mapped && (!l || l[0] != n || memcmp(l + 1, p->ns, n) != 0))
			abort();
		label_ok(l);
	}
	pod_table_unref(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pod_set *set = pod_set_new(NULL);
	struct pod_set *set_n1 = pod_set_new("n1");
	if (!set || !set_n1)
		abort();
	g_nseen = 0;
	size_t off = 0;
	while (off + 1 < size) {
		uint8_t ctl = data[off++];
		json_error_t jerr;
		json_t *v = json_loadb((const char *)data + off, size - off,
				       JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);
		if (!v)
			break;
		off += jerr.position > 0 ? (size_t)jerr.position : size - off;
		const char *node = (ctl & 8) ? "n1" : NULL;
		struct pod_set *s = (ctl & 8) ? set_n1 : set;
		struct pod_object p;
		char err[200] = "";
		int rc = pod_object_decode(v, node, &p, err, sizeof(err));
		if (rc == 0)
			check_decoded(&p);
		else if (rc != -EINVAL || err[0] == '\0')
			abort();
		if (ctl & 2)
			pod_set_clear(s);
		err[0] = '\0';
		rc = pod_set_apply(s, (ctl & 1) != 0, v, err, sizeof(err));
		if (rc != 0 && rc != -EINVAL && rc != -E2BIG && rc != -ENOMEM)
			abort();
		json_decref(v);
		const struct pod_set_stats *st = pod_set_stats(s);
		if (st->pods > POD_SET_MAX || st->eligible > st->pods)
			abort();
		if (ctl & 4) {
			struct pod_table *t = pod_set_build(s);
			for (size_t i = 0; t && i < g_nseen; i++)
				label_ok(lookup(t, &g_seen[i]));
			pod_table_unref(t);
		}
	}
	pod_set_free(set);
	pod_set_free(set_n1);
	return 0;
}
