/* Lifecycle replay from a journal: versions, numbers, states, rollbacks,
 * removals, broken deploys and retirement come back as they were, with no
 * loop, pool or instance. Each case uses names of its own (the registry only
 * grows within a process). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "daemon/journal.h"
#include "daemon/lifecycle.h"
#include "daemon/server.h"

static char root[] = "/tmp/thaw-test-lifecycle.XXXXXX";
static char state[256], snap[256], fns[256];

/* A function folder root/fns/NAME with a minimal fc.yaml; returns its path. */
static const char *folder(const char *name)
{
	static char dir[512];
	char path[600];
	snprintf(dir, sizeof(dir), "%s/%s", fns, name);
	fs_mkdir_p(dir, 0755);
	snprintf(path, sizeof(path), "%s/fc.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "name: %s\nhandler: /nonexistent/echo.so\n", name);
	fclose(f);
	return dir;
}

/* Appends raw lines to the journal (what earlier runs wrote). */
static void journal(const char *lines)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/deployments.jsonl", state);
	FILE *f = fopen(path, "a");
	assert_non_null(f);
	fputs(lines, f);
	fclose(f);
}

static void deploy_line(const char *name, const char *dir)
{
	char l[700];
	snprintf(l, sizeof(l), "{\"op\":\"deploy\",\"name\":\"%s\",\"version\":0,\"dir\":\"%s\",\"time\":1700000000}\n",
		 name, dir);
	journal(l);
}

static void op_line(const char *op, const char *name, unsigned v)
{
	char l[300];
	snprintf(l, sizeof(l), "{\"op\":\"%s\",\"name\":\"%s\",\"version\":%u,\"error\":\"boom\"}\n", op,
		 name, v);
	journal(l);
}

/* Replays the journal written so far, then empties it for the next case. */
static int replay(void)
{
	int n = lifecycle_replay();
	char path[300];
	snprintf(path, sizeof(path), "%s/deployments.jsonl", state);
	unlink(path);
	return n;
}

static void test_replay_keeps_numbers_states_and_serving_version(void **st)
{
	(void)st;
	const char *d = folder("alpha");
	deploy_line("alpha", d);
	op_line("ready", "alpha", 1);
	deploy_line("alpha", d);
	op_line("ready", "alpha", 2);
	deploy_line("alpha", d);
	op_line("failed", "alpha", 3);
	assert_int_equal(replay(), 6);
	struct fn_name *nm = registry_find_name("alpha", 5);
	assert_non_null(nm);
	assert_int_equal(atomic_load(&nm->n_versions), 3);
	assert_int_equal(atomic_load(&nm->current)->version, 2);
	assert_int_equal(atomic_load(&fn_name_version(nm, 1)->state), FN_READY);
	assert_int_equal(atomic_load(&fn_name_version(nm, 3)->state), FN_FAILED);
	char err[600];
	function_error(fn_name_version(nm, 3), err, sizeof(err));
	assert_string_equal(err, "boom");
	assert_int_equal(fn_name_version(nm, 1)->deployed_at, 1700000000);
	/* the serving version is what a request finds */
	assert_ptr_equal(registry_find_function("alpha", 5), fn_name_version(nm, 2));
}

static void test_replay_rollback_pins_the_version(void **st)
{
	(void)st;
	const char *d = folder("beta");
	deploy_line("beta", d);
	op_line("ready", "beta", 1);
	deploy_line("beta", d);
	op_line("ready", "beta", 2);
	op_line("rollback", "beta", 1);
	replay();
	struct fn_name *nm = registry_find_name("beta", 4);
	assert_int_equal(atomic_load(&nm->current)->version, 1);
	assert_true(nm->pinned);
}

static void test_replay_rm_then_redeploy_is_a_new_name(void **st)
{
	(void)st;
	const char *d = folder("gamma");
	deploy_line("gamma", d);
	op_line("ready", "gamma", 1);
	deploy_line("gamma", d);
	journal("{\"op\":\"rm\",\"name\":\"gamma\"}\n");
	deploy_line("gamma", d);
	op_line("ready", "gamma", 1);
	replay();
	struct fn_name *nm = registry_find_name("gamma", 5);
	assert_non_null(nm);
	assert_int_equal(atomic_load(&nm->n_versions), 1);
	assert_int_equal(atomic_load(&nm->current)->version, 1);
	/* and a removal at the end leaves it unfindable */
	journal("{\"op\":\"rm\",\"name\":\"gamma\"}\n");
	replay();
	assert_null(registry_find_name("gamma", 5));
	assert_null(registry_find_function("gamma", 5));
}

static void test_replay_broken_deploy_keeps_its_number(void **st)
{
	(void)st;
	const char *d = folder("delta");
	char gone[600];
	snprintf(gone, sizeof(gone), "%s/vanished", fns);
	deploy_line("delta", d);
	deploy_line("delta", gone);
	deploy_line("delta", d);
	op_line("ready", "delta", 3);
	replay();
	struct fn_name *nm = registry_find_name("delta", 5);
	assert_int_equal(atomic_load(&nm->n_versions), 3);
	struct function *v2 = fn_name_version(nm, 2);
	assert_true(v2->broken);
	assert_int_equal(atomic_load(&v2->state), FN_FAILED);
	char err[600];
	function_error(v2, err, sizeof(err));
	assert_non_null(strstr(err, "cannot be loaded again after a restart"));
	assert_int_equal(atomic_load(&nm->current)->version, 3);
}

static void test_replay_retires_old_versions_and_skips_garbage(void **st)
{
	(void)st;
	const char *d = folder("eps");
	journal("not json at all\n{\"op\":\"deploy\"}\n");
	for (int i = 0; i < JOURNAL_KEEP_VERSIONS + 6; i++)
		deploy_line("eps", d);
	op_line("ready", "eps", JOURNAL_KEEP_VERSIONS + 6);
	replay();
	struct fn_name *nm = registry_find_name("eps", 3);
	assert_int_equal(nm->first, 7);
	assert_int_equal(atomic_load(&nm->n_versions), JOURNAL_KEEP_VERSIONS + 6);
	assert_null(fn_name_version(nm, 6));
	assert_non_null(fn_name_version(nm, 7));
	assert_int_equal(atomic_load(&nm->current)->version, JOURNAL_KEEP_VERSIONS + 6);
}

static void test_name_index_finds_every_name(void **st)
{
	(void)st;
	char name[32];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "fn%03d", i);
		deploy_line(name, folder(name));
	}
	replay();
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "fn%03d", i);
		struct fn_name *nm = registry_find_name(name, strlen(name));
		assert_non_null(nm);
		assert_string_equal(nm->name, name);
	}
	assert_null(registry_find_name("fn300", 5));
	assert_null(registry_find_name("fn00", 4));
}

static int setup(void **st)
{
	(void)st;
	assert_non_null(mkdtemp(root));
	snprintf(state, sizeof(state), "%s/state", root);
	snprintf(snap, sizeof(snap), "%s/snap", root);
	snprintf(fns, sizeof(fns), "%s/functions", root);
	fs_mkdir_p(state, 0700);
	fs_mkdir_p(fns, 0755);
	server_options_default(&server.opt);
	server.opt.state_dir = state;
	server.opt.snapshot_dir = snap;
	server.snapshots = false;
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	fs_rm_rf(root);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay_keeps_numbers_states_and_serving_version),
		cmocka_unit_test(test_replay_rollback_pins_the_version),
		cmocka_unit_test(test_replay_rm_then_redeploy_is_a_new_name),
		cmocka_unit_test(test_replay_broken_deploy_keeps_its_number),
		cmocka_unit_test(test_replay_retires_old_versions_and_skips_garbage),
		cmocka_unit_test(test_name_index_finds_every_name),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
