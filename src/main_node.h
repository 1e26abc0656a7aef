/* src/main_node.h - main's side of the node-setup supervisor: become it, or take the sockets it bound.
 *
 * With --setup-interface or --setup-iptables the process the operator
 * started becomes the supervisor (src/node/supervisor.c): it owns the node
 * setup, binds the listening sockets once and runs the resolver as its
 * child, which comes back through main_node_setup_or_resolver() with
 * NODEDNS_SUPERVISED=1 and serves on the sockets it inherited.
 */
#ifndef NODEDNS_MAIN_NODE_H
#define NODEDNS_MAIN_NODE_H

#include <stddef.h>

#include "nodedns/config.h"
#include "nodedns/io/server.h"
#include "nodedns/node/supervisor.h"

/**
 * Attach to a supervisor that runs us (@p sup, the caller's, detached by
 * the caller), or become the supervisor when the config asks for node setup
 * (@p argv, borrowed, is what it runs as the resolver).
 * @return -1 to go on as the resolver (*inherited_fds: the number of
 * listening sockets a supervisor handed over, 0 when none), else the exit
 * status of the process.
 */
int main_node_setup_or_resolver(const struct config *cfg, char **argv, struct supervisor_child *sup,
				size_t *inherited_fds);

/**
 * Take the @p inherited_fds sockets a supervisor bound for worker @p worker
 * into @p out[0..cfg->nlisten), after checking each is what --listen asks
 * for. @return 0, or -EINVAL with a one-line reason in @p err.
 */
int main_node_adopt_fds(const struct config *cfg, size_t inherited_fds, unsigned worker,
			struct server_fds *out, char *err, size_t errlen);

#endif
