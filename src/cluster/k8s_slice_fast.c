/* src/cluster/k8s_slice_fast.c - an EndpointSlice watch event decoded without a JSON tree.
 *
 * The common watch event, an EndpointSlice ADDED, MODIFIED or DELETED, is
 * decoded here with yajl's callback parser straight into a struct k8s_slice:
 * no tree, a handful of allocations instead of one per JSON value, and a
 * tokenizer several times faster than building jansson's tree (a 10-endpoint
 * slice, 3.3 KB: ~17 us against ~105 us; 100 endpoints, 26 KB: ~140 us
 * against ~880 us).
 *
 * This path only ever says "the same as the generic path" or "not mine":
 * the generic path (k8s_stream_decode() and k8s_objects_slice(), jansson)
 * stays the reference. Anything this path is not sure to decode exactly as
 * the generic one would - a JSON or type error, a duplicate key, an escape
 * \u, a byte over 0x7f, a real number, anything after the event, a
 * decoding cost over k8s_stream_cost_ok()'s bound, an unusual "kind", a value that
 * fails a check, an event type other than ADDED/MODIFIED/DELETED - makes it
 * return K8S_FAST_UNHANDLED, and the caller decodes the line the generic way
 * (which then also words the error). fuzz_k8s_slice_fast checks that every
 * line this path accepts decodes the generic way to the same slice.
 *
 * Bounds: the container nesting is at most FAST_MAX_DEPTH; ports, endpoints,
 * addresses are counted against the generic path's limits as they arrive;
 * the scratch holds at most the line's own bytes of address and hostname
 * text.
 */
#include "k8s_slice_fast.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define FAST_MAX_DEPTH 32
/* k8s_stream_json_cost()'s amounts (k8s_stream.c). On valid JSON it adds,
 * besides the text's length: each object, each array, each string (keys
 * included), each member (its ':'), each ',' and each number once; so the
 * callbacks count the same total without a pass over the text. */
#define COST_OBJECT 224
#define COST_ARRAY 136
#define COST_STRING 48
#define COST_MEMBER 48
#define COST_COMMA 16
#define COST_NUMBER 48
/* Scratch bigger than this is freed after use (so one hostile event does
 * not pin its size): text bytes, and endpoints or addresses. */
#define FAST_KEEP_BYTES (256 * 1024)
#define FAST_KEEP_ITEMS 1024

/* What the next value is (set by the key before it, or by its array). */
enum slot {
	S_SKIP = 0,	/* not read: any value */
	S_ROOT,		/* the event */
	S_TYPE,		/* .type */
	S_OBJECT,	/* .object */
	S_KIND,		/* .object.kind */
	S_META,		/* .object.metadata */
	S_NAME,		/* .object.metadata.name */
	S_NS,		/* .object.metadata.namespace */
	S_RV,		/* .object.metadata.resourceVersion */
	S_LABELS,	/* .object.metadata.labels */
	S_SVC,		/* .object.metadata.labels["kubernetes.io/service-name"] */
	S_ADDRTYPE,	/* .object.addressType */
	S_PORTS,	/* .object.ports */
	S_PORT,		/* .object.ports[i] */
	S_PORT_NAME,	/* .object.ports[i].name */
	S_PORT_PROTO,	/* .object.ports[i].protocol */
	S_PORT_NUM,	/* .object.ports[i].port */
	S_EPS,		/* .object.endpoints */
	S_EP,		/* .object.endpoints[i] */
	S_ADDRS,	/* .object.endpoints[i].addresses */
	S_ADDR,		/* .object.endpoints[i].addresses[k] */
	S_COND,		/* .object.endpoints[i].conditions */
	S_READY,	/* .object.endpoints[i].conditions.ready */
	S_HOST,		/* .object.endpoints[i].hostname */
	S_COUNT
};

/* A container being read: the slot it fills, and the keys seen in it. */
struct level {
	uint8_t slot;
	bool array;
	bool nonempty; /* a value (or key) came: the next one follows a ',' */
	uint32_t seen; /* bit per slot, for objects: a duplicate key is not ours */
};

/* A string member kept as text in the scratch. */
struct text {
	uint32_t off, len;
	bool set;
};

struct endpoint {
	struct text host;
	int8_t ready;	    /* -1: absent or null, 0: false, 1: true */
	uint32_t addr0, n; /* its addresses: texts addr0 .. addr0+n-1 */
};

struct fast {
	struct k8s_fast *ctx;
	const char *obj_kind;
	struct level st[FAST_MAX_DEPTH];
	unsigned depth;
	uint8_t next;	  /* slot of the next value */
	yajl_handle h;
	size_t end;	  /* bytes up to the end of the root value */
	size_t cost;	  /* k8s_stream_json_cost() of the line, counted as it is read */
	bool root_seen;
	bool bad;	  /* not ours (or no memory: nomem) */
	bool nomem;
	int type;	  /* enum k8s_event, -1 unset */
	struct text name, ns, rv, svc, addrtype;
	bool meta_seen, object_seen;
	unsigned n_ports;
	struct k8s_port ports[K8S_MAX_PORTS]; /* last: not zeroed up front */
};

/* --------------------------------------------------------------- scratch */

static int scratch_put(struct k8s_fast *c, const void *p, size_t n, uint32_t *off)
{
	*off = (uint32_t)c->len;
	if (n == 0)
		return 0;
	if (n > UINT32_MAX - c->len)
		return -ENOMEM;
	if (c->len + n > c->cap) {
		size_t ncap = c->cap ? c->cap : 4096;
		while (ncap < c->len + n)
			ncap *= 2;
		char *b = realloc(c->buf, ncap);
		if (!b)
			return -ENOMEM;
		c->buf = b;
		c->cap = ncap;
	}
	memcpy(c->buf + c->len, p, n);
	c->len += n;
	return 0;
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	void *nv = realloc(*v, ncap * size);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

void k8s_fast_deinit(struct k8s_fast *c)
{
	free(c->buf);
	free(c->eps);
	free(c->addrs);
	memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------ callbacks */

static int stop(struct fast *f)
{
	f->bad = true;
	return 0; /* yajl: cancel the parse */
}

/* Whether the @p len bytes at @p p are the string @p lit exactly (a JSON key
 * or string as yajl hands it over, without a terminating NUL). */
static bool bytes_are(const void *p, size_t len, const char *lit)
{
	size_t n = strlen(lit);
	return len == n && memcmp(p, lit, n) == 0;
}

/* The slot of a value in the current container, from the key before it (objects)
 * or the container itself (arrays); with @p key NULL, an array element. */
static uint8_t slot_of(const struct level *l, const char *key, size_t len)
{
#define K(s) bytes_are(key, len, s)
	switch (l->slot) {
	case S_ROOT:
		return K("type") ? S_TYPE : K("object") ? S_OBJECT : S_SKIP;
	case S_OBJECT:
		return K("kind")	? S_KIND
		       : K("metadata")	? S_META
		       : K("addressType") ? S_ADDRTYPE
		       : K("ports")	? S_PORTS
		       : K("endpoints") ? S_EPS
					: S_SKIP;
	case S_META:
		return K("name")	      ? S_NAME
		       : K("namespace")	      ? S_NS
		       : K("resourceVersion") ? S_RV
		       : K("labels")	      ? S_LABELS
					      : S_SKIP;
	case S_LABELS:
		return K("kubernetes.io/service-name") ? S_SVC : S_SKIP;
	case S_PORT:
		return K("name") ? S_PORT_NAME : K("protocol") ? S_PORT_PROTO : K("port") ? S_PORT_NUM
											  : S_SKIP;
	case S_EP:
		return K("addresses") ? S_ADDRS : K("conditions") ? S_COND : K("hostname") ? S_HOST
											   : S_SKIP;
	case S_COND:
		return K("ready") ? S_READY : S_SKIP;
	default:
		return S_SKIP;
	}
#undef K
}

static uint8_t element_slot(uint8_t array_slot)
{
	switch (array_slot) {
	case S_PORTS: return S_PORT;
	case S_EPS: return S_EP;
	case S_ADDRS: return S_ADDR;
	default: return S_SKIP;
	}
}

/* The slot of the value now starting (consumes f->next). */
static uint8_t take_slot(struct fast *f)
{
	if (f->depth == 0)
		return f->root_seen ? S_COUNT : S_ROOT;
	struct level *l = &f->st[f->depth - 1];
	if (l->array) {
		f->cost += l->nonempty ? COST_COMMA : 0;
		l->nonempty = true;
		return element_slot(l->slot);
	}
	uint8_t s = f->next;
	f->next = S_SKIP;
	return s;
}

static int push(struct fast *f, uint8_t slot, bool array)
{
	if (f->depth == FAST_MAX_DEPTH)
		return stop(f);
	f->st[f->depth].slot = slot;
	f->st[f->depth].array = array;
	f->st[f->depth].seen = 0;
	f->st[f->depth].nonempty = false;
	f->cost += array ? COST_ARRAY : COST_OBJECT;
	f->depth++;
	if (slot == S_ROOT)
		f->root_seen = true;
	return 1;
}

static int on_start_map(void *arg)
{
	struct fast *f = arg;
	uint8_t s = take_slot(f);
	struct k8s_fast *c = f->ctx;

	switch (s) {
	case S_ROOT:
	case S_SKIP:
	case S_LABELS:
	case S_COND:
		break;
	case S_OBJECT:
		f->object_seen = true;
		break;
	case S_META:
		f->meta_seen = true;
		break;
	case S_PORT:
		if (f->n_ports == K8S_MAX_PORTS)
			return stop(f);
		memset(&f->ports[f->n_ports++], 0, sizeof(f->ports[0]));
		break;
	case S_EP:
		if (c->n_eps == K8S_MAX_ENDPOINTS)
			return stop(f);
		if (grow((void **)&c->eps, &c->eps_cap, c->n_eps + 1, sizeof(*c->eps)) < 0) {
			f->nomem = true;
			return stop(f);
		}
		memset(&c->eps[c->n_eps], 0, sizeof(c->eps[0]));
		c->eps[c->n_eps].ready = -1;
		c->eps[c->n_eps].addr0 = (uint32_t)c->n_addrs;
		c->n_eps++;
		break;
	default:
		return stop(f); /* an object where something else belongs */
	}
	return push(f, s, false);
}

static int on_start_array(void *arg)
{
	struct fast *f = arg;
	uint8_t s = take_slot(f);

	if (s != S_SKIP && s != S_PORTS && s != S_EPS && s != S_ADDRS)
		return stop(f);
	return push(f, s, true);
}

static int on_end(void *arg)
{
	struct fast *f = arg;

	if (--f->depth == 0)
		f->end = yajl_get_bytes_consumed(f->h);
	return 1;
}

static int on_key(void *arg, const unsigned char *key, size_t len)
{
	struct fast *f = arg;
	struct level *l = &f->st[f->depth - 1];

	f->cost += COST_STRING + COST_MEMBER + (l->nonempty ? COST_COMMA : 0);
	l->nonempty = true;
	if (memchr(key, 0, len))
		return stop(f); /* jansson refuses a NUL */
	f->next = slot_of(l, (const char *)key, len);
	if (f->next != S_SKIP) {
		if (l->seen & (1u << f->next))
			return stop(f); /* a duplicate: jansson keeps the last */
		l->seen |= 1u << f->next;
	}
	return 1;
}

static int keep_text(struct fast *f, struct text *t, const unsigned char *s, size_t len)
{
	if (scratch_put(f->ctx, s, len, &t->off) < 0) {
		f->nomem = true;
		return stop(f);
	}
	t->len = (uint32_t)len;
	t->set = true;
	return 1;
}

static int on_string(void *arg, const unsigned char *s, size_t len)
{
	struct fast *f = arg;
	uint8_t slot = take_slot(f);
	struct k8s_fast *c = f->ctx;

	f->cost += COST_STRING;
	if (memchr(s, 0, len))
		return stop(f); /* jansson refuses a NUL */
	switch (slot) {
	case S_SKIP:
		return 1;
	case S_TYPE:
		f->type = bytes_are(s, len, "ADDED")	  ? K8S_ADDED
			  : bytes_are(s, len, "MODIFIED") ? K8S_MODIFIED
			  : bytes_are(s, len, "DELETED")  ? K8S_DELETED
							  : -2;
		return f->type == -2 ? stop(f) : 1;
	case S_KIND:
		return bytes_are(s, len, f->obj_kind) ? 1 : stop(f);
	case S_NAME: return keep_text(f, &f->name, s, len);
	case S_NS: return keep_text(f, &f->ns, s, len);
	case S_RV: return keep_text(f, &f->rv, s, len);
	case S_SVC: return keep_text(f, &f->svc, s, len);
	case S_ADDRTYPE: return keep_text(f, &f->addrtype, s, len);
	case S_PORT_NAME: {
		struct k8s_port *p = &f->ports[f->n_ports - 1];
		if (len && k8s_objects_copy_label((const char *)s, len, "", p->name, &p->name_len,
						  NULL, 0) < 0)
			return stop(f);
		return 1;
	}
	case S_PORT_PROTO:
		f->ports[f->n_ports - 1].proto = (uint8_t)k8s_objects_parse_proto((const char *)s, len);
		return 1;
	case S_HOST:
		return keep_text(f, &c->eps[c->n_eps - 1].host, s, len);
	case S_ADDR: {
		struct endpoint *ep = &c->eps[c->n_eps - 1];
		if (ep->n == K8S_MAX_ADDRS_PER_ENDPOINT)
			return stop(f);
		if (grow((void **)&c->addrs, &c->addrs_cap, c->n_addrs + 1, sizeof(*c->addrs)) < 0) {
			f->nomem = true;
			return stop(f);
		}
		ep->n++;
		return keep_text(f, &c->addrs[c->n_addrs++], s, len);
	}
	default:
		return stop(f); /* a string where something else belongs */
	}
}

static int on_null(void *arg)
{
	struct fast *f = arg;

	switch (take_slot(f)) {
	case S_SKIP:
	case S_KIND: /* a non-string kind is no kind */
	case S_LABELS:
	case S_SVC:
	case S_PORTS:
	case S_PORT_NAME:
	case S_PORT_PROTO:
	case S_PORT_NUM: /* an EndpointSlice port without a number */
	case S_EPS:
	case S_ADDRS:
	case S_COND:
	case S_READY:
	case S_HOST:
		return 1;
	default:
		return stop(f);
	}
}

static int on_boolean(void *arg, int v)
{
	struct fast *f = arg;
	struct k8s_fast *c = f->ctx;

	switch (take_slot(f)) {
	case S_SKIP:
		return 1;
	case S_READY:
		c->eps[c->n_eps - 1].ready = v ? 1 : 0;
		return 1;
	default:
		return stop(f);
	}
}

/* A number as text: integers that fit a long long (what jansson takes as an
 * integer); anything else (a real, an overflow) is not ours. */
static int on_number(void *arg, const char *s, size_t len)
{
	struct fast *f = arg;
	uint8_t slot = take_slot(f);
	long long v = 0;
	size_t i = 0;
	bool neg = false;

	f->cost += COST_NUMBER;
	if (len && s[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == len || len > 20)
		return stop(f);
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return stop(f); /* a real */
		int d = s[i] - '0';
		if (v > (LLONG_MAX - d) / 10)
			return stop(f); /* past the range (LLONG_MIN too: not ours) */
		v = v * 10 + d;
	}
	if (slot == S_SKIP)
		return 1;
	if (slot != S_PORT_NUM || neg || v > 65535)
		return stop(f);
	f->ports[f->n_ports - 1].port = (uint16_t)v;
	return 1;
}

static const yajl_callbacks callbacks = {
	.yajl_null = on_null,
	.yajl_boolean = on_boolean,
	.yajl_number = on_number,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

/* ------------------------------------------------------------- building */

/* Bytes the two JSON parsers could read differently: a byte over 0x7f
 * (yajl's UTF-8 check is looser than jansson's), an escape \u (lone
 * surrogates, \u0000), and \v, \f (whitespace to yajl only). */
static bool plain_byte(unsigned char c)
{
	return c < 0x80 && c != '\v' && c != '\f';
}

static bool plain_text(const char *p, size_t len)
{
	const char *end = p + len, *bs = memchr(p, '\\', len);
	size_t i = 0;

	for (; bs; bs = memchr(bs + 1, '\\', (size_t)(end - bs - 1)))
		if (bs + 1 == end || bs[1] == 'u')
			return false;
	/* Eight bytes at a time: a byte over 0x7f or under 0x20 (never in
	 * compact JSON outside strings, nor inside) sets a top bit here. */
	for (; i + 8 <= len; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		if ((x | (x - 0x2020202020202020ull)) & 0x8080808080808080ull)
			for (size_t k = i; k < i + 8; k++)
				if (!plain_byte((unsigned char)p[k]))
					return false;
	}
	for (; i < len; i++)
		if (!plain_byte((unsigned char)p[i]))
			return false;
	return true;
}

/* Only JSON whitespace after the root value. (yajl takes an unfinished
 * token after it, such as a lone '"', for the end of the input.) */
static bool trailing_space(const char *p, size_t len, size_t end)
{
	if (end == 0 || end > len)
		return false;
	for (size_t i = end; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
			return false;
	return true;
}

static const char *txt(const struct k8s_fast *c, const struct text *t)
{
	return c->buf ? c->buf + t->off : "";
}

/* Whether the kept text @p t is @p s exactly. Not through txt(): gcc's
 * stringop-overread check (-O1 with the sanitizers) takes a memcmp of a
 * literal's length against txt()'s "" fallback for an overread. */
static bool text_is(const struct k8s_fast *c, const struct text *t, const char *s)
{
	return c->buf && bytes_are(c->buf + t->off, t->len, s);
}

/* Fill @p sl from what the parse kept. @return 0, -ENOMEM, or 1 (not ours). */
static int build(struct fast *f, struct k8s_slice *sl, char rv[K8S_RV_MAX])
{
	struct k8s_fast *c = f->ctx;
	struct k8s_slice_caps caps = { 0, 0 };
	int fam;

	if (f->type < 0 || !f->object_seen || !f->meta_seen)
		return 1;
	if (f->rv.set) {
		if (f->rv.len >= K8S_RV_MAX)
			return 1;
		memcpy(rv, txt(c, &f->rv), f->rv.len);
		rv[f->rv.len] = '\0';
		if (!k8s_rv_valid(rv))
			return 1;
	}
	if (!f->name.set || f->name.len == 0 || f->name.len > K8S_SLICE_NAME_MAX)
		return 1;
	memcpy(sl->name, txt(c, &f->name), f->name.len);
	sl->name[f->name.len] = '\0';
	if (!f->ns.set || k8s_objects_copy_label(txt(c, &f->ns), f->ns.len, "", sl->ns, NULL,
						 NULL, 0) < 0)
		return 1;
	sl->ns[f->ns.len] = '\0';
	if (f->type == K8S_DELETED)
		return 0; /* metadata only, as the generic path */

	if (f->svc.set && f->svc.len) {
		if (k8s_objects_copy_label(txt(c, &f->svc), f->svc.len, "", sl->svc, NULL, NULL,
					   0) < 0)
			return 1;
		sl->svc[f->svc.len] = '\0';
	}
	if (!f->addrtype.set)
		return 1;
	fam = text_is(c, &f->addrtype, "IPv4") ? 4 : text_is(c, &f->addrtype, "IPv6") ? 6 : 0;
	if (f->n_ports) {
		sl->ports = malloc(f->n_ports * sizeof(*sl->ports));
		if (!sl->ports)
			return -ENOMEM;
		memcpy(sl->ports, f->ports, f->n_ports * sizeof(*sl->ports));
		sl->n_ports = (uint16_t)f->n_ports;
	}
	for (size_t i = 0; i < c->n_eps; i++) {
		const struct endpoint *ep = &c->eps[i];
		char host[K8S_LABEL_MAX];
		uint8_t host_len = 0;

		if (ep->host.set && ep->host.len &&
		    k8s_objects_copy_label(txt(c, &ep->host), ep->host.len, "", host, &host_len,
					   NULL, 0) < 0)
			return 1;
		for (uint32_t k = 0; k < ep->n; k++) {
			const struct text *a = &c->addrs[ep->addr0 + k];
			struct k8s_ip ip;
			if (fam == 0)
				continue;
			if (k8s_objects_parse_ip(txt(c, a), a->len, fam, &ip) < 0)
				return 1;
			if (ep->ready == 0)
				continue;
			if (sl->n_addrs >= K8S_MAX_ADDRS_PER_SLICE)
				return 1;
			if (k8s_objects_slice_add_addr(sl, &caps, &ip, host, host_len) < 0)
				return -ENOMEM;
		}
	}
	k8s_objects_slice_trim(sl, &caps);
	return 0;
}

int k8s_fast_slice_event(struct k8s_fast *c, const char *line, size_t len, const char *obj_kind,
			 enum k8s_event *ev, char rv[K8S_RV_MAX], struct k8s_slice *sl)
{
	struct fast fs, *f = &fs;
	yajl_handle h;
	int rc = K8S_FAST_UNHANDLED;

	rv[0] = '\0';
	if (!plain_text(line, len))
		return K8S_FAST_UNHANDLED;
	/* On the stack: ports[] is each port's own copy, filled as they come. */
	memset(f, 0, offsetof(struct fast, ports));
	f->ctx = c;
	f->obj_kind = obj_kind;
	f->type = -1;
	c->len = c->n_eps = c->n_addrs = 0;
	c->cost = 0;
	h = yajl_alloc(&callbacks, NULL, f);
	if (!h)
		return -ENOMEM;
	f->h = h;
	f->cost = len;
	if (yajl_parse(h, (const unsigned char *)line, len) == yajl_status_ok &&
	    yajl_complete_parse(h) == yajl_status_ok && !f->bad && trailing_space(line, len, f->end) &&
	    (c->cost = f->cost, k8s_stream_cost_ok(f->cost, len))) {
		rc = build(f, sl, rv);
		if (rc == 0)
			*ev = (enum k8s_event)f->type;
	} else if (f->nomem) {
		rc = -ENOMEM;
	}
	yajl_free(h);
	if (rc != 0)
		rv[0] = '\0';
	if (c->cap > FAST_KEEP_BYTES) {
		free(c->buf);
		c->buf = NULL;
		c->cap = 0;
	}
	if (c->eps_cap > FAST_KEEP_ITEMS) {
		free(c->eps);
		c->eps = NULL;
		c->eps_cap = 0;
	}
	if (c->addrs_cap > FAST_KEEP_ITEMS) {
		free(c->addrs);
		c->addrs = NULL;
		c->addrs_cap = 0;
	}
	return rc;
}
