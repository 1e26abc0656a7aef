/* bench/cluster/publish_bench.c - CPU of one EndpointSlice change inside the store and publisher.
 *
 *   publish_bench FILE [CHANGES]
 *
 * Loads FILE (Services, EndpointSlices and Namespaces, one JSON object a
 * line, as `gen.py --lines` writes them) into a store object by object,
 * publishes it once, then applies CHANGES
 * MODIFIED events to slices of the list (each replaces one endpoint's
 * address, so every change is DNS-visible) and publishes after each. Prints
 * one JSON line: the first publish, and the medians over rounds of 200
 * changes of the decode+apply and publish times per change, in
 * microseconds. Decode+apply is what the watch does with an EndpointSlice
 * event's line (k8s_store_apply_line: parsing the JSON included). What it
 * leaves out (TLS, HTTP, splitting the stream into lines, the hand-over to
 * the workers) is what bench/cluster's end-to-end CPU figure adds.
 */
#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/k8s_store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUND 200
#define MAX_SLICES 4096

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* CPU, not wall time: the machine may be shared */
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), dcmp);
	return n ? v[n / 2] : 0;
}

int main(int argc, char **argv)
{
	char err[256];
	json_error_t je;
	json_t *slices[MAX_SLICES];
	size_t nsl = 0, changes = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
	size_t rounds = changes / ROUND ? changes / ROUND : 1;
	double *ap = calloc(rounds, sizeof(double)), *pp = calloc(rounds, sizeof(double));
	struct k8s_store *s = k8s_store_new(NULL);
	struct cluster_publisher *pub = cluster_publisher_new();
	struct cluster_snapshot *snap;

	if (argc < 2 || !ap || !pp || !s || !pub) {
		fprintf(stderr, "usage: publish_bench FILE [CHANGES]\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "r");
	char *line = NULL;
	size_t cap = 0, seen = 0;
	ssize_t len;
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	while ((len = getline(&line, &cap, f)) > 0) {
		json_t *it = json_loadb(line, (size_t)len, 0, &je);
		const char *k = json_string_value(json_object_get(it, "kind"));
		enum k8s_kind kind = !k ? K8S_KIND_COUNT
				     : strcmp(k, "Service") == 0	? K8S_SERVICE
				     : strcmp(k, "EndpointSlice") == 0 ? K8S_ENDPOINTSLICE
				     : strcmp(k, "Namespace") == 0	? K8S_NAMESPACE
									: K8S_KIND_COUNT;
		if (kind == K8S_KIND_COUNT ||
		    k8s_store_apply(s, kind, K8S_ADDED, it, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s: bad object: %s\n", argv[1], it ? err : je.text);
			return 1;
		}
		/* keep a spread of slices with endpoints to change */
		if (kind == K8S_ENDPOINTSLICE && json_array_size(json_object_get(it, "endpoints")) &&
		    seen++ % 7 == 0) {
			if (nsl < MAX_SLICES)
				slices[nsl++] = it;
			else
				json_decref(slices[seen % MAX_SLICES]), slices[seen % MAX_SLICES] = it;
			continue;
		}
		json_decref(it);
	}
	free(line);
	fclose(f);
	double t0 = now_us();
	snap = cluster_publisher_publish(pub, s);
	double first = now_us() - t0;
	if (!nsl) {
		fprintf(stderr, "no EndpointSlice with endpoints in %s\n", argv[1]);
		return 1;
	}
	for (size_t r = 0, c = 0; r < rounds; r++) {
		double ta = 0, tp = 0;
		for (size_t k = 0; k < ROUND; k++, c++) {
			json_t *sl = slices[c % nsl];
			json_t *eps = json_object_get(sl, "endpoints");
			json_t *ep = json_array_get(eps, c % json_array_size(eps));
			char ip[32];
			snprintf(ip, sizeof(ip), "10.%zu.%zu.%zu", 200 + c / 62500 % 50, c / 250 % 250,
				 c % 250 + 1);
			json_array_set_new(json_object_get(ep, "addresses"), 0, json_string(ip));
			/* The watch event's line, as the API server would send it. */
			json_t *evj = json_pack("{s:s, s:O}", "type", "MODIFIED", "object", sl);
			char *ev = evj ? json_dumps(evj, JSON_COMPACT) : NULL;
			json_decref(evj);
			if (!ev)
				return 1;
			enum k8s_event kind;
			char rv[K8S_RV_MAX];
			double a = now_us();
			int rc = k8s_store_apply_line(s, K8S_ENDPOINTSLICE, "EndpointSlice", ev,
						      strlen(ev), &kind, rv, err, sizeof(err));
			double b = now_us();
			free(ev);
			if (rc != 0) {
				fprintf(stderr, "apply: %d %s\n", rc, err);
				return 1;
			}
			struct cluster_snapshot *next = cluster_publisher_publish(pub, s);
			double e = now_us();
			if (!next)
				return 1;
			cluster_snapshot_unref(snap);
			snap = next;
			ta += b - a;
			tp += e - b;
		}
		ap[r] = ta / ROUND;
		pp[r] = tp / ROUND;
	}
	printf("{\"first_publish_us\": %.0f, \"apply_us\": %.1f, \"publish_us\": %.1f, "
	       "\"changes\": %zu}\n", first, median(ap, rounds), median(pp, rounds), rounds * ROUND);
	cluster_snapshot_unref(snap);
	cluster_publisher_free(pub);
	k8s_store_free(s);
	for (size_t i = 0; i < nsl; i++)
		json_decref(slices[i]);
	free(ap);
	free(pp);
	return 0;
}
