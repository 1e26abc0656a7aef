/* include/nodedns/node/instance_lock.h - the instance lock: which nodedns on the node tears the node setup down.
 *
 * RUN_DIR/instance.lock is held shared by every supervisor on the node.
 * At exit, the one that can upgrade it to exclusive is the last one and
 * tears down; a failed upgrade drops the shared lock (Linux flock), so of
 * two instances exiting at once the second one always gets it.
 */
#ifndef NODEDNS_NODE_INSTANCE_LOCK_H
#define NODEDNS_NODE_INSTANCE_LOCK_H

#include <stdbool.h>

#define INSTANCE_LOCK_WAIT_MS 30000 /* for a departing instance's teardown */

/**
 * Create @p run_dir (and its parents) and take the shared lock on
 * run_dir/instance.lock, waiting up to INSTANCE_LOCK_WAIT_MS for an
 * exiting instance. Failures are logged (the caller goes on without it).
 * @p out: the locked fd (owned by caller, close() it), -1 on failure.
 * @return 0 or -errno (-EBUSY: held too long).
 */
int instance_lock_take(const char *run_dir, int *out);

/** Whether another instance holds the lock (false when @p fd is -1). */
bool instance_lock_other_alive(int fd);

/** At exit: true when no other instance holds the lock (always when
 * @p fd is -1); logs who keeps the node setup otherwise. */
bool instance_lock_teardown_allowed(int fd, const char *run_dir);

#endif
