/* include/nodedns/io/k8s_kubeconfig.h - the current context of a kubeconfig file.
 *
 * Pure (no curl, no libuv): reads a kubeconfig (YAML or JSON, parsed with
 * libyaml) and returns what k8s_watch needs to reach the API server of its
 * current-context: the server URL, the CA, and the user's bearer token or
 * client certificate. Supported, as kubectl does:
 *  - cluster: server, certificate-authority, certificate-authority-data
 *    (the -data form wins when both are given);
 *  - user: token, tokenFile (the file wins over token), client-certificate
 *    (-data) with client-key (-data);
 *  - relative file paths are relative to the kubeconfig's directory.
 * Refused with -EINVAL: insecure-skip-tls-verify other than false, a server
 * that is not https://, exec and auth-provider plugins, username/password,
 * a certificate without a key (or the reverse). Ignored: tls-server-name,
 * proxy-url, namespace, extensions.
 */
#ifndef NODEDNS_K8S_KUBECONFIG_H
#define NODEDNS_K8S_KUBECONFIG_H

#include <stddef.h>
#include <stdint.h>

#define K8S_KUBECONFIG_MAX_BYTES (4u << 20) /* larger files are refused */

/** What the current context says. Every member may be NULL except server.
 * Owned by the caller, free with k8s_kubeconfig_free(). */
struct k8s_kubeconfig {
	char *server;		/* "https://host:port[/prefix]", no trailing '/' */
	char *ca_file;		/* PEM bundle path */
	uint8_t *ca_data;	/* decoded certificate-authority-data (PEM) */
	size_t ca_len;
	char *token;		/* static bearer token (only when no token_file) */
	char *token_file;	/* bearer token file, re-read when it changes */
	char *cert_file, *key_file;
	uint8_t *cert_data, *key_data; /* decoded client-certificate/key-data (PEM) */
	size_t cert_len, key_len;
};

/**
 * Load @p path (borrowed). On success *out is filled; on failure *out is
 * zeroed and @p err (may be NULL) says what is wrong.
 * @return 0, -errno when the file cannot be read, -EINVAL when it is not a
 * usable kubeconfig, -ENOMEM.
 */
int k8s_kubeconfig_load(const char *path, struct k8s_kubeconfig *out, char *err, size_t errlen);

/** Free the members (key material is wiped first) and zero @p kc. NULL is fine. */
void k8s_kubeconfig_free(struct k8s_kubeconfig *kc);

/**
 * Decode standard base64 (padding optional, ASCII whitespace ignored; ldns
 * does the decoding) into a new
 * buffer (owned by caller, free()). @return 0, -EINVAL on a bad character or
 * length, -ENOMEM.
 */
int k8s_base64_decode(const char *in, size_t inlen, uint8_t **out, size_t *outlen);

#endif
