/* tests/fuzz/fuzz_kubeconfig.c - libFuzzer target for the kubeconfig reader.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=kubeconfig for this one).
 * Reproduce a crash: build-fuzz/fuzz_kubeconfig crash-<sha1>
 *
 * The input is a kubeconfig (YAML or JSON), written to a temporary file (one
 * path per process) and read with k8s_kubeconfig_load(). It also goes
 * through k8s_base64_decode() as it is.
 *
 * Checked besides the sanitizers:
 *  - load returns 0, -EINVAL (with a message) or -ENOMEM; on failure the
 *    struct is zeroed;
 *  - on success: server is https://, non-empty after the scheme and without
 *    a trailing '/'; a token only without a token file; a client
 *    certificate if and only if a client key; decoded data is non-empty;
 *    relative file paths were made relative to the kubeconfig's directory;
 *  - k8s_kubeconfig_free() leaves a zeroed struct (and tolerates a second
 *    call);
 *  - base64: the output is at most 3/4 of the input; what decodes,
 *    re-encoded and decoded again, gives the same bytes.
 */
#include "nodedns/io/k8s_kubeconfig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fuzz_check.h"

static char g_dir[512], g_path[600];

static void cleanup(void)
{
	unlink(g_path);
	rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 400)
		tmp = "/tmp";
	snprintf(g_dir, sizeof(g_dir), "%s/nodedns-fuzz-kc-XXXXXX", tmp);
	CHECK(mkdtemp(g_dir) != NULL);
	snprintf(g_path, sizeof(g_path), "%s/kubeconfig", g_dir);
	atexit(cleanup);
	return 0;
}

static bool is_zero(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void check_path(const char *p)
{
	if (!p)
		return;
	CHECK(*p != '\0');
	/* relative paths are resolved against the kubeconfig's directory */
	CHECK(p[0] == '/');
}

static void check_loaded(const struct k8s_kubeconfig *kc)
{
	CHECK(kc->server != NULL);
	size_t n = strlen(kc->server);
	CHECK(n > 8 && strncasecmp(kc->server, "https://", 8) == 0);
	CHECK(kc->server[n - 1] != '/');
	CHECK(!(kc->token && kc->token_file));
	CHECK(!kc->ca_data || kc->ca_len > 0);
	CHECK(!kc->cert_data || kc->cert_len > 0);
	CHECK(!kc->key_data || kc->key_len > 0);
	CHECK(!(kc->ca_data && kc->ca_file));
	CHECK(!(kc->cert_data && kc->cert_file));
	CHECK(!(kc->key_data && kc->key_file));
	bool cert = kc->cert_data || kc->cert_file, key = kc->key_data || kc->key_file;
	CHECK(cert == key);
	check_path(kc->ca_file);
	check_path(kc->token_file);
	check_path(kc->cert_file);
	check_path(kc->key_file);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *encode(const uint8_t *in, size_t n, size_t *outlen)
{
	char *out = malloc((n + 2) / 3 * 4 + 1);
	CHECK(out);
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

static void base64(const uint8_t *data, size_t size)
{
	uint8_t *out = NULL;
	size_t outlen = 0;
	int rc = k8s_base64_decode((const char *)data, size, &out, &outlen);
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0) {
		CHECK(out == NULL && outlen == 0);
		return;
	}
	CHECK(out != NULL);
	CHECK(outlen <= size / 4 * 3 + 2);
	size_t elen;
	char *enc = encode(out, outlen, &elen);
	uint8_t *again = NULL;
	size_t againlen = 0;
	CHECK(k8s_base64_decode(enc, elen, &again, &againlen) == 0);
	CHECK(againlen == outlen && memcmp(again, out, outlen) == 0);
	free(again);
	free(enc);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	base64(data, size);

	FILE *f = fopen(g_path, "wb");
	CHECK(f);
	CHECK(fwrite(data, 1, size, f) == size);
	CHECK(fclose(f) == 0);

	struct k8s_kubeconfig kc;
	char err[300];
	memset(&kc, 0xa5, sizeof(kc));
	memset(err, 'x', sizeof(err));
	int rc = k8s_kubeconfig_load(g_path, &kc, err, sizeof(err));
	CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	CHECK(memchr(err, '\0', sizeof(err)) != NULL);
	if (rc == 0) {
		check_loaded(&kc);
	} else {
		CHECK(err[0] != '\0');
		CHECK(is_zero(&kc, sizeof(kc)));
	}
	k8s_kubeconfig_free(&kc);
	CHECK(is_zero(&kc, sizeof(kc)));
	k8s_kubeconfig_free(&kc);
	k8s_kubeconfig_free(NULL);
	return 0;
}
