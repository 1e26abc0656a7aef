/* src/cluster/k8s_stream.c - split a watch stream into lines and decode watch events. */
#include "nodedns/cluster/k8s_stream.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A carried-over buffer bigger than this is freed once it is empty again, so
 * one large event does not pin max_line_bytes per stream for good. */
#define STREAM_KEEP_BYTES (64 * 1024)

void k8s_stream_init(struct k8s_stream *s, size_t max_line_bytes)
{
	memset(s, 0, sizeof(*s));
	if (max_line_bytes < 1)
		max_line_bytes = 1;
	if (max_line_bytes > SIZE_MAX / 4)
		max_line_bytes = SIZE_MAX / 4;
	s->max_line_bytes = max_line_bytes;
}

void k8s_stream_deinit(struct k8s_stream *s)
{
	free(s->buf);
	s->buf = NULL;
	s->len = s->cap = 0;
	s->skipping = false;
}

void k8s_stream_reset(struct k8s_stream *s)
{
	s->len = 0;
	s->skipping = false;
	if (s->cap > STREAM_KEEP_BYTES) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
}

/* Append to the carried-over buffer; the caller has checked the bound
 * (len + n <= max_line_bytes + 1). */
static int append(struct k8s_stream *s, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (s->len + n > s->cap) {
		size_t limit = s->max_line_bytes + 1;
		size_t ncap = s->cap ? s->cap : 256;
		while (ncap < s->len + n)
			ncap = ncap > limit / 2 ? limit : ncap * 2;
		if (ncap > limit)
			ncap = limit;
		char *nb = realloc(s->buf, ncap);
		if (!nb)
			return -ENOMEM;
		s->buf = nb;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

/* Enter skipping mode for an over-long partial line. */
static void start_skipping(struct k8s_stream *s)
{
	s->oversized++;
	s->skipping = true;
	s->len = 0;
}

int k8s_stream_feed(struct k8s_stream *s, const char *data, size_t len,
		    k8s_stream_line_cb cb, void *arg)
{
	const char *p = data, *end = data ? data + len : data;
	/* A line may be max_line_bytes plus one '\r' before its '\n'. */
	size_t room = s->max_line_bytes + 1;
	int rc = 0;

	while (p && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (s->skipping) {
			if (!nl)
				break;
			s->skipping = false;
			p = nl + 1;
			continue;
		}
		if (!nl) {
			size_t rest = (size_t)(end - p);
			if (rest > room - s->len) {
				start_skipping(s);
			} else if (append(s, p, rest) < 0) {
				s->skipping = true;
				s->len = 0;
				rc = -ENOMEM;
			}
			break;
		}
		size_t seg = (size_t)(nl - p);
		const char *line;
		size_t llen;
		if (s->len == 0) {
			line = p;
			llen = seg;
		} else if (seg > room - s->len) {
			line = NULL; /* complete but too long */
			llen = room + 1;
		} else {
			if (append(s, p, seg) < 0) {
				/* Cannot assemble this line: drop it like an oversized one. */
				s->len = 0;
				p = nl + 1;
				rc = -ENOMEM;
				continue;
			}
			line = s->buf;
			llen = s->len;
		}
		p = nl + 1;
		if (line && llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen > s->max_line_bytes) {
			s->oversized++;
		} else if (llen > 0) {
			s->lines++;
			int r = cb(arg, line, llen);
			if (r != 0) {
				s->len = 0;
				rc = r;
				break;
			}
		}
		s->len = 0;
	}
	if (s->len == 0 && s->cap > STREAM_KEEP_BYTES) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
	return rc;
}

/* -------------------------------------------------------- decoding cost */

/* Measured with jansson 2.14 on glibc: an empty object 224 bytes, an empty
 * array 138, a string ~80 plus its text, an integer 42, a member ~80. */
#define COST_OBJECT 224
#define COST_ARRAY 136
#define COST_STRING 48
#define COST_MEMBER 48
#define COST_ELEMENT 16
#define COST_NUMBER 48

/* The cost of byte @p c read outside a string after @p prev, the last
 * structural byte ('{', '[', ':', ','), or 0 when something else came
 * between (a string's own bytes are counted in the text's length). */
static size_t byte_cost(char c, char prev)
{
	switch (c) {
	case '{': return COST_OBJECT;
	case '[': return COST_ARRAY;
	case '"': return COST_STRING;
	case ':': return COST_MEMBER;
	case ',': return COST_ELEMENT;
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return prev ? COST_NUMBER : 0;
	default: return 0;
	}
}

/* The "prev" of byte_cost() after @p c. */
static char next_prev(char c, char prev)
{
	if (c == '{' || c == '[' || c == ':' || c == ',')
		return c;
	if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
		return prev;
	return 0;
}

size_t k8s_stream_json_cost(const char *text, size_t len)
{
	size_t cost = len;
	bool in_str = false, esc = false;
	char prev = '[';

	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		cost += byte_cost(c, prev);
		prev = next_prev(c, prev);
		if (c == '"')
			in_str = true;
	}
	return cost;
}

bool k8s_stream_cost_ok(size_t cost, size_t len)
{
	return cost <= K8S_COST_FLOOR || cost / K8S_COST_RATIO <= len;
}

/* ------------------------------------------------------- list splitting */

#define SPLIT_KEEP_BYTES (64 * 1024)

static void sbuf_free(struct k8s_split_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static int sbuf_put(struct k8s_split_buf *b, char c, size_t max)
{
	if (b->len >= max)
		return -E2BIG;
	if (b->len == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 1024;
		if (ncap > max)
			ncap = max;
		char *np = realloc(b->p, ncap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = ncap;
	}
	b->p[b->len++] = c;
	return 0;
}

void k8s_stream_list_init(struct k8s_stream_list *s, size_t max_item_bytes,
			  size_t max_shell_bytes)
{
	memset(s, 0, sizeof(*s));
	s->max_item_bytes = max_item_bytes ? max_item_bytes : 1;
	s->max_shell_bytes = max_shell_bytes ? max_shell_bytes : 1;
}

void k8s_stream_list_reset(struct k8s_stream_list *s)
{
	struct k8s_split_buf item = s->item, shell = s->shell;
	uint64_t items = s->items, oversized = s->oversized;

	if (item.cap > SPLIT_KEEP_BYTES)
		sbuf_free(&item);
	if (shell.cap > SPLIT_KEEP_BYTES)
		sbuf_free(&shell);
	k8s_stream_list_init(s, s->max_item_bytes, s->max_shell_bytes);
	s->item = item;
	s->shell = shell;
	s->item.len = s->shell.len = 0;
	s->items = items;
	s->oversized = oversized;
}

void k8s_stream_list_deinit(struct k8s_stream_list *s)
{
	sbuf_free(&s->item);
	sbuf_free(&s->shell);
}

const char *k8s_stream_list_shell(const struct k8s_stream_list *s, size_t *len)
{
	*len = s->shell.len;
	return s->shell.len ? s->shell.p : NULL;
}

/* The element in item[] is complete: hand it over or count it dropped. */
static int emit_item(struct k8s_stream_list *s, k8s_stream_item_cb cb, void *arg)
{
	int rc = 0;

	s->in_item = false;
	if (s->item_skip || !k8s_stream_cost_ok(s->item_cost, s->item.len)) {
		s->oversized++;
	} else if (s->item.len > 0) {
		s->items++;
		rc = cb(arg, s->item.p, s->item.len, s->item_cost);
	}
	s->item.len = 0;
	s->item_skip = false;
	if (s->item.cap > SPLIT_KEEP_BYTES)
		sbuf_free(&s->item);
	return rc;
}

/* One byte inside a string (of the shell or of an element). */
static void string_byte(struct k8s_stream_list *s, char c)
{
	if (s->esc) {
		s->esc = false;
		s->key_len = 99;
	} else if (c == '\\') {
		s->esc = true;
		s->key_len = 99;
	} else if (c == '"') {
		s->in_str = false;
		if (s->key_on) {
			s->key_on = false;
			s->key_items = s->key_len == 5;
		}
	} else if (s->key_on) {
		s->key_len = s->key_len < 5 && "items"[s->key_len] == c ? s->key_len + 1 : 99;
	}
}

/* One byte of an element of "items" (s->in_item). */
static int item_byte(struct k8s_stream_list *s, char c, k8s_stream_item_cb cb, void *arg)
{
	if (!s->in_str) {
		if (s->depth == 2 && (c == ',' || c == ']')) {
			/* A scalar element ends here; ']' also ends the items. */
			int rc = emit_item(s, cb, arg);
			if (rc != 0 || c == ',')
				return rc;
			s->in_items = false;
			s->depth = 1;
			return sbuf_put(&s->shell, ']', s->max_shell_bytes);
		}
		s->item_cost += byte_cost(c, s->prev);
		s->prev = next_prev(c, s->prev);
		if (c == '"')
			s->in_str = true;
		else if (c == '{' || c == '[')
			s->depth++;
		else if (c == '}' || c == ']')
			s->depth--;
	} else {
		string_byte(s, c);
	}
	if (!s->item_skip) {
		int rc = sbuf_put(&s->item, c, s->max_item_bytes);
		if (rc == -E2BIG) {
			s->item_skip = true;
			s->item.len = 0;
		} else if (rc < 0) {
			return rc;
		}
		s->item_cost++;
	}
	if (!s->in_str && s->depth == 2 && (c == '}' || c == ']'))
		return emit_item(s, cb, arg);
	return 0;
}

/* One byte outside the items: it goes to the shell. */
static int shell_byte(struct k8s_stream_list *s, char c)
{
	bool want = s->want_items;

	if (s->in_str) {
		string_byte(s, c);
	} else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
		return 0;
	} else {
		s->want_items = false;
		if (c == '"') {
			s->in_str = true;
			if (s->depth == 1 && s->key_next) {
				s->key_on = true;
				s->key_len = 0;
				s->key_next = false;
			}
		} else if (c == '[' && s->depth == 1 && want) {
			s->in_items = true;
			s->depth = 2;
		} else if (c == '{' || c == '[') {
			s->depth++;
			s->key_next = s->depth == 1 && c == '{';
		} else if (c == '}' || c == ']') {
			if (s->depth > 0)
				s->depth--;
		} else if (c == ',' && s->depth == 1) {
			s->key_next = true;
			s->key_items = false;
		} else if (c == ':' && s->depth == 1) {
			s->want_items = s->key_items;
			s->key_items = false;
		}
	}
	return sbuf_put(&s->shell, c, s->max_shell_bytes);
}

int k8s_stream_list_feed(struct k8s_stream_list *s, const char *data, size_t len,
			 k8s_stream_item_cb cb, void *arg)
{
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		int rc;
		if (s->in_items && !s->in_item && s->depth == 2) {
			if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',')
				continue;
			if (c == ']') {
				s->in_items = false;
				s->depth = 1;
				rc = sbuf_put(&s->shell, c, s->max_shell_bytes);
				if (rc < 0)
					return rc;
				continue;
			}
			s->in_item = true;
			s->item_cost = 0;
			s->prev = '[';
		}
		rc = s->in_item ? item_byte(s, c, cb, arg) : shell_byte(s, c);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------- decoding */

static const char *const type_names[] = {
	[K8S_EV_ADDED] = "ADDED",	[K8S_EV_MODIFIED] = "MODIFIED",
	[K8S_EV_DELETED] = "DELETED",	[K8S_EV_BOOKMARK] = "BOOKMARK",
	[K8S_EV_ERROR] = "ERROR",
};

const char *k8s_ev_type_name(enum k8s_ev_type t)
{
	if ((unsigned)t < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[t];
	return "?";
}

bool k8s_rv_valid(const char *rv)
{
	size_t n = 0;
	for (const char *c = rv; *c; c++, n++) {
		if (n >= K8S_RV_MAX - 1)
			return false;
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= 'A' && *c <= 'Z') || *c == '.' || *c == '_' || *c == '~' ||
		      *c == '-'))
			return false;
	}
	return n > 0;
}

void k8s_stream_event_clear(struct k8s_stream_event *ev)
{
	json_decref(ev->root);
	memset(ev, 0, sizeof(*ev));
}

bool k8s_stream_event_is_expired(const struct k8s_stream_event *ev)
{
	return ev->type == K8S_EV_ERROR &&
	       (ev->code == 410 || strcmp(ev->reason, "Expired") == 0 ||
		strcmp(ev->reason, "Gone") == 0);
}

static int fail(struct k8s_stream_event *ev, char *err, size_t errlen, const char *why)
{
	k8s_stream_event_clear(ev);
	if (err && errlen)
		snprintf(err, errlen, "%s", why);
	return -EINVAL;
}

/* Copy a server string for logs: bounded, printable ASCII only. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

int k8s_stream_decode(const char *line, size_t len, struct k8s_stream_event *ev,
		      char *err, size_t errlen)
{
	json_error_t jerr;

	memset(ev, 0, sizeof(*ev));
	if (err && errlen)
		err[0] = '\0';
	if (!k8s_stream_cost_ok(k8s_stream_json_cost(line, len), len)) {
		if (err && errlen)
			snprintf(err, errlen, "event would take over %dx its size to decode",
				 K8S_COST_RATIO);
		return -E2BIG;
	}
	ev->root = json_loadb(line, len, 0, &jerr);
	if (!ev->root) {
		if (json_error_code(&jerr) == json_error_out_of_memory) {
			k8s_stream_event_clear(ev);
			return -ENOMEM;
		}
		if (err && errlen) {
			char text[JSON_ERROR_TEXT_LENGTH + 1];
			copy_printable(text, sizeof(text), jerr.text);
			snprintf(err, errlen, "bad JSON at byte %d: %s", jerr.position, text);
		}
		return -EINVAL;
	}
	if (!json_is_object(ev->root))
		return fail(ev, err, errlen, "event is not a JSON object");

	const char *type = json_string_value(json_object_get(ev->root, "type"));
	if (!type)
		return fail(ev, err, errlen, "event has no string \"type\"");
	size_t t;
	for (t = 0; t < sizeof(type_names) / sizeof(type_names[0]); t++)
		if (strcmp(type, type_names[t]) == 0)
			break;
	if (t == sizeof(type_names) / sizeof(type_names[0]))
		return fail(ev, err, errlen, "unknown event type");
	ev->type = (enum k8s_ev_type)t;

	const json_t *obj = json_object_get(ev->root, "object");
	if (!json_is_object(obj))
		return fail(ev, err, errlen, "event has no \"object\" object");
	ev->object = obj;

	if (ev->type == K8S_EV_ERROR) {
		const json_t *code = json_object_get(obj, "code");
		if (json_is_integer(code) && json_integer_value(code) >= 0 &&
		    json_integer_value(code) <= 999)
			ev->code = (int)json_integer_value(code);
		const char *reason = json_string_value(json_object_get(obj, "reason"));
		if (reason)
			copy_printable(ev->reason, sizeof(ev->reason), reason);
		return 0;
	}

	const json_t *meta = json_object_get(obj, "metadata");
	if (meta && !json_is_object(meta))
		return fail(ev, err, errlen, "object.metadata is not an object");
	const json_t *rvj = meta ? json_object_get(meta, "resourceVersion") : NULL;
	if (rvj) {
		const char *rv = json_string_value(rvj);
		if (!rv || !k8s_rv_valid(rv))
			return fail(ev, err, errlen, "invalid metadata.resourceVersion");
		memcpy(ev->rv, rv, strlen(rv) + 1);
	} else if (ev->type == K8S_EV_BOOKMARK) {
		return fail(ev, err, errlen, "BOOKMARK without metadata.resourceVersion");
	}
	return 0;
}
