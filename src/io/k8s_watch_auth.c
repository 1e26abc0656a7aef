/* src/io/k8s_watch_auth.c - the API watch's credentials: server URL, CA, client certificate, bearer token file. */
#include "k8s_watch_internal.h"

/* --------------------------------------------------------------- token */

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

void k8s_watch_wipe_str(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Read a bearer token: at most TOKEN_MAX_BYTES, surrounding whitespace
 * trimmed, and only visible ASCII inside (it goes into a header line). */
static int read_token(const char *path, char **out, struct stat *st, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *b = NULL;
	size_t n = 0;
	int rc;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "token file %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "token file %s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if (!(b = malloc(TOKEN_MAX_BYTES + 1))) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r = read(fd, b + n, TOKEN_MAX_BYTES + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "token file %s: %s", path, strerror(-rc));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > TOKEN_MAX_BYTES) {
			snprintf(err, errlen, "token file %s: larger than %d bytes", path,
				 TOKEN_MAX_BYTES);
			rc = -EINVAL;
			goto fail;
		}
	}
	close(fd);
	fd = -1;
	size_t s = 0, e = n;
	while (s < e && (b[s] == ' ' || b[s] == '\t' || b[s] == '\r' || b[s] == '\n'))
		s++;
	while (e > s && (b[e - 1] == ' ' || b[e - 1] == '\t' || b[e - 1] == '\r' || b[e - 1] == '\n'))
		e--;
	if (s == e) {
		snprintf(err, errlen, "token file %s: empty", path);
		rc = -EINVAL;
		goto fail;
	}
	for (size_t i = s; i < e; i++) {
		if (b[i] < 0x21 || b[i] > 0x7e) {
			snprintf(err, errlen, "token file %s: not a bearer token", path);
			rc = -EINVAL;
			goto fail;
		}
	}
	memmove(b, b + s, e - s);
	explicit_bzero(b + (e - s), n - (e - s)); /* the moved-from tail */
	b[e - s] = '\0';
	*out = b;
	return 0;
fail:
	explicit_bzero(b, n);
	free(b);
	if (fd >= 0)
		close(fd);
	return rc;
}

void k8s_watch_token_refresh(struct k8s_watch *w, bool force)
{
	struct stat st;
	char err[256];
	char *tok = NULL;
	uint64_t now = k8s_watch_now_ms(w);

	if (!w->token_file)
		return;
	if (!force && now - w->tok_checked_ms < TOKEN_CHECK_MS)
		return;
	w->tok_checked_ms = now;
	if (!force) {
		if (stat(w->token_file, &st) < 0) {
			if (log_ratelimited(&w->tok_loglim, now, LOG_INTERVAL_MS))
				log_warn(TAG, "token file %s: %s (keeping the current token)",
					 w->token_file, strerror(errno));
			return;
		}
		if (same_file(&st, &w->tok_st))
			return;
	}
	if (read_token(w->token_file, &tok, &st, err, sizeof(err)) < 0) {
		if (log_ratelimited(&w->tok_loglim, now, LOG_INTERVAL_MS))
			log_warn(TAG, "%s (keeping the current token)", err);
		return;
	}
	w->tok_st = st;
	if (w->token && strcmp(w->token, tok) == 0) {
		k8s_watch_wipe_str(tok);
		return;
	}
	k8s_watch_wipe_str(w->token);
	w->token = tok;
	STAT_INC(w, token_reloads);
	log_info(TAG, "bearer token reloaded from %s", w->token_file);
	k8s_watch_token_changed(w);
}

int k8s_watch_set_tls(struct k8s_watch *w, CURL *e)
{
	struct curl_blob blob;
	CURLcode rc = CURLE_OK;

	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (w->kc.ca_data) {
		blob = (struct curl_blob){w->kc.ca_data, w->kc.ca_len, CURL_BLOB_COPY};
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
	} else if (w->kc.ca_file || w->ca_file) {
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO, w->kc.ca_file ? w->kc.ca_file : w->ca_file);
	}
	/* With our own CA, trust only it, not also the system directory. */
	if (w->kc.ca_data || w->kc.ca_file || w->ca_file)
		curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	if (w->kc.cert_data) {
		blob = (struct curl_blob){w->kc.cert_data, w->kc.cert_len, CURL_BLOB_COPY};
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
	} else if (w->kc.cert_file) {
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERT, w->kc.cert_file);
	}
	if (w->kc.key_data) {
		blob = (struct curl_blob){w->kc.key_data, w->kc.key_len, CURL_BLOB_COPY};
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
	} else if (w->kc.key_file) {
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEY, w->kc.key_file);
	}
	return rc == CURLE_OK ? 0 : -EINVAL;
}

/* ------------------------------------------------ server URL and files */

int k8s_watch_failv(char *err, size_t errlen, int rc, const char *fmt, const char *arg)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, arg);
	return rc;
}

/* Curl's URL parser takes bytes above 0x7e as they are: refuse them first. */
static int check_chars(const char *url, char *err, size_t errlen)
{
	size_t n = strlen(url);
	if (n > URL_MAX_BYTES)
		return k8s_watch_failv(err, errlen, -EINVAL, "API server URL is too long%s", "");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return k8s_watch_failv(err, errlen, -EINVAL,
					       "API server URL \"%.200s\" has a bad character", url);
	return 0;
}

/* After curl parsed it: https, a host, and none of the parts that would be
 * lost or leak on the way (user, password, options, query, fragment). */
static int check_parts(CURLU *u, const char *url, char *err, size_t errlen)
{
	static const CURLUPart absent[] = { CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS,
					    CURLUPART_QUERY, CURLUPART_FRAGMENT };
	char *part = NULL;
	CURLUcode uc = curl_url_get(u, CURLUPART_SCHEME, &part, 0);
	bool https = uc == CURLUE_OK && strcmp(part, "https") == 0;
	curl_free(part);
	part = NULL;
	if (uc == CURLUE_OUT_OF_MEMORY)
		return -ENOMEM;
	if (!https)
		return k8s_watch_failv(err, errlen, -EINVAL,
				       "API server URL \"%.200s\" is not https:// (TLS is required)", url);
	uc = curl_url_get(u, CURLUPART_HOST, &part, 0);
	bool host = uc == CURLUE_OK && part[0] != '\0';
	curl_free(part);
	part = NULL;
	if (!host)
		return k8s_watch_failv(err, errlen, -EINVAL, "API server URL \"%.200s\" has no host",
				       url);
	for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
		uc = curl_url_get(u, absent[i], &part, 0);
		curl_free(part);
		part = NULL;
		if (uc == CURLUE_OK)
			return k8s_watch_failv(err, errlen, -EINVAL,
					       "API server URL \"%.200s\" has a user, password, "
					       "query or fragment", url);
	}
	return 0;
}

int k8s_watch_check_url(const char *url, char **normalized, char *err, size_t errlen)
{
	int rc = check_chars(url, err, errlen);
	if (rc < 0)
		return rc;
	/* libcurl's parser also takes "https:/host" or "https:host"; the URL
	 * shown in errors and logs must be the one used, so ask for it whole. */
	if (strncasecmp(url, "https://", 8) != 0)
		return k8s_watch_failv(err, errlen, -EINVAL,
				       "API server URL \"%.200s\" does not start with https://", url);
	CURLU *u = curl_url();
	char *norm = NULL;
	if (!u)
		return -ENOMEM;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc == CURLUE_OUT_OF_MEMORY)
		rc = -ENOMEM;
	else if (uc != CURLUE_OK)
		rc = k8s_watch_failv(err, errlen, -EINVAL,
				     "API server URL \"%.200s\" is not a valid https:// URL", url);
	else
		rc = check_parts(u, url, err, errlen);
	if (rc == 0 && normalized) {
		if (curl_url_get(u, CURLUPART_URL, &norm, 0) != CURLUE_OK ||
		    !(*normalized = strdup(norm)))
			rc = -ENOMEM;
	}
	curl_free(norm);
	curl_url_cleanup(u);
	return rc;
}

static int set_server(struct k8s_watch *w, const char *url, char *err, size_t errlen)
{
	int rc = k8s_watch_check_url(url, &w->server, err, errlen);
	if (rc < 0)
		return rc;
	size_t n = strlen(w->server);
	while (n > 8 && w->server[n - 1] == '/')
		w->server[--n] = '\0';
	return 0;
}

static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
	if (path && access(path, R_OK) < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

int k8s_watch_configure(struct k8s_watch *w, const struct k8s_watch_config *cfg, char *err,
		     size_t errlen)
{
	int rc;
	const char *token_file = cfg->token_file;

	if (cfg->kubeconfig) {
		rc = k8s_kubeconfig_load(cfg->kubeconfig, &w->kc, err, errlen);
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			return -EINVAL;
		/* The kubeconfig's CA and credentials replace the in-cluster
		 * defaults; an explicit --kube-api still wins for the URL. */
		rc = set_server(w, cfg->api_url ? cfg->api_url : w->kc.server, err, errlen);
		token_file = w->kc.token_file;
		if (w->kc.token && !(w->token = strdup(w->kc.token)))
			return -ENOMEM;
	} else {
		if (!cfg->api_url)
			return k8s_watch_failv(err, errlen, -EINVAL, "no API server URL%s", "");
		rc = set_server(w, cfg->api_url, err, errlen);
		if (rc == 0 && cfg->ca_file && !(w->ca_file = strdup(cfg->ca_file)))
			rc = -ENOMEM;
	}
	if (rc < 0)
		return rc;
	if ((rc = check_readable("CA file", w->kc.ca_file ? w->kc.ca_file : w->ca_file, err,
				 errlen)) < 0 ||
	    (rc = check_readable("client certificate", w->kc.cert_file, err, errlen)) < 0 ||
	    (rc = check_readable("client key", w->kc.key_file, err, errlen)) < 0)
		return rc;
	if (token_file) {
		if (!(w->token_file = strdup(token_file)))
			return -ENOMEM;
		k8s_watch_wipe_str(w->token);
		w->token = NULL;
		rc = read_token(w->token_file, &w->token, &w->tok_st, err, errlen);
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			return -EINVAL;
		w->tok_checked_ms = k8s_watch_now_ms(w);
	}
	w->max_event_bytes = cfg->max_event_bytes ? cfg->max_event_bytes : DEFAULT_EVENT_BYTES;
	if (w->max_event_bytes < MIN_EVENT_BYTES)
		w->max_event_bytes = MIN_EVENT_BYTES;
	w->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : IDLE_DEFAULT_MS;
	w->list_deadline_ms = cfg->list_deadline_ms ? cfg->list_deadline_ms : LIST_DEADLINE_DEFAULT_MS;
	w->watch_timeout_s = cfg->watch_timeout_s;
	w->reconnect_spread_ms =
		cfg->reconnect_spread_ms ? cfg->reconnect_spread_ms : RECONNECT_SPREAD_DEFAULT_MS;
	w->watch_list_off = cfg->watch_list < 0;
	return 0;
}
