/* src/io/http_head.c - checks of an HTTP/1.x request head for the admin endpoints. */
#include "nodedns/io/http_head.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "nodedns/util/wire.h"

#define HTTP_METHOD_MAX_BYTES 32

static bool is_tchar(uint8_t ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool has_prefix_ci(const char *s, size_t n, const char *prefix)
{
	size_t i;
	for (i = 0; prefix[i]; i++)
		if (i >= n || wire_lower((uint8_t)s[i]) != (uint8_t)prefix[i])
			return false;
	return true;
}

static bool path_is(const char *p, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(p, want, n) == 0;
}

int http_head_parse_line(const char *s, size_t n, enum http_method *method,
			 enum http_path *pathp)
{
	const char *end = s + n, *p = s, *t, *path;
	size_t mlen, tlen, plen;

	while (p < end && is_tchar((uint8_t)*p))
		p++;
	mlen = (size_t)(p - s);
	if (mlen == 0 || mlen > HTTP_METHOD_MAX_BYTES || p == end || *p != ' ')
		return -EINVAL;
	t = ++p;
	while (p < end && (uint8_t)*p > 0x20 && (uint8_t)*p < 0x7f)
		p++;
	tlen = (size_t)(p - t);
	if (tlen == 0 || p == end || *p != ' ')
		return -EINVAL;
	p++;
	if (end - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9')
		return -EINVAL;

	if (mlen == 3 && memcmp(s, "GET", 3) == 0)
		*method = HTTP_METHOD_GET;
	else if (mlen == 4 && memcmp(s, "HEAD", 4) == 0)
		*method = HTTP_METHOD_HEAD;
	else
		*method = HTTP_METHOD_OTHER;

	/* origin-form "/path?query", absolute-form "http://host/path", or "*". */
	path = t;
	plen = tlen;
	if (t[0] != '/') {
		size_t skip;
		if (has_prefix_ci(t, tlen, "http://"))
			skip = 7;
		else if (has_prefix_ci(t, tlen, "https://"))
			skip = 8;
		else if (tlen == 1 && t[0] == '*')
			skip = 1;
		else
			return -EINVAL;
		path = t + skip;
		plen = tlen - skip;
		while (plen > 0 && *path != '/' && *path != '?' && *path != '#') {
			path++;
			plen--;
		}
	}
	for (size_t i = 0; i < plen; i++) {
		if (path[i] == '?' || path[i] == '#') {
			plen = i;
			break;
		}
	}
	if (plen == 0 && t[0] != '*') { /* "http://host" or "http://host?x" */
		path = "/";
		plen = 1;
	}
	if (path_is(path, plen, "/metrics"))
		*pathp = HTTP_PATH_METRICS;
	else if (path_is(path, plen, "/health"))
		*pathp = HTTP_PATH_HEALTH;
	else if (path_is(path, plen, "/ready"))
		*pathp = HTTP_PATH_READY;
	else
		*pathp = HTTP_PATH_UNKNOWN;
	return 0;
}

bool http_head_headers_valid(const char *p, const char *end)
{
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *colon, *q;
		size_t n;

		if (!nl)
			return false;
		n = (size_t)(nl - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			return true;
		colon = memchr(p, ':', n);
		if (!colon || colon == p)
			return false;
		for (q = p; q < colon; q++)
			if (!is_tchar((uint8_t)*q))
				return false;
		for (q = colon + 1; q < p + n; q++) {
			uint8_t ch = (uint8_t)*q;
			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return false;
		}
		p = nl + 1;
	}
	return false;
}

bool http_head_find_end(const char *head, size_t len, size_t *scan, size_t *end)
{
	size_t i;

	for (i = *scan; i < len; i++) {
		if (head[i] != '\n')
			continue;
		if (i + 1 >= len)
			break;
		if (head[i + 1] == '\n') {
			*end = i + 2;
			return true;
		}
		if (head[i + 1] == '\r') {
			if (i + 2 >= len)
				break;
			if (head[i + 2] == '\n') {
				*end = i + 3;
				return true;
			}
		}
	}
	*scan = i;
	return false;
}
