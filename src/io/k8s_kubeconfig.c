/* src/io/k8s_kubeconfig.c - read the current context of a kubeconfig with libyaml. */
#include "nodedns/io/k8s_kubeconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---------------------------------------------------------------- base64 */

/* ldns exports its base64 decoder (the BSD b64_pton) but the headers it
 * installs do not declare it: it lives in ldns's private config.h. */
int ldns_b64_pton(char const *src, uint8_t *target, size_t targsize);

/* Copy the symbols of @p in without ASCII whitespace into a new NUL-ended
 * string, padded with '=' to a multiple of four when the input carries no
 * padding (kubeconfig writers may leave it out; ldns requires it).
 * @return the copy, or NULL with *rc set (-EINVAL for a NUL or another
 * control byte, -ENOMEM). */
static char *b64_normalize(const char *in, size_t inlen, int *rc)
{
	char *s = malloc(inlen + 4);
	size_t n = 0;
	bool padded = false;

	*rc = -ENOMEM;
	if (!s)
		return NULL;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c < 0x20 || c == 0x7f) { /* NUL would end ldns's string early */
			free(s);
			*rc = -EINVAL;
			return NULL;
		}
		padded |= c == '=';
		s[n++] = (char)c;
	}
	while (!padded && n % 4 > 1)
		s[n++] = '=';
	s[n] = '\0';
	return s;
}

int k8s_base64_decode(const char *in, size_t inlen, uint8_t **out, size_t *outlen)
{
	int rc;
	char *text = b64_normalize(in, inlen, &rc);

	*out = NULL;
	*outlen = 0;
	if (!text)
		return rc;
	/* ldns wants one spare byte beyond the decoded size. */
	size_t cap = (strlen(text) + 3) / 4 * 3 + 1;
	uint8_t *buf = malloc(cap);
	if (!buf) {
		free(text);
		return -ENOMEM;
	}
	int n = ldns_b64_pton(text, buf, cap);
	free(text);
	if (n < 0) {
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*outlen = (size_t)n;
	return 0;
}

/* ------------------------------------------------------------- yaml walk */

struct kc_parse {
	yaml_document_t doc;
	const char *dir; /* the kubeconfig's directory, for relative paths */
	size_t dirlen;   /* 0 with dir: the root directory */
	bool has_dir;    /* false: the kubeconfig is in the working directory */
	char *err;
	size_t errlen;
};

static int failf(struct kc_parse *p, const char *fmt, const char *arg)
{
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, fmt, arg ? arg : "");
	return -EINVAL;
}

static yaml_node_t *node(struct kc_parse *p, int idx)
{
	return yaml_document_get_node(&p->doc, idx);
}

/* A scalar's text, or NULL for a non-scalar, a YAML null or an empty plain
 * scalar. Scalars holding a NUL byte are treated as unusable (NULL + *bad). */
static const char *scalar(yaml_node_t *n, bool *bad)
{
	if (!n || n->type != YAML_SCALAR_NODE)
		return NULL;
	const char *v = (const char *)n->data.scalar.value;
	size_t len = n->data.scalar.length;
	if (memchr(v, '\0', len)) {
		if (bad)
			*bad = true;
		return NULL;
	}
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (len == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	     strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0))
		return NULL;
	return len ? v : NULL;
}

static yaml_node_t *map_get(struct kc_parse *p, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
	     pr < map->data.mapping.pairs.top; pr++) {
		const char *k = scalar(node(p, pr->key), NULL);
		if (k && strcmp(k, key) == 0)
			return node(p, pr->value);
	}
	return NULL;
}

static const char *map_str(struct kc_parse *p, yaml_node_t *map, const char *key, int *rc)
{
	yaml_node_t *n = map_get(p, map, key);
	bool bad = false;
	if (!n)
		return NULL;
	if (n->type != YAML_SCALAR_NODE) {
		*rc = failf(p, "kubeconfig: %s is not a string", key);
		return NULL;
	}
	const char *v = scalar(n, &bad);
	if (bad)
		*rc = failf(p, "kubeconfig: %s holds a NUL byte", key);
	return v;
}

/* In a list like "clusters: [{name: x, cluster: {...}}]", the inner mapping
 * @p inner of the entry called @p name. */
static yaml_node_t *find_named(struct kc_parse *p, yaml_node_t *root, const char *list,
			       const char *inner, const char *name)
{
	yaml_node_t *seq = map_get(p, root, list);
	if (!seq || seq->type != YAML_SEQUENCE_NODE)
		return NULL;
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     it < seq->data.sequence.items.top; it++) {
		yaml_node_t *e = node(p, *it);
		const char *n = scalar(map_get(p, e, "name"), NULL);
		if (n && strcmp(n, name) == 0) {
			yaml_node_t *in = map_get(p, e, inner);
			return in && in->type == YAML_MAPPING_NODE ? in : NULL;
		}
	}
	return NULL;
}

static int dup_path(struct kc_parse *p, const char *v, char **out)
{
	if (v[0] == '/' || !p->has_dir) {
		*out = strdup(v);
	} else {
		size_t n = p->dirlen + 1 + strlen(v) + 1;
		*out = malloc(n);
		if (*out)
			snprintf(*out, n, "%.*s/%s", (int)p->dirlen, p->dir, v);
	}
	return *out ? 0 : -ENOMEM;
}

static int decode_data(struct kc_parse *p, const char *key, const char *v, uint8_t **out,
		       size_t *outlen)
{
	int rc = k8s_base64_decode(v, strlen(v), out, outlen);
	if (rc == -EINVAL || (rc == 0 && *outlen == 0)) {
		free(*out);
		*out = NULL;
		return failf(p, "kubeconfig: %s is not valid base64", key);
	}
	return rc;
}

/* "file or data" pair: data wins, as in kubectl. */
static int file_or_data(struct kc_parse *p, yaml_node_t *map, const char *fkey,
			const char *dkey, char **file, uint8_t **data, size_t *len)
{
	int rc = 0;
	const char *d = map_str(p, map, dkey, &rc);
	const char *f = map_str(p, map, fkey, &rc);
	if (rc < 0)
		return rc;
	if (d)
		return decode_data(p, dkey, d, data, len);
	if (f)
		return dup_path(p, f, file);
	return 0;
}

static bool yaml_false(const char *v)
{
	static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO",
					 "off", "Off", "OFF", "n", "N"};
	if (!v)
		return true; /* absent or null */
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (strcmp(v, no[i]) == 0)
			return true;
	return false;
}

/* The user entry @p u of the current context: token or token file, client
 * certificate and key. */
static int parse_user(struct kc_parse *p, yaml_node_t *u, struct k8s_kubeconfig *kc)
{
	int rc = 0;

	static const char *const unsupported[] = {"exec", "auth-provider", "username",
						  "password", "as", "impersonate"};
	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++)
		if (map_get(p, u, unsupported[i]))
			return failf(p, "kubeconfig: user field \"%s\" is not supported "
					"(use a token, tokenFile or client certificate)",
				     unsupported[i]);
	const char *tok = map_str(p, u, "token", &rc);
	const char *tokf = map_str(p, u, "tokenFile", &rc);
	if (rc < 0)
		return rc;
	if (tokf) {
		if ((rc = dup_path(p, tokf, &kc->token_file)) < 0)
			return rc;
	} else if (tok && !(kc->token = strdup(tok))) {
		return -ENOMEM;
	}
	if ((rc = file_or_data(p, u, "client-certificate", "client-certificate-data",
			       &kc->cert_file, &kc->cert_data, &kc->cert_len)) < 0)
		return rc;
	if ((rc = file_or_data(p, u, "client-key", "client-key-data", &kc->key_file,
			       &kc->key_data, &kc->key_len)) < 0)
		return rc;
	bool cert = kc->cert_file || kc->cert_data, key = kc->key_file || kc->key_data;
	if (cert != key)
		return failf(p, "kubeconfig: a client certificate needs both "
				"client-certificate and client-key%s", NULL);
	return 0;
}

static int parse(struct kc_parse *p, struct k8s_kubeconfig *kc)
{
	yaml_node_t *root = yaml_document_get_root_node(&p->doc);
	int rc = 0;

	if (!root || root->type != YAML_MAPPING_NODE)
		return failf(p, "kubeconfig: not a mapping%s", NULL);
	const char *cur = map_str(p, root, "current-context", &rc);
	if (rc < 0)
		return rc;
	if (!cur)
		return failf(p, "kubeconfig: no current-context%s", NULL);
	yaml_node_t *ctx = find_named(p, root, "contexts", "context", cur);
	if (!ctx)
		return failf(p, "kubeconfig: context \"%.200s\" not found", cur);
	const char *cname = map_str(p, ctx, "cluster", &rc);
	const char *uname = map_str(p, ctx, "user", &rc);
	if (rc < 0)
		return rc;
	if (!cname)
		return failf(p, "kubeconfig: context \"%.200s\" names no cluster", cur);
	yaml_node_t *cl = find_named(p, root, "clusters", "cluster", cname);
	if (!cl)
		return failf(p, "kubeconfig: cluster \"%.200s\" not found", cname);

	/* cluster */
	const char *server = map_str(p, cl, "server", &rc);
	const char *insecure = map_str(p, cl, "insecure-skip-tls-verify", &rc);
	if (rc < 0)
		return rc;
	if (!yaml_false(insecure))
		return failf(p, "kubeconfig: insecure-skip-tls-verify is refused: TLS is "
				"always verified%s", NULL);
	if (!server)
		return failf(p, "kubeconfig: cluster \"%.200s\" has no server", cname);
	/* A host after the scheme: "https:///" would be "https://" once its
	 * trailing slashes go (found by fuzz_kubeconfig). */
	if (strncasecmp(server, "https://", 8) != 0 || server[8] == '\0' || server[8] == '/')
		return failf(p, "kubeconfig: server \"%.200s\" is not an https:// URL", server);
	if (!(kc->server = strdup(server)))
		return -ENOMEM;
	size_t sl = strlen(kc->server);
	while (sl > 8 && kc->server[sl - 1] == '/')
		kc->server[--sl] = '\0';
	if ((rc = file_or_data(p, cl, "certificate-authority", "certificate-authority-data",
			       &kc->ca_file, &kc->ca_data, &kc->ca_len)) < 0)
		return rc;

	/* user: an empty or absent user means anonymous (client TLS only). */
	if (!uname)
		return 0;
	yaml_node_t *u = find_named(p, root, "users", "user", uname);
	if (!u) {
		/* kubectl accepts "user: {}" entries; a missing entry is a typo. */
		return failf(p, "kubeconfig: user \"%.200s\" not found", uname);
	}
	return parse_user(p, u, kc);
}

static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "kubeconfig %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "kubeconfig %s: %s", path, strerror(-rc));
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)K8S_KUBECONFIG_MAX_BYTES) {
		rc = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
		snprintf(err, errlen, "kubeconfig %s: not a regular file of at most %u bytes",
			 path, K8S_KUBECONFIG_MAX_BYTES);
		close(fd);
		return rc;
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *b = malloc(cap);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "kubeconfig %s: %s", path, strerror(-rc));
			free(b);
			close(fd);
			return rc;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == cap) { /* grew while we read it */
			snprintf(err, errlen, "kubeconfig %s: changed while being read", path);
			free(b);
			close(fd);
			return -EINVAL;
		}
	}
	close(fd);
	*buf = b;
	*len = n;
	return 0;
}

static void wipe_free(void *p, size_t n)
{
	if (p) {
		explicit_bzero(p, n);
		free(p);
	}
}

void k8s_kubeconfig_free(struct k8s_kubeconfig *kc)
{
	if (!kc)
		return;
	free(kc->server);
	free(kc->ca_file);
	free(kc->ca_data);
	if (kc->token)
		wipe_free(kc->token, strlen(kc->token));
	free(kc->token_file);
	free(kc->cert_file);
	free(kc->key_file);
	free(kc->cert_data);
	wipe_free(kc->key_data, kc->key_len);
	memset(kc, 0, sizeof(*kc));
}

int k8s_kubeconfig_load(const char *path, struct k8s_kubeconfig *out, char *err, size_t errlen)
{
	char dummy[1];
	struct kc_parse p = {0};
	yaml_parser_t parser;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	memset(out, 0, sizeof(*out));
	if ((rc = read_file(path, &buf, &len, err, errlen)) < 0)
		return rc;
	const char *slash = strrchr(path, '/');
	p.dir = path;
	p.has_dir = slash != NULL;
	p.dirlen = slash ? (size_t)(slash - path) : 0;
	p.err = err;
	p.errlen = errlen;

	if (!yaml_parser_initialize(&parser)) {
		wipe_free(buf, len);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &p.doc)) {
		rc = parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
		snprintf(err, errlen, "kubeconfig %s: YAML error at line %zu: %s", path,
			 parser.problem_mark.line + 1,
			 parser.problem ? parser.problem : "unknown");
		yaml_parser_delete(&parser);
		wipe_free(buf, len);
		return rc;
	}
	rc = parse(&p, out);
	yaml_document_delete(&p.doc);
	yaml_parser_delete(&parser);
	wipe_free(buf, len);
	if (rc < 0) {
		if (rc == -ENOMEM && err[0] == '\0')
			snprintf(err, errlen, "kubeconfig %s: out of memory", path);
		k8s_kubeconfig_free(out);
	}
	return rc;
}
