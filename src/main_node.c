/* src/main_node.c - main's side of the node-setup supervisor: become it, or take the sockets it bound. */
#include "main_node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodedns/util/log.h"
#include "nodedns/node/netsetup.h"

static int listen_to_netsetup(const struct netaddr *c, struct netsetup_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (c->sa.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&c->sa;
		a->family = AF_INET;
		memcpy(a->ip, &in->sin_addr, 4);
		a->port = ntohs(in->sin_port);
		return 0;
	}
	if (c->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&c->sa;
		a->family = AF_INET6;
		memcpy(a->ip, &in6->sin6_addr, 16);
		a->port = ntohs(in6->sin6_port);
		return 0;
	}
	return -EINVAL;
}

/* The supervisor holds the listening sockets for every resolver it starts
 * (see supervisor.h): bound here, once, in the order the resolver's workers
 * take them (worker by worker, then listen address, UDP before TCP).
 * @return 0 with *fds (malloc'd, the caller's) and *n set, or -1 after
 * printing why. */
static int bind_for_supervisor(const struct config *cfg, int **fds, size_t *n)
{
	char err[256] = "";
	size_t per = cfg->nlisten * 2;
	*n = cfg->threads * per;
	*fds = calloc(*n, sizeof(**fds));
	if (!*fds) {
		fprintf(stderr, "nodedns: out of memory\n");
		return -1;
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		struct server_fds one[CONFIG_MAX_LISTEN];
		if (server_bind(cfg->listen, cfg->nlisten, one, err, sizeof(err)) < 0) {
			fprintf(stderr, "nodedns: %s\n", err);
			for (size_t k = 0; k < i * per; k++)
				close((*fds)[k]);
			free(*fds);
			*fds = NULL;
			return -1;
		}
		for (size_t j = 0; j < cfg->nlisten; j++) {
			(*fds)[i * per + 2 * j] = one[j].udp;
			(*fds)[i * per + 2 * j + 1] = one[j].tcp;
		}
	}
	return 0;
}

/* See main_node.h. */
int main_node_setup_or_resolver(const struct config *cfg, char **argv, struct supervisor_child *sup,
				size_t *inherited_fds)
{
	int rc = supervisor_child_attach(sup);
	if (rc < 0) {
		log_error("main", "the node setup supervisor is gone: exiting");
		return 1;
	}
	if (rc == 1) {
		const char *n = getenv(SUPERVISOR_LISTEN_FDS_ENV);
		*inherited_fds = n ? strtoul(n, NULL, 10) : 0;
		return -1;
	}
	if (!cfg->setup_interface && !cfg->setup_iptables)
		return -1;
	struct supervisor_config sc;
	char err[256] = "";
	if (supervisor_config_init(&sc, err, sizeof(err)) < 0) {
		fprintf(stderr, "nodedns: %s\n", err);
		return 2;
	}
	/* --run-dir (its default is NODEDNS_RUN_DIR, else the same directory):
	 * one directory for the lock, the node-setup state and the warm start. */
	if (cfg->run_dir[0] != '/' || strlen(cfg->run_dir) >= sizeof(sc.run_dir) - 32) {
		fprintf(stderr, "nodedns: --run-dir: must be an absolute path under %zu bytes (got '%s')\n",
			sizeof(sc.run_dir) - 32, cfg->run_dir);
		return 2;
	}
	snprintf(sc.run_dir, sizeof(sc.run_dir), "%s", cfg->run_dir);
	sc.net.ifname = cfg->setup_interface;
	sc.net.iptables = cfg->setup_iptables;
	for (size_t i = 0; i < cfg->nlisten && sc.net.naddrs < NETSETUP_MAX_ADDRS; i++)
		if (listen_to_netsetup(&cfg->listen[i], &sc.net.addrs[sc.net.naddrs]) == 0)
			sc.net.naddrs++;
	struct netsetup_addr health;
	if (cfg->has_health && listen_to_netsetup(&cfg->health, &health) == 0)
		sc.net.health_port = health.port;

	int *fds = NULL;
	size_t n = 0;
	if (bind_for_supervisor(cfg, &fds, &n) < 0)
		return 1;
	sc.listen_fds = fds;
	sc.nlisten_fds = n;
	int status = supervisor_run(&sc, argv);
	for (size_t k = 0; k < n; k++)
		close(fds[k]);
	free(fds);
	return status;
}

/* See main_node.h. */
int main_node_adopt_fds(const struct config *cfg, size_t inherited_fds, unsigned worker,
			struct server_fds *out, char *err, size_t errlen)
{
	if (inherited_fds != (size_t)cfg->threads * cfg->nlisten * 2) {
		snprintf(err, errlen, "the supervisor handed over %zu sockets, %u expected",
			 inherited_fds, cfg->threads * (unsigned)cfg->nlisten * 2);
		return -EINVAL;
	}
	for (size_t j = 0; j < cfg->nlisten; j++) {
		int pair[2];
		for (int k = 0; k < 2; k++) {
			int fd = SUPERVISOR_LISTEN_FD_BASE + (int)((worker * cfg->nlisten + j) * 2) + k;
			int type = 0;
			socklen_t tl = sizeof(type);
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
			    type != (k ? SOCK_STREAM : SOCK_DGRAM) ||
			    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
			    sl != cfg->listen[j].salen || memcmp(&ss, &cfg->listen[j].sa, sl) != 0) {
				snprintf(err, errlen, "inherited socket %d is not %s/%s", fd,
					 cfg->listen[j].text, k ? "tcp" : "udp");
				return -EINVAL;
			}
			fcntl(fd, F_SETFD, FD_CLOEXEC);
			pair[k] = fd;
		}
		out[j].udp = pair[0];
		out[j].tcp = pair[1];
	}
	return 0;
}
