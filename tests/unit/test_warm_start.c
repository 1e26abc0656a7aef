/* tests/unit/test_warm_start.c - unit tests for the warm-start file on disk: load, the saver, identity, options. */
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/cluster/warm_file.h"
#include "nodedns/config.h"
#include "nodedns/io/warm_start.h"
#include "nodedns/util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define SERVER "https://api:443 ca=00000000"
#define DEMO_FILE "deploy/examples/demo-cluster.json"

static const struct cluster_config cfg = { .domain = "cluster.local", .ttl_s = 5 };
static char dir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/nodedns-test-warm-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static struct warm_start_config conf(void)
{
	return (struct warm_start_config){ .run_dir = dir, .domain = "cluster.local",
					   .server = SERVER, .max_age_s = 3600,
					   .save_delay_ms = 20 };
}

static char *path_of(const char *name)
{
	static char p[400];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static uint64_t services(const struct k8s_store *s)
{
	struct k8s_store_stats st;
	k8s_store_get_stats(s, &st);
	return st.services;
}

static struct k8s_store *demo(void)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	char err[256];
	assert_int_equal(k8s_store_load_file(s, DEMO_FILE, err, sizeof(err)), 0);
	return s;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void test_load(void **state)
{
	struct warm_start_config c = conf();
	struct k8s_store *s = demo(), *t = k8s_store_new(&cfg);
	uint64_t created = 0;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(warm_start_load(&c, t, &created), -ENOENT);
	assert_int_equal(warm_file_encode(s, "cluster.local", SERVER, (uint64_t)time(NULL) - 5, &buf,
					  &len), 0);
	write_bytes(path_of(WARM_START_FILE), buf, len - 1);
	assert_int_equal(warm_start_load(&c, t, &created), -EBADMSG);
	assert_int_equal(services(t), 0);
	write_bytes(path_of(WARM_START_FILE), buf, len);
	assert_int_equal(warm_start_load(&c, t, &created), 0);
	assert_int_equal(services(t), services(s));
	assert_true(created + 5 <= (uint64_t)time(NULL) && created + 10 > (uint64_t)time(NULL));
	c.max_age_s = 2;
	assert_int_equal(warm_start_load(&c, t, &created), -ESTALE);
	c.max_age_s = 3600;
	c.server = "https://other:443 ca=00000000";
	assert_int_equal(warm_start_load(&c, t, &created), -EREMCHG);
	/* a directory where the file should be */
	c = conf();
	assert_int_equal(unlink(path_of(WARM_START_FILE)), 0);
	assert_int_equal(mkdir(path_of(WARM_START_FILE), 0700), 0);
	assert_true(warm_start_load(&c, t, &created) < 0);
	assert_int_equal(rmdir(path_of(WARM_START_FILE)), 0);
	free(buf);
	k8s_store_free(s);
	k8s_store_free(t);
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
	uint64_t end = uv_now(loop) + ms;
	while (uv_now(loop) < end) {
		uv_run(loop, UV_RUN_NOWAIT);
		usleep(2000);
		uv_update_time(loop);
	}
}

static int count_files(const char *d)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "exit $(ls -A '%s' | wc -l)", d);
	return WEXITSTATUS(system(cmd));
}

static uint64_t progress_value;
static uint64_t progress(void *arg)
{
	(void)arg;
	return progress_value;
}

static void test_saver(void **state)
{
	struct warm_start_config c = conf();
	struct k8s_store *s = demo(), *t = k8s_store_new(&cfg);
	struct warm_start *ws;
	struct stat st;
	uv_loop_t loop;
	uint64_t created;

	(void)state;
	uv_loop_init(&loop);
	/* a run dir that does not exist yet is created */
	char rd[300], sub[300];
	snprintf(rd, sizeof(rd), "%s/run", dir);
	c.run_dir = rd;
	assert_int_equal(warm_start_new(&loop, &c, s, progress, NULL, &ws), 0);
	assert_int_equal(stat(rd, &st), 0);
	/* nothing is written before the live data was published */
	run_for(&loop, 60);
	snprintf(sub, sizeof(sub), "%s/run/%s", dir, WARM_START_FILE);
	assert_int_equal(stat(sub, &st), -1);
	/* a change: written after the save delay, once for several changes */
	warm_start_changed(ws);
	warm_start_changed(ws);
	assert_int_equal(stat(sub, &st), -1);
	for (int i = 0; i < 100 && stat(sub, &st) < 0; i++)
		run_for(&loop, 20); /* 20 ms save delay; up to 2 s on a busy machine */
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(warm_start_load(&c, t, &created), 0);
	assert_int_equal(services(t), services(s));
	/* no temporary file is left */
	assert_int_equal(count_files(rd), 1);
	/* close without a change since the last save: not written again */
	snprintf(sub, sizeof(sub), "%s/run/%s", dir, WARM_START_FILE);
	assert_int_equal(unlink(sub), 0);
	warm_start_close(ws);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(stat(sub, &st), -1);
	/* a stale temporary file (a save killed half-way) is removed at the
	 * next start, a fresh one (another instance saving) is not */
	char stale[400], fresh[400];
	snprintf(stale, sizeof(stale), "%s/%s.abc123", rd, WARM_START_FILE);
	snprintf(fresh, sizeof(fresh), "%s/%s.def456", rd, WARM_START_FILE);
	write_bytes(stale, "x", 1);
	write_bytes(fresh, "x", 1);
	struct timespec old_times[2] = { { time(NULL) - 120, 0 }, { time(NULL) - 120, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, stale, old_times, 0), 0);
	/* a change then close: saved on the way out */
	assert_int_equal(warm_start_new(&loop, &c, s, progress, NULL, &ws), 0);
	warm_start_changed(ws);
	warm_start_close(ws);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(stat(stale, &st), -1);
	assert_int_equal(stat(fresh, &st), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	k8s_store_free(s);
	k8s_store_free(t);
}

static void test_save_error(void **state)
{
	struct warm_start_config c = conf();
	struct k8s_store *s = demo();
	struct warm_start *ws;
	uv_loop_t loop;
	char sub[300];

	(void)state;
	uv_loop_init(&loop);
	snprintf(sub, sizeof(sub), "%s/no/such/dir", dir);
	c.run_dir = sub;
	assert_int_equal(warm_start_new(&loop, &c, s, NULL, NULL, &ws), 0);
	warm_start_changed(ws);
	run_for(&loop, 80);
	warm_start_changed(ws);
	warm_start_close(ws); /* a second failure: counted, not fatal */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	k8s_store_free(s);
}

static void test_identity(void **state)
{
	char a[WARM_START_ID_MAX], b[WARM_START_ID_MAX], ca[400];

	(void)state;
	assert_int_equal(warm_start_identity("https://10.96.0.1:443", NULL, "/nonexistent", a,
					     sizeof(a)), 0);
	assert_string_equal(a, "https://10.96.0.1:443/ ca=00000000");
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	write_bytes(ca, "one CA", 6);
	assert_int_equal(warm_start_identity("https://10.96.0.1:443", NULL, ca, b, sizeof(b)), 0);
	assert_string_not_equal(a, b);
	assert_memory_equal(a, b, strlen("https://10.96.0.1:443/ ca="));
	assert_int_equal(warm_start_identity(NULL, NULL, ca, b, sizeof(b)), -EINVAL);
	assert_int_equal(warm_start_identity("http://x", NULL, ca, b, sizeof(b)), -EINVAL);
}

static void test_options(void **state)
{
	struct config c;
	char err[512];
	char *a1[] = { "nodedns", NULL };
	char *a2[] = { "nodedns", "--run-dir", "/var/lib/x", "--warm-start-max-age", "0", NULL };
	char *a3[] = { "nodedns", "--run-dir", "relative", NULL };
	char *a4[] = { "nodedns", "--warm-start-max-age", "604801", NULL };

	(void)state;
	unsetenv("NODEDNS_RUN_DIR");
	assert_int_equal(config_parse(&c, 1, a1, "/nonexistent", err, sizeof(err)), CONFIG_OK);
	assert_string_equal(c.run_dir, "/run/nodedns");
	assert_int_equal(c.warm_start_max_age_s, 3600);
	config_free(&c);
	setenv("NODEDNS_RUN_DIR", "/run/other", 1);
	assert_int_equal(config_parse(&c, 1, a1, "/nonexistent", err, sizeof(err)), CONFIG_OK);
	assert_string_equal(c.run_dir, "/run/other");
	config_free(&c);
	assert_int_equal(config_parse(&c, 5, a2, "/nonexistent", err, sizeof(err)), CONFIG_OK);
	assert_string_equal(c.run_dir, "/var/lib/x");
	assert_int_equal(c.warm_start_max_age_s, 0);
	config_free(&c);
	unsetenv("NODEDNS_RUN_DIR");
	assert_int_equal(config_parse(&c, 3, a3, "/nonexistent", err, sizeof(err)), CONFIG_ERROR);
	assert_non_null(strstr(err, "--run-dir: must be an absolute path"));
	config_free(&c);
	assert_int_equal(config_parse(&c, 3, a4, "/nonexistent", err, sizeof(err)), CONFIG_ERROR);
	assert_non_null(strstr(err, "--warm-start-max-age"));
	config_free(&c);
}

int main(void)
{
	log_setup(LOGL_ERROR, false);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_saver, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
		cmocka_unit_test(test_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
