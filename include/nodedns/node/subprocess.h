/* include/nodedns/node/subprocess.h - run one short command (iptables-save, -restore) with a deadline.
 *
 * The command runs without a shell on a private libuv loop (uv_spawn), so a
 * caller on any thread blocks only for the command. Its stdin is fed from a
 * buffer, its stdout captured up to a bound (or sent to /dev/null), its
 * stderr captured for the log (truncated), and it is killed (SIGKILL) at
 * the deadline. The child gets default signal dispositions and an empty
 * signal mask, and this process's environment.
 */
#ifndef NODEDNS_NODE_SUBPROCESS_H
#define NODEDNS_NODE_SUBPROCESS_H

#include <stddef.h>
#include <stdint.h>

/** Result of subprocess_run(). */
struct subprocess_result {
	int status;     /* exit code; 128+N when killed by signal N; -1 on timeout */
	char *out;      /* stdout, NUL-terminated (owned by caller, free with subprocess_result_free()), NULL when not asked */
	size_t outlen;
	char err[1024]; /* stderr (truncated), NUL-terminated, trailing newline cut, one line */
};

/**
 * Run @p path with @p argv (borrowed; no shell) and @p in (borrowed, may be
 * NULL) on its stdin, capturing stdout when @p max_out > 0 (more than that
 * is an error: -EFBIG, the command is killed, status -1) and stderr; kill it
 * after @p timeout_ms. @p res is always initialised, also on failure.
 * @return 0 when it ran (see status), -ETIMEDOUT (status -1), -EFBIG,
 * -ENOMEM, or -errno when it could not start.
 */
int subprocess_run(const char *path, char *const argv[], const char *in, size_t inlen,
		   size_t max_out, uint32_t timeout_ms, struct subprocess_result *res);

/** Free the captured stdout of @p res (safe twice). */
void subprocess_result_free(struct subprocess_result *res);

#endif
