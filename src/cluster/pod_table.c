/* src/cluster/pod_table.c - the node's pods by IP: immutable, reference-counted. */
#include "nodedns/cluster/pod_table.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/util/hash.h"

struct slot {
	uint8_t fam; /* 0: empty */
	uint8_t b[16];
	uint8_t ns[1 + POD_LABEL_MAX]; /* wire label; ns[0] == 0: ambiguous */
};

struct pod_table {
	_Atomic unsigned refs;
	size_t n, mask;
	struct hash_key key;
	struct slot slots[];
};

static size_t ip_len(uint8_t fam)
{
	return fam == 4 ? 4 : 16;
}

static size_t slot_of(const struct pod_table *t, uint8_t fam, const uint8_t *b)
{
	uint8_t k[17];
	k[0] = fam;
	memcpy(k + 1, b, ip_len(fam));
	return (size_t)hash_bytes(&t->key, k, 1 + ip_len(fam)) & t->mask;
}

static struct slot *find(const struct pod_table *t, uint8_t fam, const uint8_t *b)
{
	size_t i = slot_of(t, fam, b);
	for (;;) {
		const struct slot *s = &t->slots[i];
		if (s->fam == 0)
			return (struct slot *)s; /* the free slot it would go to */
		if (s->fam == fam && memcmp(s->b, b, ip_len(fam)) == 0)
			return (struct slot *)s;
		i = (i + 1) & t->mask;
	}
}

struct pod_table *pod_table_new(const struct pod_table_pair *pairs, size_t n)
{
	size_t cap = 8;
	while (cap < 2 * n)
		cap *= 2;
	struct pod_table *t = calloc(1, sizeof(*t) + cap * sizeof(struct slot));
	if (!t)
		return NULL;
	atomic_init(&t->refs, 1);
	t->mask = cap - 1;
	hash_key_random(&t->key);
	for (size_t i = 0; i < n; i++) {
		const struct pod_table_pair *p = &pairs[i];
		size_t nslen = strlen(p->ns);
		if ((p->ip.fam != 4 && p->ip.fam != 6) || nslen == 0 || nslen > POD_LABEL_MAX)
			continue;
		struct slot *s = find(t, p->ip.fam, p->ip.b);
		if (s->fam) {
			/* Claimed twice: the same namespace is still an answer. */
			if (s->ns[0] != nslen || memcmp(s->ns + 1, p->ns, nslen) != 0)
				s->ns[0] = 0;
			continue;
		}
		s->fam = p->ip.fam;
		memcpy(s->b, p->ip.b, ip_len(p->ip.fam));
		s->ns[0] = (uint8_t)nslen;
		memcpy(s->ns + 1, p->ns, nslen);
		t->n++;
	}
	return t;
}

void pod_table_ref(struct pod_table *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void pod_table_unref(struct pod_table *t)
{
	if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
		free(t);
}

const uint8_t *pod_table_lookup(const struct pod_table *t, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *b;
	uint8_t fam;
	if (!t || t->n == 0)
		return NULL;
	if (sa->sa_family == AF_INET) {
		fam = 4;
		b = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		b = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		fam = 6;
		if (memcmp(b, mapped, sizeof(mapped)) == 0) {
			fam = 4;
			b += 12;
		}
	} else {
		return NULL;
	}
	const struct slot *s = find(t, fam, b);
	return s->fam && s->ns[0] ? s->ns : NULL;
}

size_t pod_table_count(const struct pod_table *t)
{
	return t ? t->n : 0;
}
