/* include/nodedns/node/privdrop.h - give up privileges once the resolver's sockets are bound.
 *
 * The resolver needs root (or CAP_NET_BIND_SERVICE) only to bind port 53 and
 * the HTTP ports; node setup (NET_ADMIN) lives in the supervisor, a separate
 * process. Once everything is bound the resolver keeps nothing: every
 * capability is dropped from the effective, permitted, inheritable, ambient
 * and bounding sets, and no_new_privs is set, so no exec can gain any back.
 * With a user name it also switches uid/gid (and supplementary groups) to
 * that user. Staying uid 0 without capabilities keeps root-owned files such
 * as a 0600 token readable, but can still write files owned by root: run
 * with a read-only root filesystem (the manifests do) or name a user.
 */
#ifndef NODEDNS_PRIVDROP_H
#define NODEDNS_PRIVDROP_H

#include <stddef.h>

/**
 * Drop privileges as described above. @p user: NULL or "root" keeps the uid.
 * Safe to call when not root (then only what capabilities the process has,
 * e.g. file capabilities, are dropped). Writes what it did to @p what (for
 * the log) or why it failed to @p err.
 * @return 0, or -errno (the caller should exit: a half-dropped process is
 * worse than none).
 */
int privdrop_apply(const char *user, char *what, size_t whatlen, char *err, size_t errlen);

#endif
