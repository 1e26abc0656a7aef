/* tests/fuzz/fuzz_config.c - libFuzzer target for the command line and the JSON config file.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=config for this one).
 * Reproduce a crash: build-fuzz/fuzz_config crash-<sha1>
 *
 *   input := file-bytes [ "\0\0" arg ("\0" arg)* ]
 *
 * The bytes before the first "\0\0" (all of them when there is none) are
 * written to a temporary file (one path per process). Without the argument
 * part, config_parse() runs on {"nodedns", "--config", <file>}. With it,
 * argv is "nodedns" followed by the NUL-separated arguments (at most 64),
 * where an argument "@" is replaced by the file's path and "--config=@" by
 * "--config=<path>". Arguments holding a '/' are refused (the input is
 * skipped): --config would open any file it names, and some (a FIFO,
 * /dev/stdin) block.
 *
 * Checked besides the sanitizers: config_parse() returns a config_result;
 * CONFIG_ERROR comes with a one-line message (printable, no newline) that
 * names an option or the config file; CONFIG_OK gives a config within the
 * documented bounds (listen addresses, threads 1..64, TTLs ordered, --kube-api
 * https://, domain lower case without a trailing dot, the text of every
 * address parses back to the same address); config_free() frees everything, and a second
 * config_parse() of the same argv gives the same result (no state left
 * behind in getopt).
 */
#include "nodedns/config.h"
#include "nodedns/util/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fuzz_check.h"

#define MAX_ARGS 64

static char g_cfg_path[512], g_resolv_path[512], g_config_arg[600];

static void cleanup(void)
{
	unlink(g_cfg_path);
	unlink(g_resolv_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOGL_ERROR, false);
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 400)
		tmp = "/tmp";
	snprintf(g_cfg_path, sizeof(g_cfg_path), "%s/nodedns-fuzz-config-%d.json", tmp,
		 (int)getpid());
	snprintf(g_resolv_path, sizeof(g_resolv_path), "%s/nodedns-fuzz-resolv-%d.conf", tmp,
		 (int)getpid());
	snprintf(g_config_arg, sizeof(g_config_arg), "--config=%s", g_cfg_path);
	FILE *f = fopen(g_resolv_path, "w");
	CHECK(f);
	/* The node-local address and a scoped IPv6 one exercise the filters. */
	fputs("search svc.cluster.local\nnameserver 169.254.20.10\nnameserver 10.0.0.10\n"
	      "nameserver fe80::1%eth0\nnameserver 10.0.0.10\nnameserver\noptions ndots:5\n",
	      f);
	CHECK(fclose(f) == 0);
	atexit(cleanup);
	/* In-cluster defaults come from the environment. */
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	/* --help and --version print to stdout. */
	if (!freopen("/dev/null", "w", stdout))
		abort();
	return 0;
}

static void check_addr(const struct netaddr *a)
{
	CHECK(a->sa.ss_family == AF_INET || a->sa.ss_family == AF_INET6);
	CHECK(a->salen == (a->sa.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						      : sizeof(struct sockaddr_in6)));
	CHECK(memchr(a->text, '\0', sizeof(a->text)) != NULL);
	struct netaddr b;
	CHECK(netaddr_parse(a->text, 1, &b) == 0);
	CHECK(b.salen == a->salen && memcmp(&b.sa, &a->sa, a->salen) == 0);
}

static void check_domain(const char *d, size_t cap)
{
	size_t n = strnlen(d, cap);
	CHECK(n < cap);
	if (n == 1 && d[0] == '.')
		return;
	CHECK(n > 0 && d[n - 1] != '.');
	for (size_t i = 0; i < n; i++)
		CHECK(!(d[i] >= 'A' && d[i] <= 'Z'));
}

static void check_config(const struct config *c)
{
	CHECK(c->nlisten >= 1 && c->nlisten <= CONFIG_MAX_LISTEN);
	for (size_t i = 0; i < c->nlisten; i++)
		check_addr(&c->listen[i]);
	CHECK(c->nupstream <= CONFIG_MAX_UPSTREAMS);
	for (size_t i = 0; i < c->nupstream; i++) {
		check_addr(&c->upstream[i]);
		for (size_t k = 0; k < c->nlisten; k++)
			CHECK(c->upstream[i].salen != c->listen[k].salen ||
			      memcmp(&c->upstream[i].sa, &c->listen[k].sa, c->listen[k].salen) != 0);
	}
	CHECK(c->nstubs <= CONFIG_MAX_STUBS);
	for (size_t i = 0; i < c->nstubs; i++) {
		check_domain(c->stubs[i].domain, sizeof(c->stubs[i].domain));
		CHECK(c->stubs[i].nservers >= 1 && c->stubs[i].nservers <= CONFIG_MAX_STUB_SERVERS);
		for (size_t k = 0; k < c->stubs[i].nservers; k++)
			check_addr(&c->stubs[i].servers[k]);
	}
	CHECK(c->nallow <= CONFIG_MAX_ALLOW);
	for (size_t i = 0; i < c->nallow; i++) {
		CHECK(c->allow[i].family == AF_INET || c->allow[i].family == AF_INET6);
		CHECK(c->allow[i].prefix <= (c->allow[i].family == AF_INET ? 32 : 128));
	}
	CHECK(c->threads >= 1 && c->threads <= CONFIG_MAX_THREADS);
	/* --kube-api is refused at parse time unless https:// (the environment
	 * default is https:// too). */
	CHECK(!c->kube_api || strncasecmp(c->kube_api, "https://", 8) == 0);
	CHECK(c->min_ttl_s <= c->max_ttl_s);
	CHECK(c->upstream_timeout_ms >= 50);
	CHECK(c->cache_memory_bytes >= 1024 * 1024);
	CHECK(c->upstream_proto == CONFIG_PROTO_TCP || c->upstream_proto == CONFIG_PROTO_UDP);
	CHECK(c->pods == CONFIG_PODS_INSECURE || c->pods == CONFIG_PODS_DISABLED);
	CHECK(c->log_level >= LOGL_ERROR && c->log_level <= LOGL_DEBUG);
	check_domain(c->cluster_domain, sizeof(c->cluster_domain));
	if (c->has_metrics)
		check_addr(&c->metrics);
	if (c->has_health)
		check_addr(&c->health);
	if (c->has_cluster_fallback)
		check_addr(&c->cluster_fallback);

	/* config_allowed() on a few addresses. */
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	s4.sin_addr.s_addr = htonl(0x0a000001);
	s6.sin6_addr.s6_addr[0] = 0xfd;
	(void)config_allowed(c, (const struct sockaddr *)&s4);
	(void)config_allowed(c, (const struct sockaddr *)&s6);
	if (c->nallow == 0)
		CHECK(config_allowed(c, (const struct sockaddr *)&s4));
}

static void check_err(const char *err, size_t cap)
{
	size_t n = strnlen(err, cap);
	CHECK(n > 0 && n < cap);
	for (size_t i = 0; i < n; i++)
		CHECK(err[i] != '\n');
	CHECK(strncmp(err, "--", 2) == 0 || strncmp(err, "config ", 7) == 0 ||
	      strncmp(err, "unknown option", 14) == 0 ||
	      strncmp(err, "unexpected argument", 19) == 0 ||
	      strncmp(err, "out of memory", 13) == 0);
}

/* Parse twice: the result must not depend on what an earlier call left. */
static void parse(int argc, char **argv)
{
	struct config c1, c2;
	char err1[512], err2[512];
	enum config_result r1 = config_parse(&c1, argc, argv, g_resolv_path, err1, sizeof(err1));
	CHECK(r1 == CONFIG_OK || r1 == CONFIG_EXIT_OK || r1 == CONFIG_ERROR);
	if (r1 == CONFIG_ERROR)
		check_err(err1, sizeof(err1));
	if (r1 == CONFIG_OK)
		check_config(&c1);
	enum config_result r2 = config_parse(&c2, argc, argv, g_resolv_path, err2, sizeof(err2));
	CHECK(r1 == r2);
	if (r1 == CONFIG_ERROR)
		CHECK(strcmp(err1, err2) == 0);
	if (r1 == CONFIG_OK) {
		CHECK(c1.nlisten == c2.nlisten && c1.nupstream == c2.nupstream &&
		      c1.nstubs == c2.nstubs && c1.threads == c2.threads &&
		      c1.cache_memory_bytes == c2.cache_memory_bytes);
	}
	config_free(&c1);
	config_free(&c2);
	/* A NULL error buffer is allowed. */
	struct config c3;
	CHECK(config_parse(&c3, argc, argv, g_resolv_path, NULL, 0) == r1);
	config_free(&c3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = NULL;
	for (size_t i = 0; i + 1 < size; i++) {
		if (data[i] == 0 && data[i + 1] == 0) {
			sep = data + i;
			break;
		}
	}
	size_t flen = sep ? (size_t)(sep - data) : size;
	FILE *f = fopen(g_cfg_path, "wb");
	CHECK(f);
	CHECK(fwrite(data, 1, flen, f) == flen);
	CHECK(fclose(f) == 0);

	if (!sep) {
		char *argv[] = { "nodedns", "--config", g_cfg_path, NULL };
		parse(3, argv);
		return 0;
	}

	/* The arguments: NUL-terminated copies (getopt wants char **). */
	size_t alen = size - flen - 2;
	char *args = malloc(alen + 1);
	CHECK(args);
	memcpy(args, sep + 2, alen);
	args[alen] = '\0';
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	argv[argc++] = "nodedns";
	int rc = 0;
	for (char *p = args; p <= args + alen && argc <= MAX_ARGS; p += strlen(p) + 1) {
		if (strcmp(p, "@") == 0) {
			argv[argc++] = g_cfg_path;
		} else if (strcmp(p, "--config=@") == 0) {
			argv[argc++] = g_config_arg;
		} else if (strchr(p, '/')) {
			rc = -1; /* could name any file */
			break;
		} else {
			argv[argc++] = p;
		}
	}
	argv[argc] = NULL;
	if (rc == 0)
		parse(argc, argv);
	free(args);
	return rc;
}
