/* include/nodedns/node/nodestate.h - what node setup created (links, addresses), and the state file that records it.
 *
 * The state file is shared by every nodedns on the node, so that the
 * instance that tears down after a rolling update removes what the previous
 * one created. Format, one record a line after a '#' comment line:
 *   link IFINDEX NAME
 *   addr IFINDEX IP
 * A partial last line and unknown lines are ignored. Access is serialised
 * with flock(LOCK_EX): nodestate_load() takes it, nodestate_store() drops it.
 */
#ifndef NODEDNS_NODE_NODESTATE_H
#define NODEDNS_NODE_NODESTATE_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODESTATE_MAX_RECORDS 64
#define NODESTATE_LOCK_WAIT_MS 2000
#define NODESTATE_MAX_BYTES 16384

enum nodestate_kind { NODESTATE_LINK, NODESTATE_ADDR };

/** One thing nodedns created on the node. */
struct nodestate_rec {
	enum nodestate_kind kind;
	int ifindex;
	int family;          /* NODESTATE_ADDR */
	uint8_t ip[16];      /* NODESTATE_ADDR */
	char name[IFNAMSIZ]; /* NODESTATE_LINK */
};

/** A set of records (plain value: copy it freely). */
struct nodestate_set {
	struct nodestate_rec v[NODESTATE_MAX_RECORDS];
	size_t n;
};

/** Whether @p s holds a record equal to @p r (same kind, ifindex and
 * name or address). */
bool nodestate_has(const struct nodestate_set *s, const struct nodestate_rec *r);

/** Add a copy of @p r unless it is there or the set is full. */
void nodestate_add(struct nodestate_set *s, const struct nodestate_rec *r);

/** Remove record @p i (the last one takes its place). */
void nodestate_del_at(struct nodestate_set *s, size_t i);

/** Parse the state file text @p text (NUL-terminated) into @p s. */
void nodestate_parse(const char *text, struct nodestate_set *s);

/** Format @p s as state file text into @p out. @return the length
 * (at most @p len, truncated when it does not fit). */
size_t nodestate_format(const struct nodestate_set *s, char *out, size_t len);

/**
 * Open (creating it) and lock @p path, waiting up to NODESTATE_LOCK_WAIT_MS,
 * and read it into @p s. On success @p fd holds the locked file, to be
 * passed to nodestate_store(). Failures are logged.
 * @return 0, or -errno (-EWOULDBLOCK: locked too long) with @p fd -1.
 */
int nodestate_load(const char *path, struct nodestate_set *s, int *fd);

/**
 * Write @p s to the file @p fd (from nodestate_load(); named @p path in
 * the log), then close it, which releases the lock. Failures are logged.
 * @return 0 or -errno.
 */
int nodestate_store(int fd, const char *path, const struct nodestate_set *s);

#endif
