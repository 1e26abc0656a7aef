/* src/node/nodestate.c - what node setup created, and the state file that records it. */
#include "nodedns/node/nodestate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "nodedns/node/netsetup.h"
#include "nodedns/util/log.h"

#define TAG "netsetup"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool owned_eq(const struct nodestate_rec *a, const struct nodestate_rec *b)
{
	if (a->kind != b->kind || a->ifindex != b->ifindex)
		return false;
	if (a->kind == NODESTATE_LINK)
		return strcmp(a->name, b->name) == 0;
	return a->family == b->family && memcmp(a->ip, b->ip, netsetup_ip_len(a->family)) == 0;
}

bool nodestate_has(const struct nodestate_set *s, const struct nodestate_rec *r)
{
	for (size_t i = 0; i < s->n; i++)
		if (owned_eq(&s->v[i], r))
			return true;
	return false;
}

void nodestate_add(struct nodestate_set *s, const struct nodestate_rec *r)
{
	if (!nodestate_has(s, r) && s->n < NODESTATE_MAX_RECORDS)
		s->v[s->n++] = *r;
}

void nodestate_del_at(struct nodestate_set *s, size_t i)
{
	s->v[i] = s->v[--s->n];
}

void nodestate_parse(const char *text, struct nodestate_set *s)
{
	memset(s, 0, sizeof(*s));
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		if (!nl)
			break; /* a partial last line is ignored */
		char line[256];
		size_t l = (size_t)(nl - p);
		if (l < sizeof(line)) {
			memcpy(line, p, l);
			line[l] = '\0';
			struct nodestate_rec o;
			memset(&o, 0, sizeof(o));
			char a[INET6_ADDRSTRLEN + 1], name[IFNAMSIZ + 1];
			if (sscanf(line, "link %d %16s", &o.ifindex, name) == 2 && o.ifindex > 0 &&
			    strlen(name) < IFNAMSIZ) {
				o.kind = NODESTATE_LINK;
				memcpy(o.name, name, strlen(name) + 1);
				nodestate_add(s, &o);
			} else if (sscanf(line, "addr %d %46s", &o.ifindex, a) == 2 && o.ifindex > 0) {
				o.kind = NODESTATE_ADDR;
				if (inet_pton(AF_INET, a, o.ip) == 1)
					o.family = AF_INET;
				else if (inet_pton(AF_INET6, a, o.ip) == 1)
					o.family = AF_INET6;
				if (o.family)
					nodestate_add(s, &o);
			}
		}
		p = nl + 1;
	}
}

size_t nodestate_format(const struct nodestate_set *s, char *out, size_t len)
{
	size_t o = (size_t)snprintf(out, len, "# nodedns node setup: what nodedns created, removed at teardown\n");
	for (size_t i = 0; i < s->n && o < len; i++) {
		char a[INET6_ADDRSTRLEN];
		if (s->v[i].kind == NODESTATE_LINK)
			o += (size_t)snprintf(out + o, len - o, "link %d %s\n", s->v[i].ifindex, s->v[i].name);
		else
			o += (size_t)snprintf(out + o, len - o, "addr %d %s\n", s->v[i].ifindex,
					      netsetup_ip_text(s->v[i].family, s->v[i].ip, a, sizeof(a)));
	}
	return o < len ? o : len;
}

int nodestate_load(const char *path, struct nodestate_set *s, int *fd)
{
	*fd = -1;
	int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (f < 0) {
		int e = errno;
		log_error(TAG, "state file %s: %s (ownership kept in memory)", path, strerror(e));
		return -e;
	}
	uint64_t deadline = now_ms() + NODESTATE_LOCK_WAIT_MS;
	while (flock(f, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if ((e != EWOULDBLOCK && e != EINTR) || now_ms() >= deadline) {
			log_error(TAG, "state file %s: cannot lock: %s", path,
				  e == EWOULDBLOCK ? "held too long by another process" : strerror(e));
			close(f);
			return -e;
		}
		usleep(10000);
	}
	char buf[NODESTATE_MAX_BYTES];
	ssize_t n = pread(f, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	nodestate_parse(buf, s);
	*fd = f;
	return 0;
}

int nodestate_store(int fd, const char *path, const struct nodestate_set *s)
{
	char buf[NODESTATE_MAX_BYTES];
	size_t len = nodestate_format(s, buf, sizeof(buf));
	int rc = 0;
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, len, 0) != (ssize_t)len) {
		rc = errno ? -errno : -EIO;
		log_error(TAG, "state file %s: write: %s (ownership kept in memory)", path, strerror(-rc));
	}
	close(fd); /* releases the lock */
	return rc;
}
