/* tests/unit/test_config.c - command line, config file and resolv.conf parsing. */
#include "nodedns/config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodedns/util/log.h"

static char g_dir[256];
static char g_resolv[300]; /* "nameserver 10.0.0.10" */
static char g_err[512];

static void tmp_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", g_dir, name);
}

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(content, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Write @p content to g_dir/@p name and return the path in @p out. */
static void tmp_file(char *out, size_t len, const char *name, const char *content)
{
	tmp_path(out, len, name);
	write_file(out, content);
}

static enum config_result parse_with(struct config *cfg, const char *resolv, char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	memset(g_err, 0, sizeof(g_err));
	return config_parse(cfg, argc, argv, resolv, g_err, sizeof(g_err));
}

#define ARGV(...) ((char *[]){ "nodedns", __VA_ARGS__, NULL })
#define PARSE(cfg, ...) parse_with(cfg, g_resolv, ARGV(__VA_ARGS__))
#define PARSE0(cfg) parse_with(cfg, g_resolv, (char *[]){ "nodedns", NULL })

/* Parse argv, expect CONFIG_ERROR with @p needle in the message, free. */
static void expect_error(char **argv, const char *needle)
{
	struct config cfg;
	enum config_result r = parse_with(&cfg, g_resolv, argv);
	if (r != CONFIG_ERROR || !strstr(g_err, needle) || strchr(g_err, '\n')) {
		fprintf(stderr, "argv:");
		for (char **a = argv; *a; a++)
			fprintf(stderr, " '%s'", *a);
		fprintf(stderr, "\n  result %d, err '%s', want '%s'\n", r, g_err, needle);
	}
	assert_int_equal(r, CONFIG_ERROR);
	assert_non_null(strstr(g_err, needle));
	assert_null(strchr(g_err, '\n'));
	config_free(&cfg);
}

#define EXPECT_ERROR(needle, ...) expect_error(ARGV(__VA_ARGS__), needle)

static uint16_t addr_port(const struct netaddr *a)
{
	if (a->sa.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
}

static int setup(void **state)
{
	(void)state;
	strcpy(g_dir, "/tmp/nodedns-test-config-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	tmp_path(g_resolv, sizeof(g_resolv), "resolv.conf");
	FILE *f = fopen(g_resolv, "w");
	if (!f)
		return -1;
	fputs("nameserver 10.0.0.10\n", f);
	fclose(f);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------- defaults */

static void test_defaults(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(PARSE0(&cfg), CONFIG_OK);
	assert_string_equal(g_err, "");

	assert_null(cfg.config_file);
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.listen[0].text, "169.254.20.10:53");
	assert_int_equal(cfg.listen[0].salen, sizeof(struct sockaddr_in));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	/* The quota of this machine's cgroup, if any (test_default_threads
	 * checks the reading); never more than the online CPUs or 8. */
	assert_int_equal(cfg.threads, config_default_threads("/sys/fs/cgroup", "/proc/self/cgroup", ncpu));
	assert_true(cfg.threads >= 1 && cfg.threads <= (ncpu > 8 ? 8 : (ncpu < 1 ? 1 : ncpu)));
	assert_int_equal(cfg.nallow, 0);
	assert_int_equal(cfg.tcp_max_clients, 1000);
	assert_int_equal(cfg.tcp_idle_timeout_ms, 10000);
	assert_int_equal(cfg.tcp_max_inflight, 100);

	assert_int_equal(cfg.nupstream, 1);
	assert_string_equal(cfg.upstream[0].text, "10.0.0.10:53");
	assert_true(cfg.upstream_from_resolv_conf);
	assert_int_equal(cfg.upstream_proto, CONFIG_PROTO_TCP);
	assert_int_equal(cfg.upstream_timeout_ms, 2000);
	assert_int_equal(cfg.nstubs, 0);
	assert_int_equal(cfg.max_inflight, 10000);
	assert_int_equal(cfg.max_waiters, 1000);

	assert_int_equal(cfg.cache_memory_bytes, 64ull << 20);
	assert_int_equal(cfg.min_ttl_s, 0);
	assert_int_equal(cfg.max_ttl_s, 86400);
	assert_int_equal(cfg.neg_ttl_s, 300);
	assert_int_equal(cfg.serve_stale_s, 3600);
	assert_true(cfg.prefetch);

	assert_string_equal(cfg.cluster_domain, "cluster.local");
	assert_int_equal(cfg.cluster_ttl_s, 5);
	assert_null(cfg.kube_api);
	assert_string_equal(cfg.kube_token_file,
			    "/var/run/secrets/kubernetes.io/serviceaccount/token");
	assert_string_equal(cfg.kube_ca_file,
			    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
	assert_null(cfg.kubeconfig);
	assert_null(cfg.kube_snapshot);
	assert_false(cfg.has_cluster_fallback);
	assert_int_equal(cfg.pods, CONFIG_PODS_INSECURE);

	assert_null(cfg.setup_interface);
	assert_false(cfg.setup_iptables);

	assert_true(cfg.has_metrics);
	assert_string_equal(cfg.metrics.text, "0.0.0.0:9253");
	assert_true(cfg.has_health);
	assert_string_equal(cfg.health.text, "169.254.20.10:8080");
	assert_int_equal(cfg.log_level, LOGL_INFO);
	assert_false(cfg.log_json);
	assert_false(cfg.query_log);
	config_free(&cfg);
}

static void test_kube_api_env(void **state)
{
	(void)state;
	struct config cfg;

	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(PARSE0(&cfg), CONFIG_OK);
	assert_string_equal(cfg.kube_api, "https://10.96.0.1:443");
	config_free(&cfg);

	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	assert_int_equal(PARSE0(&cfg), CONFIG_OK);
	assert_string_equal(cfg.kube_api, "https://[fd00::1]:443");
	config_free(&cfg);

	/* An explicit --kube-api wins over the environment. */
	assert_int_equal(PARSE(&cfg, "--kube-api", "https://api.example:6443"), CONFIG_OK);
	assert_string_equal(cfg.kube_api, "https://api.example:6443");
	config_free(&cfg);

	/* --kubeconfig and --kube-snapshot replace the in-cluster default. */
	assert_int_equal(PARSE(&cfg, "--kubeconfig", "/k"), CONFIG_OK);
	assert_null(cfg.kube_api);
	config_free(&cfg);
	assert_int_equal(PARSE(&cfg, "--kube-snapshot", "/s.json"), CONFIG_OK);
	assert_null(cfg.kube_api);
	config_free(&cfg);

	/* Both variables are needed, as for client-go. */
	unsetenv("KUBERNETES_SERVICE_PORT");
	assert_int_equal(PARSE0(&cfg), CONFIG_OK);
	assert_null(cfg.kube_api);
	config_free(&cfg);
	unsetenv("KUBERNETES_SERVICE_HOST");
}

/* ------------------------------------------------------------- options */

/* --kube-api takes an https:// URL with a host and no user, password, query
 * or fragment; anything else is refused at start-up, naming the option,
 * not later when the watch starts. */
static void test_kube_api_url(void **state)
{
	(void)state;
	struct config cfg;
	static char *const good[] = {
		"https://10.96.0.1:443", "https://[fd00::1]:6443", "https://api.example",
		"https://api.example:6443/", "https://api.example/prefix", "HTTPS://api.example",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(PARSE(&cfg, "--kube-api", good[i]), CONFIG_OK);
		assert_string_equal(cfg.kube_api, good[i]);
		config_free(&cfg);
	}
	const char *want = "--kube-api: must be an https:// URL";
	EXPECT_ERROR(want, "--kube-api", "http://localhost:8001");
	EXPECT_ERROR(want, "--kube-api", "http://10.96.0.1:443");
	EXPECT_ERROR(want, "--kube-api", "ftp://10.96.0.1");
	EXPECT_ERROR(want, "--kube-api", "https://");
	EXPECT_ERROR(want, "--kube-api", "https://user@10.96.0.1");
	EXPECT_ERROR(want, "--kube-api", "https://user:secret@10.96.0.1");
	EXPECT_ERROR(want, "--kube-api", "https://10.96.0.1/?watch=1");
	EXPECT_ERROR(want, "--kube-api", "https://10.96.0.1/#frag");
	EXPECT_ERROR(want, "--kube-api", "10.96.0.1:443");
	EXPECT_ERROR(want, "--kube-api", "https://10.96.0.1:99999");
	/* libcurl reads these as https://host/...: found by fuzz_config. */
	EXPECT_ERROR(want, "--kube-api", "https:/--no-prefetch/10.96.0.1:443");
	EXPECT_ERROR(want, "--kube-api", "https:10.96.0.1:443");
	EXPECT_ERROR("--kube-api: must be an https:// URL with a host and no user, password, "
		     "query or fragment (got 'http://a?b')", "--kube-api", "http://a\nb");

	/* The same from the config file. */
	char path[300];
	tmp_file(path, sizeof(path), "kube-api.json", "{\"kube-api\": \"http://10.96.0.1\"}");
	EXPECT_ERROR("key 'kube-api': must be an https:// URL", "--config", path);
}

static void test_serving_options(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(PARSE(&cfg, "--listen", "127.0.0.1:5353", "--listen=[::1]",
			       "--listen", "fe80::1", "--threads", "3", "--allow", "10.0.0.0/8",
			       "--allow", "fd00::/8", "--tcp-max-clients", "7",
			       "--tcp-idle-timeout", "1500", "--tcp-max-inflight", "9"),
			 CONFIG_OK);
	assert_int_equal(cfg.nlisten, 3);
	assert_string_equal(cfg.listen[0].text, "127.0.0.1:5353");
	assert_string_equal(cfg.listen[1].text, "[::1]:53");
	assert_string_equal(cfg.listen[2].text, "[fe80::1]:53");
	assert_int_equal(cfg.listen[1].salen, sizeof(struct sockaddr_in6));
	assert_int_equal(cfg.threads, 3);
	assert_int_equal(cfg.nallow, 2);
	assert_int_equal(cfg.allow[0].family, AF_INET);
	assert_int_equal(cfg.allow[0].prefix, 8);
	assert_int_equal(cfg.allow[1].family, AF_INET6);
	assert_int_equal(cfg.allow[1].prefix, 8);
	assert_int_equal(cfg.tcp_max_clients, 7);
	assert_int_equal(cfg.tcp_idle_timeout_ms, 1500);
	assert_int_equal(cfg.tcp_max_inflight, 9);
	/* Health follows the first listen address. */
	assert_string_equal(cfg.health.text, "127.0.0.1:8080");
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--listen", "[::1]:5300"), CONFIG_OK);
	assert_string_equal(cfg.health.text, "[::1]:8080");
	config_free(&cfg);

	/* Bounds. */
	assert_int_equal(PARSE(&cfg, "--threads", "1", "--threads", "64"), CONFIG_OK);
	assert_int_equal(cfg.threads, 64);
	config_free(&cfg);
}

static void test_forwarding_options(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(PARSE(&cfg, "--upstream", "8.8.8.8", "--upstream", "[2001:db8::1]:5353",
			       "--upstream-proto", "udp", "--upstream-timeout", "50",
			       "--stub", "Corp.Example.=10.1.1.1,[fd00::53]:5353",
			       "--stub", ".=9.9.9.9", "--max-inflight", "5", "--max-waiters", "6"),
			 CONFIG_OK);
	assert_int_equal(cfg.nupstream, 2);
	assert_false(cfg.upstream_from_resolv_conf);
	assert_string_equal(cfg.upstream[0].text, "8.8.8.8:53");
	assert_string_equal(cfg.upstream[1].text, "[2001:db8::1]:5353");
	assert_int_equal(cfg.upstream_proto, CONFIG_PROTO_UDP);
	assert_int_equal(cfg.upstream_timeout_ms, 50);
	assert_int_equal(cfg.nstubs, 2);
	assert_string_equal(cfg.stubs[0].domain, "corp.example");
	assert_int_equal(cfg.stubs[0].nservers, 2);
	assert_string_equal(cfg.stubs[0].servers[0].text, "10.1.1.1:53");
	assert_string_equal(cfg.stubs[0].servers[1].text, "[fd00::53]:5353");
	assert_string_equal(cfg.stubs[1].domain, ".");
	assert_int_equal(cfg.stubs[1].nservers, 1);
	assert_int_equal(cfg.max_inflight, 5);
	assert_int_equal(cfg.max_waiters, 6);
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--upstream-proto", "tcp", "--upstream-timeout", "60000"),
			 CONFIG_OK);
	assert_int_equal(cfg.upstream_proto, CONFIG_PROTO_TCP);
	assert_int_equal(cfg.upstream_timeout_ms, 60000);
	config_free(&cfg);

	/* Same IP, other port than our listen address: fine. */
	assert_int_equal(PARSE(&cfg, "--listen", "127.0.0.1:5353", "--upstream", "127.0.0.1"),
			 CONFIG_OK);
	assert_int_equal(cfg.nupstream, 1);
	config_free(&cfg);

	/* Eight servers per stub is the maximum. */
	assert_int_equal(PARSE(&cfg, "--stub", "a=1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,"
					       "1.1.1.6,1.1.1.7,1.1.1.8"),
			 CONFIG_OK);
	assert_int_equal(cfg.stubs[0].nservers, CONFIG_MAX_STUB_SERVERS);
	config_free(&cfg);
}

static void test_cache_options(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(PARSE(&cfg, "--cache-memory", "2G", "--cache-memory", "2M",
			       "--min-ttl", "30", "--max-ttl", "604800", "--neg-ttl", "86400",
			       "--serve-stale", "0", "--no-prefetch"),
			 CONFIG_OK);
	assert_int_equal(cfg.cache_memory_bytes, 2u << 20);
	assert_int_equal(cfg.min_ttl_s, 30);
	assert_int_equal(cfg.max_ttl_s, 604800);
	assert_int_equal(cfg.neg_ttl_s, 86400);
	assert_int_equal(cfg.serve_stale_s, 0);
	assert_false(cfg.prefetch);
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--no-prefetch", "--prefetch", "--cache-memory", "64G",
			       "--min-ttl", "60", "--max-ttl", "60"),
			 CONFIG_OK);
	assert_true(cfg.prefetch);
	assert_int_equal(cfg.cache_memory_bytes, 64ull << 30);
	assert_int_equal(cfg.min_ttl_s, 60);
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--cache-memory", "1048576"), CONFIG_OK);
	assert_int_equal(cfg.cache_memory_bytes, 1u << 20);
	config_free(&cfg);
}

static void test_cluster_options(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(PARSE(&cfg, "--cluster-domain", "My-Cluster.Example.", "--cluster-ttl",
			       "3600", "--kube-api", "https://10.0.0.1:6443", "--kube-token-file",
			       "/t", "--kube-ca-file", "/ca", "--kubeconfig", "/kc",
			       "--kube-snapshot", "/snap.json", "--cluster-fallback", "10.96.0.10",
			       "--pods", "disabled"),
			 CONFIG_OK);
	assert_string_equal(cfg.cluster_domain, "my-cluster.example");
	assert_int_equal(cfg.cluster_ttl_s, 3600);
	assert_string_equal(cfg.kube_api, "https://10.0.0.1:6443");
	assert_string_equal(cfg.kube_token_file, "/t");
	assert_string_equal(cfg.kube_ca_file, "/ca");
	assert_string_equal(cfg.kubeconfig, "/kc");
	assert_string_equal(cfg.kube_snapshot, "/snap.json");
	assert_true(cfg.has_cluster_fallback);
	assert_string_equal(cfg.cluster_fallback.text, "10.96.0.10:53");
	assert_int_equal(cfg.pods, CONFIG_PODS_DISABLED);
	config_free(&cfg);

	/* Repeated string options: the last one wins and nothing leaks. */
	assert_int_equal(PARSE(&cfg, "--kubeconfig", "/a", "--kubeconfig", "/b", "--pods",
			       "disabled", "--pods", "insecure", "--cluster-ttl", "0",
			       "--cluster-domain", "a_b.c", "--kube-api", "https://localhost:8001"),
			 CONFIG_OK);
	assert_string_equal(cfg.kubeconfig, "/b");
	assert_int_equal(cfg.pods, CONFIG_PODS_INSECURE);
	assert_int_equal(cfg.cluster_ttl_s, 0);
	assert_string_equal(cfg.cluster_domain, "a_b.c");
	assert_string_equal(cfg.kube_api, "https://localhost:8001");
	config_free(&cfg);

	/* 253 characters: the longest domain. */
	char dom[254];
	for (int i = 0; i < 253; i++)
		dom[i] = (i % 2) ? '.' : 'a';
	dom[252] = 'a';
	dom[253] = '\0';
	assert_int_equal(PARSE(&cfg, "--cluster-domain", dom), CONFIG_OK);
	assert_string_equal(cfg.cluster_domain, dom);
	config_free(&cfg);
}

static void test_node_options(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(PARSE(&cfg, "--setup-interface", "nodelocaldns0", "--setup-iptables"),
			 CONFIG_OK);
	assert_string_equal(cfg.setup_interface, "nodelocaldns0");
	assert_true(cfg.setup_iptables);
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--setup-interface", "abcdefghijklmno"), CONFIG_OK);
	assert_string_equal(cfg.setup_interface, "abcdefghijklmno");
	config_free(&cfg);
}

static void test_observability_options(void **state)
{
	(void)state;
	struct config cfg;
	assert_int_equal(PARSE(&cfg, "--metrics", "127.0.0.1", "--health", "[::1]:9000",
			       "--log-level", "debug", "--log-format", "json", "--query-log"),
			 CONFIG_OK);
	assert_true(cfg.has_metrics);
	assert_string_equal(cfg.metrics.text, "127.0.0.1:9253");
	assert_true(cfg.has_health);
	assert_string_equal(cfg.health.text, "[::1]:9000");
	assert_int_equal(cfg.log_level, LOGL_DEBUG);
	assert_true(cfg.log_json);
	assert_true(cfg.query_log);
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--metrics", "none", "--health", "none", "--log-level",
			       "warn", "--log-format", "text"),
			 CONFIG_OK);
	assert_false(cfg.has_metrics);
	assert_false(cfg.has_health);
	assert_int_equal(cfg.log_level, LOGL_WARN);
	assert_false(cfg.log_json);
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--health", "10.0.0.1", "--log-level", "error"), CONFIG_OK);
	assert_string_equal(cfg.health.text, "10.0.0.1:8080");
	assert_int_equal(cfg.log_level, LOGL_ERROR);
	config_free(&cfg);
}

/* ---------------------------------------------------------- bad values */

static void test_bad_values(void **state)
{
	(void)state;
	EXPECT_ERROR("--threads: must be an integer from 1 to 64 (got 'abc')", "--threads", "abc");
	EXPECT_ERROR("--threads", "--threads", "0");
	EXPECT_ERROR("--threads", "--threads", "65");
	EXPECT_ERROR("--threads", "--threads", "-1");
	EXPECT_ERROR("--threads", "--threads", "+4");
	EXPECT_ERROR("--threads", "--threads", " 4");
	EXPECT_ERROR("--threads", "--threads", "4 ");
	EXPECT_ERROR("--threads", "--threads", "");
	EXPECT_ERROR("--threads", "--threads", "99999999999999999999999");
	EXPECT_ERROR("--tcp-max-clients", "--tcp-max-clients", "0");
	EXPECT_ERROR("--tcp-max-clients", "--tcp-max-clients", "1000001");
	EXPECT_ERROR("--tcp-idle-timeout", "--tcp-idle-timeout", "0");
	EXPECT_ERROR("--tcp-idle-timeout", "--tcp-idle-timeout", "3600001");
	EXPECT_ERROR("--tcp-max-inflight", "--tcp-max-inflight", "0");
	EXPECT_ERROR("--tcp-max-inflight", "--tcp-max-inflight", "65536");
	EXPECT_ERROR("--upstream-timeout", "--upstream-timeout", "49");
	EXPECT_ERROR("--upstream-timeout", "--upstream-timeout", "60001");
	EXPECT_ERROR("--max-inflight", "--max-inflight", "0");
	EXPECT_ERROR("--max-waiters", "--max-waiters", "x");
	EXPECT_ERROR("--cache-memory", "--cache-memory", "1023K");
	EXPECT_ERROR("--cache-memory", "--cache-memory", "65G");
	EXPECT_ERROR("--cache-memory", "--cache-memory", "64MB");
	EXPECT_ERROR("--cache-memory", "--cache-memory", "-64M");
	EXPECT_ERROR("--cache-memory", "--cache-memory", "M");
	EXPECT_ERROR("--max-ttl", "--max-ttl", "604801");
	EXPECT_ERROR("--min-ttl", "--min-ttl", "604801");
	EXPECT_ERROR("--min-ttl", "--min-ttl", "100", "--max-ttl", "99");
	EXPECT_ERROR("--neg-ttl", "--neg-ttl", "86401");
	EXPECT_ERROR("--serve-stale", "--serve-stale", "604801");
	EXPECT_ERROR("--cluster-ttl", "--cluster-ttl", "3601");

	EXPECT_ERROR("--listen", "--listen", "localhost");
	EXPECT_ERROR("--listen", "--listen", "1.2.3.4:0");
	EXPECT_ERROR("--listen", "--listen", "1.2.3.4:65536");
	EXPECT_ERROR("--listen", "--listen", "[::1");
	EXPECT_ERROR("--listen: 127.0.0.1:53 given twice", "--listen", "127.0.0.1",
		     "--listen", "127.0.0.1:53");
	EXPECT_ERROR("--upstream", "--upstream", "dns.google");
	EXPECT_ERROR("--upstream: 169.254.20.10:53 is one of our --listen addresses",
		     "--upstream", "169.254.20.10");
	EXPECT_ERROR("--upstream: [::1]:5353 is one of our --listen addresses", "--upstream",
		     "[::1]:5353", "--listen", "[::1]:5353");
	EXPECT_ERROR("--upstream", "--upstream", "8.8.8.8", "--upstream", "8.8.8.8:53");
	EXPECT_ERROR("--upstream-proto", "--upstream-proto", "tls");
	EXPECT_ERROR("--allow", "--allow", "10.0.0.0/33");
	EXPECT_ERROR("--allow", "--allow", "fd00::/129");
	EXPECT_ERROR("--allow", "--allow", "10.0.0.0/");
	EXPECT_ERROR("--allow", "--allow", "example.com/8");
	EXPECT_ERROR("--allow", "--allow", "/8");

	EXPECT_ERROR("--stub", "--stub", "corp.example");
	EXPECT_ERROR("--stub", "--stub", "corp.example=");
	EXPECT_ERROR("--stub", "--stub", "=1.2.3.4");
	EXPECT_ERROR("--stub", "--stub", "corp.example=1.2.3.4,");
	EXPECT_ERROR("--stub", "--stub", "corp.example=ns1.corp.example");
	EXPECT_ERROR("--stub", "--stub", "corp..example=1.2.3.4");
	EXPECT_ERROR("--stub", "--stub", "a=1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,"
					 "1.1.1.6,1.1.1.7,1.1.1.8,1.1.1.9");
	EXPECT_ERROR("--stub: domain 'a.b' given twice", "--stub", "a.b=1.1.1.1", "--stub",
		     "A.B.=2.2.2.2");

	EXPECT_ERROR("--cluster-domain", "--cluster-domain", "");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", ".");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", "..");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", ".cluster.local");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", "cluster..local");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", "cluster.local..");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", "clu ster.local");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", "cluster.l\xc3\xb6" "cal");
	EXPECT_ERROR("--cluster-domain", "--cluster-domain",
		     "a234567890123456789012345678901234567890123456789012345678901234.local");
	char dom[256];
	for (int i = 0; i < 255; i++)
		dom[i] = (i % 2) ? '.' : 'a';
	dom[254] = 'a';
	dom[255] = '\0';
	EXPECT_ERROR("--cluster-domain", "--cluster-domain", dom);

	EXPECT_ERROR("--kube-api", "--kube-api", "");
	EXPECT_ERROR("--kube-api", "--kube-api", "10.0.0.1:6443");
	EXPECT_ERROR("--kube-api", "--kube-api", "https://");
	EXPECT_ERROR("--kube-token-file", "--kube-token-file", "");
	EXPECT_ERROR("--kube-ca-file", "--kube-ca-file", "");
	EXPECT_ERROR("--kubeconfig", "--kubeconfig", "");
	EXPECT_ERROR("--kube-snapshot", "--kube-snapshot", "");
	EXPECT_ERROR("--cluster-fallback", "--cluster-fallback", "kube-dns");
	EXPECT_ERROR("--pods", "--pods", "verified");
	EXPECT_ERROR("--setup-interface", "--setup-interface", "");
	EXPECT_ERROR("--setup-interface", "--setup-interface", "abcdefghijklmnop");
	EXPECT_ERROR("--setup-interface", "--setup-interface", "a/b");
	EXPECT_ERROR("--setup-interface", "--setup-interface", "a b");
	EXPECT_ERROR("--metrics", "--metrics", "off");
	EXPECT_ERROR("--health", "--health", "1.2.3.4:x");
	EXPECT_ERROR("--log-level", "--log-level", "trace");
	EXPECT_ERROR("--log-format", "--log-format", "xml");
	EXPECT_ERROR("--config", "--config", "");

	/* Control characters never reach the one-line message. */
	EXPECT_ERROR("--pods: must be disabled or insecure (got 'a?b')", "--pods", "a\nb");
}

/* argv "nodedns OPT V1 ... OPT Vn", each value "<prefix><i + first><suffix>"
 * for i from 0; valid until the next call. */
static char **repeated(const char *opt, const char *prefix, int first, const char *suffix, int n)
{
	static char vals[CONFIG_MAX_ALLOW + 1][32];
	static char *argv[2 * (CONFIG_MAX_ALLOW + 1) + 2];
	int argc = 0;
	assert_true(n <= CONFIG_MAX_ALLOW + 1);
	argv[argc++] = "nodedns";
	for (int i = 0; i < n; i++) {
		snprintf(vals[i], sizeof(vals[i]), "%s%d%s", prefix, i + first, suffix);
		argv[argc++] = (char *)opt;
		argv[argc++] = vals[i];
	}
	argv[argc] = NULL;
	return argv;
}

/* Each repeatable option: its maximum count fits, one more does not. */
static void test_bounds(void **state)
{
	(void)state;
	static const struct {
		const char *opt, *prefix, *suffix; /* values "<prefix><i + first><suffix>" */
		int first, max;
		size_t count; /* offset of the config's count of them; SIZE_MAX: not checked */
		const char *needle; /* in the error for max + 1 */
	} limits[] = {
		{ "--listen", "127.0.0.", "", 1, CONFIG_MAX_LISTEN, offsetof(struct config, nlisten),
		  "--listen: at most 16" },
		{ "--upstream", "10.0.1.", "", 1, CONFIG_MAX_UPSTREAMS, SIZE_MAX, "--upstream" },
		{ "--stub", "d", ".example=10.0.0.1", 0, CONFIG_MAX_STUBS, offsetof(struct config, nstubs),
		  "--stub" },
		{ "--allow", "10.", ".0.0/16", 0, CONFIG_MAX_ALLOW, offsetof(struct config, nallow), "--allow" },
	};
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		struct config cfg;
		char **argv = repeated(limits[i].opt, limits[i].prefix, limits[i].first, limits[i].suffix,
				       limits[i].max);
		assert_int_equal(parse_with(&cfg, g_resolv, argv), CONFIG_OK);
		if (limits[i].count != SIZE_MAX)
			assert_int_equal(*(const size_t *)((const char *)&cfg + limits[i].count), limits[i].max);
		config_free(&cfg);
		argv = repeated(limits[i].opt, limits[i].prefix, limits[i].first, limits[i].suffix,
				limits[i].max + 1);
		expect_error(argv, limits[i].needle);
	}
}

static void test_bad_syntax(void **state)
{
	(void)state;
	EXPECT_ERROR("unknown option '--bogus'", "--bogus");
	EXPECT_ERROR("unknown option '--bogus'", "--bogus=1");
	EXPECT_ERROR("unknown option '--thr' (did you mean --threads?)", "--thr", "4");
	EXPECT_ERROR("unknown option '-t'", "-t", "4");
	EXPECT_ERROR("unknown option '-h'", "-h");
	EXPECT_ERROR("--threads: missing value", "--threads");
	EXPECT_ERROR("--prefetch: takes no value", "--prefetch=yes");
	EXPECT_ERROR("unexpected argument 'extra'", "--threads", "2", "extra");
	EXPECT_ERROR("unexpected argument 'extra'", "extra", "--threads", "2");
	EXPECT_ERROR("unexpected argument '-'", "-");
	EXPECT_ERROR("unexpected argument 'x'", "--", "x");
	/* Option-like values are still values. */
	EXPECT_ERROR("--threads: must be an integer from 1 to 64 (got '--listen')", "--threads",
		     "--listen");
}

/* ------------------------------------------------------------ the file */

static void test_file(void **state)
{
	(void)state;
	char path[512];
	struct config cfg;
	tmp_file(path, sizeof(path), "full.json",
		 "{\n"
		 "  \"listen\": [\"127.0.0.1:5353\", \"[::1]:5353\"],\n"
		 "  \"threads\": 2,\n"
		 "  \"allow\": \"10.0.0.0/8\",\n"
		 "  \"tcp-max-clients\": \"50\",\n"
		 "  \"tcp-idle-timeout\": 3000,\n"
		 "  \"tcp-max-inflight\": 10,\n"
		 "  \"upstream\": [\"8.8.8.8\", \"1.1.1.1:53\"],\n"
		 "  \"upstream-proto\": \"udp\",\n"
		 "  \"upstream-timeout\": 500,\n"
		 "  \"stub\": [\"corp=10.1.1.1\"],\n"
		 "  \"max-inflight\": 100,\n"
		 "  \"max-waiters\": 10,\n"
		 "  \"cache-memory\": \"16M\",\n"
		 "  \"min-ttl\": 5,\n"
		 "  \"max-ttl\": 3600,\n"
		 "  \"neg-ttl\": 60,\n"
		 "  \"serve-stale\": 0,\n"
		 "  \"prefetch\": false,\n"
		 "  \"cluster-domain\": \"k8s.example\",\n"
		 "  \"cluster-ttl\": 30,\n"
		 "  \"kube-api\": \"https://k:6443\",\n"
		 "  \"kube-token-file\": \"/tok\",\n"
		 "  \"kube-ca-file\": \"/ca\",\n"
		 "  \"kubeconfig\": \"/kc\",\n"
		 "  \"kube-snapshot\": \"/snap\",\n"
		 "  \"cluster-fallback\": \"10.96.0.10:53\",\n"
		 "  \"pods\": \"disabled\",\n"
		 "  \"setup-interface\": \"nodedns0\",\n"
		 "  \"setup-iptables\": true,\n"
		 "  \"metrics\": \"none\",\n"
		 "  \"health\": \"127.0.0.1:8081\",\n"
		 "  \"log-level\": \"debug\",\n"
		 "  \"log-format\": \"json\",\n"
		 "  \"query-log\": true\n"
		 "}\n");
	assert_int_equal(PARSE(&cfg, "--config", path), CONFIG_OK);
	assert_string_equal(cfg.config_file, path);
	assert_int_equal(cfg.nlisten, 2);
	assert_string_equal(cfg.listen[1].text, "[::1]:5353");
	assert_int_equal(cfg.threads, 2);
	assert_int_equal(cfg.nallow, 1);
	assert_int_equal(cfg.tcp_max_clients, 50);
	assert_int_equal(cfg.tcp_idle_timeout_ms, 3000);
	assert_int_equal(cfg.tcp_max_inflight, 10);
	assert_int_equal(cfg.nupstream, 2);
	assert_false(cfg.upstream_from_resolv_conf);
	assert_string_equal(cfg.upstream[1].text, "1.1.1.1:53");
	assert_int_equal(cfg.upstream_proto, CONFIG_PROTO_UDP);
	assert_int_equal(cfg.upstream_timeout_ms, 500);
	assert_int_equal(cfg.nstubs, 1);
	assert_string_equal(cfg.stubs[0].domain, "corp");
	assert_int_equal(cfg.max_inflight, 100);
	assert_int_equal(cfg.max_waiters, 10);
	assert_int_equal(cfg.cache_memory_bytes, 16u << 20);
	assert_int_equal(cfg.min_ttl_s, 5);
	assert_int_equal(cfg.max_ttl_s, 3600);
	assert_int_equal(cfg.neg_ttl_s, 60);
	assert_int_equal(cfg.serve_stale_s, 0);
	assert_false(cfg.prefetch);
	assert_string_equal(cfg.cluster_domain, "k8s.example");
	assert_int_equal(cfg.cluster_ttl_s, 30);
	assert_string_equal(cfg.kube_api, "https://k:6443");
	assert_string_equal(cfg.kube_token_file, "/tok");
	assert_string_equal(cfg.kube_ca_file, "/ca");
	assert_string_equal(cfg.kubeconfig, "/kc");
	assert_string_equal(cfg.kube_snapshot, "/snap");
	assert_true(cfg.has_cluster_fallback);
	assert_int_equal(cfg.pods, CONFIG_PODS_DISABLED);
	assert_string_equal(cfg.setup_interface, "nodedns0");
	assert_true(cfg.setup_iptables);
	assert_false(cfg.has_metrics);
	assert_string_equal(cfg.health.text, "127.0.0.1:8081");
	assert_int_equal(cfg.log_level, LOGL_DEBUG);
	assert_true(cfg.log_json);
	assert_true(cfg.query_log);
	config_free(&cfg);

	/* Flags override the file, wherever --config stands; a repeatable
	 * flag replaces the file's list, and repetitions add up. */
	assert_int_equal(PARSE(&cfg, "--threads", "5", "--listen", "127.0.0.2", "--config", path,
			       "--listen", "127.0.0.3", "--prefetch", "--kubeconfig", "/other",
			       "--metrics", "0.0.0.0:9999"),
			 CONFIG_OK);
	assert_int_equal(cfg.threads, 5);
	assert_int_equal(cfg.nlisten, 2);
	assert_string_equal(cfg.listen[0].text, "127.0.0.2:53");
	assert_string_equal(cfg.listen[1].text, "127.0.0.3:53");
	assert_true(cfg.prefetch);
	assert_string_equal(cfg.kubeconfig, "/other");
	assert_true(cfg.has_metrics);
	assert_string_equal(cfg.metrics.text, "0.0.0.0:9999");
	/* Untouched by flags: the file's values. */
	assert_int_equal(cfg.nupstream, 2);
	assert_int_equal(cfg.nstubs, 1);
	assert_int_equal(cfg.nallow, 1);
	config_free(&cfg);

	/* --config=FILE works too; the last --config wins. */
	char other[512];
	tmp_file(other, sizeof(other), "other.json", "{\"threads\": 7}");
	assert_int_equal(PARSE(&cfg, "--config", path, "--config="), CONFIG_ERROR);
	assert_non_null(strstr(g_err, "--config: must not be empty"));
	config_free(&cfg);
	char joined[600];
	snprintf(joined, sizeof(joined), "--config=%s", other);
	assert_int_equal(PARSE(&cfg, "--config", path, joined), CONFIG_OK);
	assert_int_equal(cfg.threads, 7);
	assert_string_equal(cfg.config_file, other);
	config_free(&cfg);
}

static void test_file_forms(void **state)
{
	(void)state;
	char path[512];
	struct config cfg;

	/* Empty object: all defaults. */
	tmp_file(path, sizeof(path), "empty.json", "{}");
	assert_int_equal(PARSE(&cfg, "--config", path), CONFIG_OK);
	assert_int_equal(cfg.nlisten, 1);
	assert_true(cfg.upstream_from_resolv_conf);
	config_free(&cfg);

	/* A single string for a repeatable option; "no-prefetch" as a key;
	 * sizes as integers; an empty array leaves the default. */
	tmp_file(path, sizeof(path), "forms.json",
		 "{\"upstream\": \"9.9.9.9\", \"no-prefetch\": true, \"cache-memory\": 2097152,"
		 " \"listen\": [], \"stub\": \"x.y=1.2.3.4:5300\"}");
	assert_int_equal(PARSE(&cfg, "--config", path), CONFIG_OK);
	assert_int_equal(cfg.nupstream, 1);
	assert_string_equal(cfg.upstream[0].text, "9.9.9.9:53");
	assert_false(cfg.prefetch);
	assert_int_equal(cfg.cache_memory_bytes, 2u << 20);
	assert_int_equal(cfg.nlisten, 1);
	assert_string_equal(cfg.listen[0].text, "169.254.20.10:53");
	assert_string_equal(cfg.stubs[0].servers[0].text, "1.2.3.4:5300");
	config_free(&cfg);

	/* Cross checks see the file and the flags together. */
	tmp_file(path, sizeof(path), "ttl.json", "{\"min-ttl\": 100}");
	assert_int_equal(PARSE(&cfg, "--config", path, "--max-ttl", "50"), CONFIG_ERROR);
	assert_non_null(strstr(g_err, "--min-ttl"));
	config_free(&cfg);
	assert_int_equal(PARSE(&cfg, "--config", path, "--min-ttl", "10", "--max-ttl", "50"),
			 CONFIG_OK);
	config_free(&cfg);

	tmp_file(path, sizeof(path), "loop.json", "{\"upstream\": [\"127.0.0.1:5353\"]}");
	assert_int_equal(PARSE(&cfg, "--config", path, "--listen", "127.0.0.1:5353"),
			 CONFIG_ERROR);
	assert_non_null(strstr(g_err, "is one of our --listen addresses"));
	config_free(&cfg);
}

static void expect_file_error(const char *json, const char *needle)
{
	char path[512], want[700];
	tmp_file(path, sizeof(path), "bad.json", json);
	snprintf(want, sizeof(want), "config %s: %s", path, needle);
	expect_error(ARGV("--config", path), want);
}

static void test_file_errors(void **state)
{
	(void)state;
	expect_file_error("{\"bogus\": 1}", "unknown key 'bogus'");
	expect_file_error("{\"threads\": 2, \"Threads\": 2}", "unknown key 'Threads'");
	expect_file_error("{\"config\": \"/x\"}", "unknown key 'config'");
	expect_file_error("{\"help\": true}", "unknown key 'help'");
	expect_file_error("{\"version\": true}", "unknown key 'version'");

	expect_file_error("{\"threads\": \"many\"}", "key 'threads': must be an integer from 1 to 64");
	expect_file_error("{\"threads\": 100}", "key 'threads': must be an integer from 1 to 64");
	expect_file_error("{\"threads\": -1}", "key 'threads': must be an integer");
	expect_file_error("{\"threads\": 1.5}", "key 'threads': must be an integer or a string");
	expect_file_error("{\"threads\": true}", "key 'threads': must be an integer or a string");
	expect_file_error("{\"threads\": null}", "key 'threads': must be an integer or a string");
	expect_file_error("{\"cache-memory\": [1]}", "key 'cache-memory'");
	expect_file_error("{\"prefetch\": \"yes\"}", "key 'prefetch': must be true or false");
	expect_file_error("{\"prefetch\": 1}", "key 'prefetch': must be true or false");
	expect_file_error("{\"query-log\": null}", "key 'query-log'");
	expect_file_error("{\"pods\": 1}", "key 'pods': must be a string");
	expect_file_error("{\"kubeconfig\": [\"/a\"]}", "key 'kubeconfig': must be a string");
	expect_file_error("{\"listen\": 53}", "key 'listen': must be a string or an array of strings");
	expect_file_error("{\"listen\": [\"1.2.3.4\", 53]}", "key 'listen': must be a string or an array");
	expect_file_error("{\"listen\": {\"a\": 1}}", "key 'listen'");
	expect_file_error("{\"listen\": [\"nope\"]}", "key 'listen': must be IPv4[:PORT]");
	expect_file_error("{\"stub\": [\"a=b\"]}", "key 'stub': bad server address");
	expect_file_error("{\"cluster-domain\": \"a..b\"}", "key 'cluster-domain': empty label");

	expect_file_error("[1, 2]", "the top level must be a JSON object");
	expect_file_error("{\"threads\": 2,}", "line 1");
	expect_file_error("", "line");
	expect_file_error("{\"threads\": 2, \"threads\": 3}", "line 1 column 24: duplicate object key");

	char missing[512];
	tmp_path(missing, sizeof(missing), "does-not-exist.json");
	expect_error(ARGV("--config", missing), "--config: cannot open");
}

/* ---------------------------------------------------------- resolv.conf */

static void test_resolv_conf(void **state)
{
	(void)state;
	char path[512];
	struct config cfg;

	tmp_file(path, sizeof(path), "resolv-full.conf",
		 "# generated\n"
		 "; another comment\n"
		 "search default.svc.cluster.local svc.cluster.local cluster.local\n"
		 "#nameserver 1.1.1.1\n"
		 "nameserver 169.254.20.10\n"          /* the node-local address */
		 "nameserver 127.0.0.1\n"              /* our --listen below */
		 "nameserver 10.96.0.10 # kube-dns\n"
		 "  nameserver\t2001:db8::53  \n"
		 "nameserver fe80::1%eth0\n"
		 "nameserver 10.96.0.10\n"             /* duplicate */
		 "nameserver\n"
		 "nameserver not-an-ip\n"
		 "nameservers 9.9.9.9\n"
		 "options ndots:5\n"
		 "nameserver 8.8.8.8");                /* no final newline */
	assert_int_equal(parse_with(&cfg, path, ARGV("--listen", "127.0.0.1")), CONFIG_OK);
	assert_true(cfg.upstream_from_resolv_conf);
	assert_int_equal(cfg.nupstream, 4);
	assert_string_equal(cfg.upstream[0].text, "10.96.0.10:53");
	assert_string_equal(cfg.upstream[1].text, "[2001:db8::53]:53");
	assert_string_equal(cfg.upstream[2].text, "[fe80::1]:53");
	assert_string_equal(cfg.upstream[3].text, "8.8.8.8:53");
	config_free(&cfg);

	/* Our listen address on another port is a real upstream. */
	assert_int_equal(parse_with(&cfg, path, ARGV("--listen", "127.0.0.1:5353")), CONFIG_OK);
	assert_int_equal(cfg.nupstream, 5);
	assert_string_equal(cfg.upstream[0].text, "127.0.0.1:53");
	config_free(&cfg);

	/* Nothing usable, or no file at all: no upstream, no error. */
	tmp_file(path, sizeof(path), "resolv-self.conf", "nameserver 169.254.20.10\n");
	assert_int_equal(parse_with(&cfg, path, ARGV("--listen", "127.0.0.1")), CONFIG_OK);
	assert_int_equal(cfg.nupstream, 0);
	assert_true(cfg.upstream_from_resolv_conf);
	config_free(&cfg);

	tmp_path(path, sizeof(path), "resolv-missing.conf");
	assert_int_equal(parse_with(&cfg, path, ARGV("--threads", "1")), CONFIG_OK);
	assert_int_equal(cfg.nupstream, 0);
	config_free(&cfg);

	/* At most CONFIG_MAX_UPSTREAMS are taken. */
	char many[2048] = "";
	for (int i = 1; i <= CONFIG_MAX_UPSTREAMS + 4; i++) {
		char line[64];
		snprintf(line, sizeof(line), "nameserver 10.0.0.%d\n", i);
		strcat(many, line);
	}
	tmp_file(path, sizeof(path), "resolv-many.conf", many);
	assert_int_equal(parse_with(&cfg, path, ARGV("--threads", "1")), CONFIG_OK);
	assert_int_equal(cfg.nupstream, CONFIG_MAX_UPSTREAMS);
	config_free(&cfg);

	/* An explicit --upstream means resolv.conf is not read. */
	assert_int_equal(PARSE(&cfg, "--upstream", "1.0.0.1"), CONFIG_OK);
	assert_false(cfg.upstream_from_resolv_conf);
	assert_int_equal(cfg.nupstream, 1);
	config_free(&cfg);
}

static void test_autopath_options(void **state)
{
	(void)state;
	char path[512];
	struct config cfg;

	unsetenv("NODE_NAME");
	assert_int_equal(PARSE0(&cfg), CONFIG_OK);
	assert_false(cfg.autopath);
	assert_null(cfg.node_name);
	config_free(&cfg);
	EXPECT_ERROR("--autopath: needs the node name", "--autopath");
	EXPECT_ERROR("--autopath: needs the API server", "--autopath", "--node-name", "n1",
		     "--kube-snapshot", "/dev/null");
	EXPECT_ERROR("--node-name: must be a node name", "--node-name", "Node_1");
	EXPECT_ERROR("--autopath-search: empty label", "--autopath-search", "a..b");

	/* The node name from the downward API; the search list from the
	 * resolv.conf nodedns reads (the last search line wins). */
	tmp_file(path, sizeof(path), "resolv-search.conf",
		 "search old.example\nnameserver 10.0.0.10\nsearch Corp.Example. lab.example\n");
	setenv("NODE_NAME", "node-a", 1);
	assert_int_equal(parse_with(&cfg, path, ARGV("--autopath")), CONFIG_OK);
	assert_true(cfg.autopath);
	assert_string_equal(cfg.node_name, "node-a");
	assert_int_equal(cfg.nautopath_search, 2);
	assert_string_equal(cfg.autopath_search[0], "corp.example");
	assert_string_equal(cfg.autopath_search[1], "lab.example");
	config_free(&cfg);
	setenv("NODE_NAME", "Bad Name", 1);
	expect_error(ARGV("--autopath"), "NODE_NAME: must be a node name");
	unsetenv("NODE_NAME");

	/* Given: comma-separated and repeatable; "none" for no node domains. */
	assert_int_equal(parse_with(&cfg, path, ARGV("--autopath", "--node-name", "n1",
						     "--autopath-search", "a.example,B.example.",
						     "--autopath-search", "c.example")), CONFIG_OK);
	assert_int_equal(cfg.nautopath_search, 3);
	assert_string_equal(cfg.autopath_search[1], "b.example");
	assert_string_equal(cfg.autopath_search[2], "c.example");
	config_free(&cfg);
	assert_int_equal(parse_with(&cfg, path, ARGV("--autopath", "--node-name", "n1",
						     "--autopath-search", "none")), CONFIG_OK);
	assert_int_equal(cfg.nautopath_search, 0);
	config_free(&cfg);
}

/* ------------------------------------------------------- addr and size */

static void test_parse_addr(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *text; /* NULL: must fail */
	} cases[] = {
		{ "1.2.3.4", "1.2.3.4:53" },
		{ "1.2.3.4:5353", "1.2.3.4:5353" },
		{ "0.0.0.0:1", "0.0.0.0:1" },
		{ "255.255.255.255:65535", "255.255.255.255:65535" },
		{ "[::1]", "[::1]:53" },
		{ "[::1]:8053", "[::1]:8053" },
		{ "::1", "[::1]:53" },
		{ "::", "[::]:53" },
		{ "2001:db8::1", "[2001:db8::1]:53" },
		{ "2001:DB8:0:0:0:0:0:1", "[2001:db8::1]:53" },
		{ "[::ffff:1.2.3.4]:53", "[::ffff:1.2.3.4]:53" },
		{ "1.2.3.4:053", "1.2.3.4:53" },
		{ "", NULL },
		{ ":53", NULL },
		{ "1.2.3.4:", NULL },
		{ "1.2.3.4:0", NULL },
		{ "1.2.3.4:65536", NULL },
		{ "1.2.3.4:-1", NULL },
		{ "1.2.3.4:+53", NULL },
		{ "1.2.3.4:5x", NULL },
		{ "1.2.3", NULL },
		{ "1.2.3.256", NULL },
		{ " 1.2.3.4", NULL },
		{ "1.2.3.4 ", NULL },
		{ "localhost", NULL },
		{ "localhost:53", NULL },
		{ "dns.google", NULL },
		{ "[1.2.3.4]", NULL },
		{ "[::1", NULL },
		{ "[::1]53", NULL },
		{ "[::1]:", NULL },
		{ "[]:53", NULL },
		{ "[fe80::1%eth0]", NULL },
		{ "::1:53:", NULL },
		{ "1::2::3", NULL },
		{ "[::1]:99999999999999999999", NULL },
		{ "[0000:0000:0000:0000:0000:0000:0000:0000:0000]", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct netaddr a;
		int rc = netaddr_parse(cases[i].in, 53, &a);
		if (cases[i].text) {
			if (rc != 0)
				fprintf(stderr, "'%s' rejected\n", cases[i].in);
			assert_int_equal(rc, 0);
			assert_string_equal(a.text, cases[i].text);
			assert_int_equal(a.salen, a.sa.ss_family == AF_INET
							  ? sizeof(struct sockaddr_in)
							  : sizeof(struct sockaddr_in6));
		} else {
			if (rc == 0)
				fprintf(stderr, "'%s' accepted\n", cases[i].in);
			assert_int_equal(rc, -EINVAL);
		}
	}

	struct netaddr a;
	assert_int_equal(netaddr_parse("10.0.0.1", 9253, &a), 0);
	assert_int_equal(addr_port(&a), 9253);
	assert_int_equal(netaddr_parse("10.0.0.1", 0, &a), -EINVAL);
	assert_int_equal(netaddr_parse("10.0.0.1:1", 0, &a), 0);
	assert_int_equal(netaddr_parse(NULL, 53, &a), -EINVAL);
}

static void test_parse_size(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		uint64_t v;
	} cases[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "1024", 0, 1024 },
		{ "1K", 0, 1024 },
		{ "1k", 0, 1024 },
		{ "64M", 0, 64ull << 20 },
		{ "64m", 0, 64ull << 20 },
		{ "3G", 0, 3ull << 30 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "17179869183G", 0, 17179869183ull << 30 },
		{ "17179869184G", -EINVAL, 0 },   /* 2^64: overflow */
		{ "18446744073709551616", -EINVAL, 0 },
		{ "18014398509481984K", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "K", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "1T", -EINVAL, 0 },
		{ "1KB", -EINVAL, 0 },
		{ "1Mi", -EINVAL, 0 },
		{ "1.5M", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = config_parse_size(cases[i].in, &v);
		if (rc != cases[i].rc)
			fprintf(stderr, "size '%s': rc %d\n", cases[i].in, rc);
		assert_int_equal(rc, cases[i].rc);
		if (rc == 0)
			assert_true(v == cases[i].v);
		else
			assert_true(v == 12345);
	}
	uint64_t v;
	assert_int_equal(config_parse_size(NULL, &v), -EINVAL);
}

/* -------------------------------------------------------------- allowed */

/* A socket address of @p family for @p ip, port 0. */
static struct sockaddr_storage sa_ip(int family, const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	void *dst = family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
				      : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
	assert_int_equal(inet_pton(family, ip, dst), 1);
	return ss;
}

static struct sockaddr_storage sa4(const char *ip)
{
	return sa_ip(AF_INET, ip);
}

static struct sockaddr_storage sa6(const char *ip)
{
	return sa_ip(AF_INET6, ip);
}

static bool allowed(const struct config *cfg, struct sockaddr_storage ss)
{
	return config_allowed(cfg, (const struct sockaddr *)&ss);
}

static void test_allowed(void **state)
{
	(void)state;
	struct config cfg;
	struct sockaddr_storage ss;

	/* No --allow: everyone. */
	assert_int_equal(PARSE0(&cfg), CONFIG_OK);
	assert_true(allowed(&cfg, sa4("203.0.113.1")));
	assert_true(allowed(&cfg, sa6("2001:db8::1")));
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--allow", "10.1.2.3/8", "--allow", "192.168.1.7",
			       "--allow", "172.16.0.0/12", "--allow", "fd00::/8", "--allow",
			       "2001:db8:0:1::/63", "--allow", "100.64.0.0/10"),
			 CONFIG_OK);
	/* Host bits are cleared. */
	assert_int_equal(cfg.allow[0].addr[0], 10);
	assert_int_equal(cfg.allow[0].addr[1], 0);
	assert_int_equal(cfg.allow[1].prefix, 32);

	static const struct {
		const char *ip;
		bool v6, ok;
	} cases[] = {
		{ "10.0.0.1", false, true },
		{ "10.255.255.255", false, true },
		{ "11.0.0.1", false, false },
		{ "192.168.1.7", false, true },
		{ "192.168.1.8", false, false },
		{ "172.16.0.1", false, true },
		{ "172.31.255.255", false, true },
		{ "172.32.0.0", false, false },
		{ "100.64.0.1", false, true },
		{ "100.127.255.255", false, true },
		{ "100.128.0.0", false, false },
		{ "fd12::1", true, true },
		{ "fe00::1", true, false },
		{ "2001:db8:0:0::1", true, true },
		{ "2001:db8:0:1::1", true, true },
		{ "2001:db8:0:2::1", true, false },
		{ "::ffff:10.1.1.1", true, true },     /* v4-mapped */
		{ "::ffff:192.168.1.7", true, true },
		{ "::ffff:11.1.1.1", true, false },
		{ "::10.1.1.1", true, false },         /* v4-compatible is not mapped */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ss = cases[i].v6 ? sa6(cases[i].ip) : sa4(cases[i].ip);
		if (allowed(&cfg, ss) != cases[i].ok)
			fprintf(stderr, "allowed(%s) != %d\n", cases[i].ip, cases[i].ok);
		assert_int_equal(allowed(&cfg, ss), cases[i].ok);
	}
	struct sockaddr_storage un;
	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	assert_false(allowed(&cfg, un));
	assert_false(config_allowed(&cfg, NULL));
	config_free(&cfg);

	/* /0 matches its whole family. */
	assert_int_equal(PARSE(&cfg, "--allow", "0.0.0.0/0"), CONFIG_OK);
	assert_true(allowed(&cfg, sa4("1.2.3.4")));
	assert_true(allowed(&cfg, sa6("::ffff:1.2.3.4")));
	assert_false(allowed(&cfg, sa6("2001:db8::1")));
	config_free(&cfg);

	assert_int_equal(PARSE(&cfg, "--allow", "::/0"), CONFIG_OK);
	assert_true(allowed(&cfg, sa6("2001:db8::1")));
	assert_false(allowed(&cfg, sa4("1.2.3.4")));
	config_free(&cfg);
}

/* ------------------------------------------------------------ lifecycle */

static void test_parse_twice(void **state)
{
	(void)state;
	struct config a, b;
	/* An error midway leaves getopt in the middle of argv; the next
	 * parse must still start from scratch. */
	assert_int_equal(PARSE(&a, "--threads", "2", "--bogus", "--listen", "127.0.0.1"),
			 CONFIG_ERROR);
	config_free(&a);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(PARSE(&a, "--threads", "2", "--listen", "127.0.0.1"), CONFIG_OK);
		assert_int_equal(PARSE(&b, "--listen", "127.0.0.2", "--kubeconfig", "/x"),
				 CONFIG_OK);
		assert_int_equal(a.threads, 2);
		assert_string_equal(a.listen[0].text, "127.0.0.1:53");
		assert_int_equal(b.nlisten, 1);
		assert_string_equal(b.listen[0].text, "127.0.0.2:53");
		assert_string_equal(b.kubeconfig, "/x");
		assert_null(a.kubeconfig);
		config_free(&a);
		config_free(&b);
	}
	/* config_free is idempotent and safe on a zeroed struct. */
	config_free(&a);
	memset(&a, 0, sizeof(a));
	config_free(&a);
	config_free(NULL);

	/* A NULL err buffer is tolerated. */
	assert_int_equal(config_parse(&a, 2, ARGV("--bogus"), g_resolv, NULL, 0), CONFIG_ERROR);
	config_free(&a);
}

/* Run config_parse with stdout in a file; return what it printed. */
static enum config_result parse_capture(char **argv, char *out, size_t outlen)
{
	char path[512];
	tmp_path(path, sizeof(path), "stdout.txt");
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, STDOUT_FILENO);
	close(fd);

	struct config cfg;
	enum config_result r = parse_with(&cfg, g_resolv, argv);
	config_free(&cfg);

	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	fclose(f);
	return r;
}

static void test_help_version(void **state)
{
	(void)state;
	static char out[16384];

	assert_int_equal(parse_capture(ARGV("--version"), out, sizeof(out)), CONFIG_EXIT_OK);
	assert_string_equal(out, "nodedns " NODEDNS_VERSION "\n");

	assert_int_equal(parse_capture(ARGV("--threads", "2", "--help"), out, sizeof(out)),
			 CONFIG_EXIT_OK);
	static const char *const names[] = {
		"--listen ADDR", "--threads N", "--allow CIDR", "--tcp-max-clients N",
		"--tcp-idle-timeout MS", "--tcp-max-inflight N", "--upstream ADDR",
		"--upstream-proto tcp|udp", "--upstream-timeout MS", "--stub DOMAIN=ADDR",
		"--max-inflight N", "--max-waiters N", "--cache-memory BYTES", "--min-ttl S",
		"--max-ttl S", "--neg-ttl S", "--serve-stale S", "--prefetch", "--no-prefetch",
		"--cluster-domain DOMAIN", "--cluster-ttl S", "--kube-api URL",
		"--kube-token-file PATH", "--kube-ca-file PATH", "--kubeconfig PATH",
		"--kube-snapshot PATH", "--cluster-fallback ADDR", "--pods disabled|insecure",
		"--setup-interface NAME", "--setup-iptables", "--metrics ADDR", "--health ADDR",
		"--log-level", "--log-format text|json", "--query-log", "--config FILE", "--check-config",
		"--version", "--help", "(default: 169.254.20.10:53)", "(default: 64M)",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strstr(out, names[i]))
			fprintf(stderr, "--help lacks '%s'\n", names[i]);
		assert_non_null(strstr(out, names[i]));
	}

	/* Values are not checked when only help is wanted... */
	assert_int_equal(parse_capture(ARGV("--threads", "abc", "--help"), out, sizeof(out)),
			 CONFIG_EXIT_OK);
	/* ...but an error prints nothing on stdout. */
	assert_int_equal(parse_capture(ARGV("--threads", "abc"), out, sizeof(out)), CONFIG_ERROR);
	assert_string_equal(out, "");
}

/* ------------------------------------------------- --threads from cgroups */

/* mkdir -p g_dir/@p rel. */
static void mkdirs(const char *rel, char *out, size_t len)
{
	char cmd[600];
	tmp_path(out, len, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", out);
	assert_int_equal(system(cmd), 0);
}

static void put_file(const char *dir, const char *name, const char *content)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	write_file(path, content);
}

static void test_default_threads(void **state)
{
	(void)state;
	char root[400], d[400], self[400];

	/* No cgroup files at all: the online CPUs, at least 1, at most 8. */
	mkdirs("cg-none", root, sizeof(root));
	assert_int_equal(config_default_threads(root, NULL, 4), 4);
	assert_int_equal(config_default_threads(root, NULL, 0), 1);
	assert_int_equal(config_default_threads(root, NULL, 32), 8);
	tmp_path(self, sizeof(self), "cg-none/no-such-self");
	assert_int_equal(config_default_threads(root, self, 3), 3);

	/* cgroup v2, the container's own cgroup mounted at the root. */
	mkdirs("cg-v2", root, sizeof(root));
	tmp_file(self, sizeof(self), "cg-v2-self", "0::/\n");
	put_file(root, "cpu.max", "10000 100000\n"); /* 100m */
	assert_int_equal(config_default_threads(root, self, 8), 1);
	put_file(root, "cpu.max", "150000 100000\n"); /* 1500m: rounded up */
	assert_int_equal(config_default_threads(root, self, 8), 2);
	assert_int_equal(config_default_threads(root, NULL, 8), 2);
	put_file(root, "cpu.max", "200000 100000\n");
	assert_int_equal(config_default_threads(root, self, 8), 2);
	put_file(root, "cpu.max", "600000 100000\n"); /* more than the CPUs */
	assert_int_equal(config_default_threads(root, self, 4), 4);
	put_file(root, "cpu.max", "max 100000\n");
	assert_int_equal(config_default_threads(root, self, 6), 6);
	put_file(root, "cpu.max", "lots 100000\n"); /* unreadable: ignored */
	assert_int_equal(config_default_threads(root, self, 6), 6);
	put_file(root, "cpu.max", "100000 0\n");
	assert_int_equal(config_default_threads(root, self, 6), 6);

	/* cgroup v2 without a namespace: the path of /proc/self/cgroup and its
	 * parents; the smallest quota wins. */
	mkdirs("cg-v2n/kubepods/pod1/c1", d, sizeof(d));
	tmp_path(root, sizeof(root), "cg-v2n");
	tmp_file(self, sizeof(self), "cg-v2n-self", "0::/kubepods/pod1/c1\n");
	put_file(d, "cpu.max", "max 100000\n");
	mkdirs("cg-v2n/kubepods/pod1", d, sizeof(d));
	put_file(d, "cpu.max", "300000 100000\n");
	mkdirs("cg-v2n/kubepods", d, sizeof(d));
	put_file(d, "cpu.max", "500000 100000\n");
	assert_int_equal(config_default_threads(root, self, 8), 3);
	assert_int_equal(config_default_threads(root, self, 2), 2);

	/* cgroup v1: the cpu controller's mount, under either name. */
	mkdirs("cg-v1/cpu,cpuacct", d, sizeof(d));
	tmp_path(root, sizeof(root), "cg-v1");
	tmp_file(self, sizeof(self), "cg-v1-self",
		 "12:memory:/kubepods/x\n4:cpu,cpuacct:/kubepods/burstable/pod1/c1\n0::/\n");
	put_file(d, "cpu.cfs_quota_us", "250000\n");
	put_file(d, "cpu.cfs_period_us", "100000\n");
	assert_int_equal(config_default_threads(root, self, 8), 3);
	assert_int_equal(config_default_threads(root, NULL, 8), 3);
	put_file(d, "cpu.cfs_quota_us", "-1\n");
	assert_int_equal(config_default_threads(root, self, 8), 8);
	assert_int_equal(config_default_threads(root, self, 5), 5);
	/* ...and the cgroup of /proc/self/cgroup below the mount. */
	mkdirs("cg-v1/cpu,cpuacct/kubepods/burstable/pod1", d, sizeof(d));
	put_file(d, "cpu.cfs_quota_us", "50000\n");
	put_file(d, "cpu.cfs_period_us", "100000\n");
	assert_int_equal(config_default_threads(root, self, 8), 1);
	/* A controller list that only contains "cpu" as part of a name. */
	tmp_file(self, sizeof(self), "cg-v1-self2", "4:cpuacct:/kubepods/burstable/pod1\n");
	assert_int_equal(config_default_threads(root, self, 8), 8);
}

/* ---------------------------------------------------------- --check-config */

static void test_check_config(void **state)
{
	(void)state;
	struct config cfg;
	char err[512], path[300], snap[300];

	assert_int_equal(PARSE0(&cfg), CONFIG_OK);
	assert_false(cfg.check_config);
	config_free(&cfg);
	assert_int_equal(PARSE(&cfg, "--check-config"), CONFIG_OK);
	assert_true(cfg.check_config);
	/* Nothing to load: fine (the missing cluster source is a warning). */
	assert_int_equal(config_check_start(&cfg, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	config_free(&cfg);
	/* Only a flag of the command line, never a key of the file. */
	tmp_file(path, sizeof(path), "check.json", "{\"check-config\": true}");
	EXPECT_ERROR("unknown key 'check-config'", "--config", path);
	EXPECT_ERROR("--check-config: takes no value", "--check-config=yes");

	/* A snapshot that does not load fails as a start would fail. */
	tmp_path(snap, sizeof(snap), "no-such-snapshot.json");
	assert_int_equal(PARSE(&cfg, "--check-config", "--kube-snapshot", snap), CONFIG_OK);
	assert_true(config_check_start(&cfg, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "--kube-snapshot"));
	assert_non_null(strstr(err, "no-such-snapshot.json"));
	assert_null(strchr(err, '\n'));
	config_free(&cfg);
	tmp_file(snap, sizeof(snap), "snapshot.json", "{\"kind\": \"List\", \"items\": []}");
	assert_int_equal(PARSE(&cfg, "--check-config", "--kube-snapshot", snap), CONFIG_OK);
	assert_int_equal(config_check_start(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
	tmp_file(snap, sizeof(snap), "snapshot-bad.json", "{\"kind\": ");
	assert_int_equal(PARSE(&cfg, "--check-config", "--kube-snapshot", snap), CONFIG_OK);
	assert_true(config_check_start(&cfg, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "snapshot-bad.json"));
	config_free(&cfg);

	/* The API watch's files: token and CA must be readable. */
	tmp_file(path, sizeof(path), "token", "secret\n");
	tmp_path(snap, sizeof(snap), "missing-ca.crt");
	assert_int_equal(PARSE(&cfg, "--kube-api", "https://192.0.2.1:6443", "--kube-token-file", path,
			       "--kube-ca-file", snap), CONFIG_OK);
	assert_true(config_check_start(&cfg, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "kubernetes: "));
	assert_non_null(strstr(err, "missing-ca.crt"));
	config_free(&cfg);
	tmp_file(snap, sizeof(snap), "ca.crt", "not checked until TLS\n");
	assert_int_equal(PARSE(&cfg, "--kube-api", "https://192.0.2.1:6443", "--kube-token-file", path,
			       "--kube-ca-file", snap), CONFIG_OK);
	assert_int_equal(config_check_start(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
	assert_int_equal(PARSE(&cfg, "--kubeconfig", path), CONFIG_OK);
	assert_true(config_check_start(&cfg, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "kubeconfig"));
	config_free(&cfg);

	/* The node-setup environment, only read when node setup is asked for. */
	setenv("NODEDNS_IPTABLES_BACKEND", "iptables-fancy", 1);
	assert_int_equal(PARSE(&cfg, "--upstream", "10.0.0.1"), CONFIG_OK);
	assert_int_equal(config_check_start(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
	assert_int_equal(PARSE(&cfg, "--setup-iptables"), CONFIG_OK);
	assert_true(config_check_start(&cfg, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "NODEDNS_IPTABLES_BACKEND"));
	config_free(&cfg);
	unsetenv("NODEDNS_IPTABLES_BACKEND");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_kube_api_env),
		cmocka_unit_test(test_kube_api_url),
		cmocka_unit_test(test_serving_options),
		cmocka_unit_test(test_forwarding_options),
		cmocka_unit_test(test_cache_options),
		cmocka_unit_test(test_cluster_options),
		cmocka_unit_test(test_node_options),
		cmocka_unit_test(test_observability_options),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_bad_syntax),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_file_forms),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_resolv_conf),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_allowed),
		cmocka_unit_test(test_parse_twice),
		cmocka_unit_test(test_help_version),
		cmocka_unit_test(test_autopath_options),
		cmocka_unit_test(test_check_config),
		cmocka_unit_test(test_default_threads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
