/* tests/apiserver/driver_common.h - what the k8s_watch drivers share.
 *
 * Included by tests/apiserver/watch_driver.c and bench/cluster/apicost_driver.c,
 * each built as one file (tests/apiserver/build_driver.sh, bench/cluster/apicost.py),
 * so this is a header of static functions rather than a file of its own to link:
 *   emit()              one JSON line on stdout
 *   driver_option()     the k8s_watch options both take (--api, --token-file,
 *                       --ca-file, --idle-ms, --watch-timeout-s, --watch-list,
 *                       --log-level)
 *   kind_names[]        the kinds' names in the JSON
 *   res_stats_json()    the per-resource counters of a watch
 *   on_closed()         a close callback with nothing to do
 *   struct cmd_in       commands on stdin, one a line
 */
#ifndef NODEDNS_TESTS_APISERVER_DRIVER_COMMON_H
#define NODEDNS_TESTS_APISERVER_DRIVER_COMMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "nodedns/io/k8s_watch.h"
#include "nodedns/util/log.h"

/* Print @p j as one compact line and flush; takes @p j. */
static void emit(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s) {
		fprintf(stdout, "%s\n", s);
		fflush(stdout);
		free(s);
	}
}

/* Take option @p a with value @p v into @p cfg or @p level when it is one of
 * the shared ones. @return false for any other option (or a bad log level). */
static bool driver_option(struct k8s_watch_config *cfg, enum log_level *level, const char *a,
			  const char *v)
{
	if (strcmp(a, "--api") == 0)
		cfg->api_url = v;
	else if (strcmp(a, "--token-file") == 0)
		cfg->token_file = v;
	else if (strcmp(a, "--ca-file") == 0)
		cfg->ca_file = v;
	else if (strcmp(a, "--idle-ms") == 0)
		cfg->idle_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
	else if (strcmp(a, "--watch-timeout-s") == 0)
		cfg->watch_timeout_s = (uint32_t)strtoul(v, NULL, 10);
	else if (strcmp(a, "--watch-list") == 0)
		cfg->watch_list = strcmp(v, "off") == 0 ? -1 : 0;
	else if (strcmp(a, "--log-level") == 0)
		return log_level_parse(v, level) == 0;
	else
		return false;
	return true;
}

/* The kinds' names in the drivers' JSON. */
static const char *const kind_names[K8S_KIND_COUNT] = { "services", "endpointslices",
							"namespaces" };

/* {"services":{"requests":N,"bytes":N,"relists":N,"reconnects":N,"established":N},...} */
static json_t *res_stats_json(const struct k8s_watch_stats *st)
{
	json_t *res = json_object();
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		json_t *o = json_object();
#define R(f) json_object_set_new(o, #f, json_integer((json_int_t)atomic_load(&st->res[k].f)))
		R(requests);
		R(bytes);
		R(relists);
		R(reconnects);
		R(established);
#undef R
		json_object_set_new(res, kind_names[k], o);
	}
	return res;
}

/* A close callback with nothing to do. */
static void on_closed(uv_handle_t *h)
{
	(void)h;
}

/* Commands on stdin (fd 0), one a line: each line goes to on_line without its
 * '\n' (cut at 255 bytes), and EOF or a read error as a NULL line. */
struct cmd_in {
	uv_pipe_t pipe;
	void (*on_line)(void *arg, const char *line);
	void *arg;
	char line[256];
	size_t len;
};

static void cmd_in_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char mem[4096];
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(mem, sizeof(mem));
}

static void cmd_in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct cmd_in *c = s->data;
	if (n < 0) {
		c->on_line(c->arg, NULL);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char ch = buf->base[i];
		if (ch == '\n') {
			c->line[c->len] = '\0';
			c->len = 0;
			c->on_line(c->arg, c->line);
		} else if (c->len + 1 < sizeof(c->line)) {
			c->line[c->len++] = ch;
		}
	}
}

static void cmd_in_start(uv_loop_t *loop, struct cmd_in *c,
			 void (*on_line)(void *arg, const char *line), void *arg)
{
	c->on_line = on_line;
	c->arg = arg;
	c->len = 0;
	uv_pipe_init(loop, &c->pipe, 0);
	c->pipe.data = c;
	uv_pipe_open(&c->pipe, 0);
	uv_read_start((uv_stream_t *)&c->pipe, cmd_in_alloc, cmd_in_read);
}

/* Stop reading and close the pipe (from on_line too). */
static void cmd_in_stop(struct cmd_in *c)
{
	uv_read_stop((uv_stream_t *)&c->pipe);
	uv_close((uv_handle_t *)&c->pipe, on_closed);
}

#endif
