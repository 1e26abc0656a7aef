/* src/config_check.c - --check-config: what a start would refuse, found without binding anything.
 *
 * A start refuses a config in several places: config_parse() (exit 2),
 * then while loading --kube-snapshot, starting the API watch (kubeconfig,
 * token, CA and client certificate files), reading the node-setup
 * environment and switching --user (exit 1). config_check_start() runs the
 * same functions those stages run, on private throw-away state, and stops
 * before the first socket: no listening socket, no API request, no node
 * change. The warnings a start would log (no upstream, no cluster source)
 * are logged too.
 */
#include "nodedns/config.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/io/k8s_watch.h"
#include "nodedns/node/supervisor.h"
#include "nodedns/util/log.h"

/* --kube-snapshot loads into a store of the configured cluster zone. */
static int check_snapshot(const struct config *cfg, char *err, size_t errlen)
{
	struct cluster_config ccfg;
	char why[512] = "";
	memset(&ccfg, 0, sizeof(ccfg));
	snprintf(ccfg.domain, sizeof(ccfg.domain), "%s", cfg->cluster_domain);
	ccfg.ttl_s = cfg->cluster_ttl_s;
	ccfg.pods_insecure = cfg->pods == CONFIG_PODS_INSECURE;
	struct k8s_store *store = k8s_store_new(&ccfg);
	if (!store) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = k8s_store_load_file(store, cfg->kube_snapshot, why, sizeof(why));
	if (rc < 0)
		snprintf(err, errlen, "--kube-snapshot %s: %s", cfg->kube_snapshot,
			 why[0] ? why : strerror(-rc));
	k8s_store_free(store);
	return rc < 0 ? rc : 0;
}

/* The watch is configured exactly as a start configures it (kubeconfig,
 * URL, token, CA and client certificate files), then closed before the
 * loop ever runs a request. */
static int check_kube(const struct config *cfg, char *err, size_t errlen)
{
	char why[512] = "";
	uv_loop_t loop;
	int rc = uv_loop_init(&loop);
	if (rc < 0) {
		snprintf(err, errlen, "event loop: %s", uv_strerror(rc));
		return rc;
	}
	struct cluster_config ccfg;
	memset(&ccfg, 0, sizeof(ccfg));
	snprintf(ccfg.domain, sizeof(ccfg.domain), "%s", cfg->cluster_domain);
	struct k8s_store *store = k8s_store_new(&ccfg);
	struct cluster_publisher *pub = cluster_publisher_new();
	struct k8s_watch *w = NULL;
	struct k8s_watch_config wc = {
		.api_url = cfg->kube_api,
		.token_file = cfg->kube_token_file,
		.ca_file = cfg->kube_ca_file,
		.kubeconfig = cfg->kubeconfig,
		.max_event_bytes = K8S_WATCH_MAX_EVENT_BYTES_DEFAULT,
	};
	if (!store || !pub) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	} else if ((rc = k8s_watch_start(&loop, &wc, store, pub, NULL, NULL, &w, why,
					 sizeof(why))) < 0) {
		snprintf(err, errlen, "kubernetes: %s", why[0] ? why : strerror(-rc));
	}
	k8s_watch_close(w);
	uv_run(&loop, UV_RUN_DEFAULT); /* only the close callbacks are left to run */
	uv_loop_close(&loop);
	cluster_publisher_free(pub);
	k8s_store_free(store);
	return rc < 0 ? rc : 0;
}

/* The node-setup environment the supervisor reads (NODEDNS_RUN_DIR, ...). */
static int check_node(const struct config *cfg, char *err, size_t errlen)
{
	if (!cfg->setup_interface && !cfg->setup_iptables)
		return 0;
	struct supervisor_config sc;
	return supervisor_config_init(&sc, err, errlen);
}

/* --user is looked up where a start switches to it: when running as root. */
static int check_user(const struct config *cfg, char *err, size_t errlen)
{
	if (geteuid() != 0 || !cfg->user || !*cfg->user || strcmp(cfg->user, "root") == 0)
		return 0;
	errno = 0;
	if (!getpwnam(cfg->user)) {
		snprintf(err, errlen, "--user %s: no such user", cfg->user);
		return errno ? -errno : -ENOENT;
	}
	return 0;
}

/* See config.h. */
int config_check_start(const struct config *cfg, char *err, size_t errlen)
{
	int rc;
	err[0] = '\0';
	if (cfg->nupstream == 0)
		log_warn("config", "no upstream servers (none given and none usable in /etc/resolv.conf): "
			 "names outside the cluster zone would get SERVFAIL");
	if (cfg->kube_snapshot)
		rc = check_snapshot(cfg, err, errlen);
	else if (cfg->kube_api || cfg->kubeconfig)
		rc = check_kube(cfg, err, errlen);
	else {
		log_warn("config", "no --kube-snapshot, no --kube-api and not in a cluster: the %s zone "
			 "would be %s", cfg->cluster_domain,
			 cfg->has_cluster_fallback ? "forwarded to --cluster-fallback" : "answered SERVFAIL");
		rc = 0;
	}
	if (rc == 0)
		rc = check_node(cfg, err, errlen);
	if (rc == 0)
		rc = check_user(cfg, err, errlen);
	return rc;
}
