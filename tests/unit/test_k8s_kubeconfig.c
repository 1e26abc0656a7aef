/* tests/unit/test_k8s_kubeconfig.c - kubeconfig current-context parsing and base64. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nodedns/io/k8s_kubeconfig.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/nodedns-kc-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Write @p text to DIR/name and return the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int load(const char *text, struct k8s_kubeconfig *kc, char *err, size_t errlen)
{
	return k8s_kubeconfig_load(write_file("config", text), kc, err, errlen);
}

#define HEAD                                                                   \
	"apiVersion: v1\nkind: Config\ncurrent-context: dev\n"                 \
	"contexts:\n- name: prod\n  context: {cluster: c2, user: u2}\n"        \
	"- name: dev\n  context:\n    cluster: c1\n    user: u1\n"

/* ------------------------------------------------------------ base64 */

static void test_base64(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} ok[] = {
		{"aGVsbG8=", "hello"},   {"aGVsbG8", "hello"},     {"aGVs\nbG8g\r\n d29y bGQ=", "hello world"},
		{"", ""},		 {"YQ==", "a"},		   {"YWI=", "ab"},
		{"YWJj", "abc"},	 {"YQ", "a"},		   {"YWI", "ab"},
		{"YW\tJj\n", "abc"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint8_t *out;
		size_t n;
		assert_int_equal(k8s_base64_decode(ok[i].in, strlen(ok[i].in), &out, &n), 0);
		assert_int_equal(n, strlen(ok[i].out));
		assert_memory_equal(out, ok[i].out, n);
		free(out);
	}
	static const char *const bad[] = {"a", "aGVsbG8===", "aGU=bG8", "aGVs*G8=", "YQ=",
					  "Y===", "-_-_"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *out = (uint8_t *)"x";
		size_t n = 7;
		assert_int_equal(k8s_base64_decode(bad[i], strlen(bad[i]), &out, &n), -EINVAL);
		assert_null(out);
		assert_int_equal(n, 0);
	}
	/* A NUL or another control byte inside the text is not skipped. */
	static const char *const ctl[] = {"YW\0j", "YW\vj", "YQ=\0="};
	static const size_t ctl_len[] = {4, 4, 4};
	for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++) {
		uint8_t *out = (uint8_t *)"x";
		size_t n = 7;
		assert_int_equal(k8s_base64_decode(ctl[i], ctl_len[i], &out, &n), -EINVAL);
		assert_null(out);
		assert_int_equal(n, 0);
	}
}

/* ------------------------------------------------------------ kubeconfig */

static void test_token_file_relative(void **state)
{
	(void)state;
	struct k8s_kubeconfig kc;
	char err[256];
	int rc = load(HEAD "clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443///\n"
			   "    certificate-authority: ca.crt\n"
			   "- name: c2\n  cluster: {server: https://other}\n"
			   "users:\n- name: u1\n  user:\n    token: static\n    tokenFile: tok\n",
		      &kc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(kc.server, "https://10.0.0.1:6443");
	char want[300];
	snprintf(want, sizeof(want), "%s/ca.crt", dir);
	assert_string_equal(kc.ca_file, want);
	snprintf(want, sizeof(want), "%s/tok", dir);
	assert_string_equal(kc.token_file, want); /* the file wins over the static token */
	assert_null(kc.token);
	assert_null(kc.ca_data);
	assert_null(kc.cert_file);
	k8s_kubeconfig_free(&kc);
	assert_null(kc.server);
	k8s_kubeconfig_free(&kc); /* twice is fine */
	k8s_kubeconfig_free(NULL);
}

static void test_data_wins_and_client_cert(void **state)
{
	(void)state;
	struct k8s_kubeconfig kc;
	char err[256];
	/* "PEM" in base64 is UEVN. */
	int rc = load(HEAD "clusters:\n- name: c1\n  cluster:\n    server: https://h\n"
			   "    certificate-authority: /abs/ca.crt\n"
			   "    certificate-authority-data: UEVN\n"
			   "    insecure-skip-tls-verify: false\n"
			   "    tls-server-name: ignored\n"
			   "users:\n- name: u1\n  user:\n    client-certificate-data: Y2VydA==\n"
			   "    client-key: /abs/key.pem\n    token: tkn\n",
		      &kc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_null(kc.ca_file);
	assert_int_equal(kc.ca_len, 3);
	assert_memory_equal(kc.ca_data, "PEM", 3);
	assert_int_equal(kc.cert_len, 4);
	assert_memory_equal(kc.cert_data, "cert", 4);
	assert_string_equal(kc.key_file, "/abs/key.pem");
	assert_string_equal(kc.token, "tkn");
	k8s_kubeconfig_free(&kc);
}

static void test_json_and_anonymous(void **state)
{
	(void)state;
	struct k8s_kubeconfig kc;
	char err[256];
	int rc = load("{\"current-context\":\"x\",\"contexts\":[{\"name\":\"x\",\"context\":"
		      "{\"cluster\":\"c\"}}],\"clusters\":[{\"name\":\"c\",\"cluster\":"
		      "{\"server\":\"https://1.2.3.4\"}}]}",
		      &kc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(kc.server, "https://1.2.3.4");
	assert_null(kc.token);
	assert_null(kc.token_file);
	k8s_kubeconfig_free(&kc);
}

static void test_anchors(void **state)
{
	(void)state;
	struct k8s_kubeconfig kc;
	char err[256];
	int rc = load("current-context: a\n"
		      "x-cluster: &cl {server: 'https://anchored'}\n"
		      "contexts: [{name: a, context: {cluster: c, user: u}}]\n"
		      "clusters: [{name: c, cluster: *cl}]\n"
		      "users: [{name: u, user: {token: \"t0k\"}}]\n",
		      &kc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(kc.server, "https://anchored");
	assert_string_equal(kc.token, "t0k");
	k8s_kubeconfig_free(&kc);
}

static void test_refused(void **state)
{
	(void)state;
	static const struct {
		const char *text, *needle;
	} cases[] = {
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h, insecure-skip-tls-verify: true}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "insecure-skip-tls-verify"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h, insecure-skip-tls-verify: yes}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "insecure-skip-tls-verify"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h, insecure-skip-tls-verify: [1]}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "insecure-skip-tls-verify"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: http://h}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "https"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: 'https://'}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "https"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: 'https:///'}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "https"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: [https://h]}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "server"},
		{HEAD "clusters:\n- name: c1\n  cluster: {}\nusers:\n- name: u1\n  user: {token: x}\n",
		 "no server"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h}\n"
		      "users:\n- name: u1\n  user: {exec: {command: aws}}\n",
		 "exec"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h}\n"
		      "users:\n- name: u1\n  user: {username: a, password: b}\n",
		 "username"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h}\n"
		      "users:\n- name: u1\n  user: {client-certificate: /c.pem}\n",
		 "client-key"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h}\n"
		      "users:\n- name: u1\n  user: {client-key-data: a2V5}\n",
		 "client-key"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h, certificate-authority-data: '***'}\n"
		      "users:\n- name: u1\n  user: {token: x}\n",
		 "base64"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h}\n"
		      "users:\n- name: u1\n  user: {token: \"a\\0b\"}\n",
		 "NUL"},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h}\n"
		      "users:\n- name: u1\n  user: {token: {a: b}}\n",
		 "token"},
		{HEAD "clusters:\n- name: c2\n  cluster: {server: https://h}\n", "cluster \"c1\""},
		{HEAD "clusters:\n- name: c1\n  cluster: {server: https://h}\n", "user \"u1\""},
		{HEAD "clusters: {c1: {server: https://h}}\n", "cluster \"c1\""},
		{"current-context: nope\ncontexts: []\n", "context \"nope\""},
		{"apiVersion: v1\nclusters: []\n", "current-context"},
		{"current-context: ''\n", "current-context"},
		{"current-context: [a]\n", "current-context"},
		{"- just\n- a list\n", "mapping"},
		{"", "mapping"},
		{"current-context: [\n", "YAML"},
		{"current-context: x\n\t- tab: bad\n", "YAML"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct k8s_kubeconfig kc;
		char err[256] = "";
		int rc = load(cases[i].text, &kc, err, sizeof(err));
		if (rc != -EINVAL || !strstr(err, cases[i].needle))
			fail_msg("case %zu: rc %d err \"%s\", wanted \"%s\"", i, rc, err,
				 cases[i].needle);
		assert_null(kc.server);
		assert_null(kc.token);
	}
}

static void test_missing_file(void **state)
{
	(void)state;
	struct k8s_kubeconfig kc;
	char err[256];
	char path[300];
	snprintf(path, sizeof(path), "%s/does-not-exist", dir);
	assert_int_equal(k8s_kubeconfig_load(path, &kc, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "does-not-exist"));
	assert_int_equal(k8s_kubeconfig_load(dir, &kc, NULL, 0), -EINVAL); /* a directory */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_token_file_relative),
		cmocka_unit_test(test_data_wins_and_client_cert),
		cmocka_unit_test(test_json_and_anonymous),
		cmocka_unit_test(test_anchors),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
