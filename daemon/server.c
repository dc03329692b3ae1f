#include "daemon/server.h"
#include "common/buf.h"
#include "common/log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct server server = { .registry_lock = PTHREAD_MUTEX_INITIALIZER };

void server_options_default(struct server_options *o)
{
	memset(o, 0, sizeof(*o));
	o->listen = "0.0.0.0";
	o->port = 9000;
	o->grpc_port = 8500;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	o->threads = cores > 0 && cores <= MAX_SHARDS ? (unsigned)cores : 1;
	o->max_header_bytes = 8192;
	o->header_timeout_ms = 10000;
	o->body_timeout_ms = 60000;
	o->idle_timeout_ms = 60000;
	o->send_timeout_ms = 60000;
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	o->max_buffered = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize / 4 : 0;
	if (o->max_buffered < (256ull << 20))
		o->max_buffered = 256ull << 20;
	o->proxy_timeout_ms = 30000;
	o->max_connections = 20000;
	o->init_timeout_s = 300;
	o->scratch_mb = 512; /* Function Compute's default diskSize */
	o->access_log = true;
	static char state[PATH_MAX];
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	if (geteuid() == 0)
		snprintf(state, sizeof(state), "/var/lib/thaw");
	else if (xdg && *xdg)
		snprintf(state, sizeof(state), "%s/thaw", xdg);
	else
		snprintf(state, sizeof(state), "%s/.local/state/thaw", home ? home : "/tmp");
	o->state_dir = state;
	/* thaw-instance lives beside the thaw binary */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	char *slash = strrchr(self, '/');
	size_t dir_len = slash ? (size_t)(slash - self) : 0;
	if (dir_len > sizeof(o->instance_bin) - 20)
		dir_len = 0;
	memcpy(o->instance_bin, self, dir_len);
	strcpy(o->instance_bin + dir_len, "/thaw-instance");
}

void server_access_log(const struct access_entry *e)
{
	if (!server.opt.access_log)
		return;
	struct buf l = { 0 };
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	buf_printf(&l, "{\"ts\":%ld.%03ld,\"request_id\":\"%s\",\"function\":", (long)ts.tv_sec,
		   ts.tv_nsec / 1000000, e->request_id);
	if (e->function)
		buf_append_json_string(&l, e->function, strlen(e->function));
	else
		buf_append_str(&l, "null");
	buf_printf(&l, ",\"method\":\"%s\",", e->method);
	if (e->protocol)
		buf_printf(&l, "\"protocol\":\"%s\",", e->protocol);
	buf_append_str(&l, "\"path\":");
	buf_append_json_string(&l, e->path, e->path_len);
	buf_printf(&l, ",\"status\":%d,", e->status);
	if (e->protocol)
		buf_printf(&l, "\"grpc_status\":%d,", e->grpc_status);
	buf_printf(&l, "\"duration_ms\":%.3f}\n", (double)e->dur_ns / 1e6);
	log_raw_line(l.data, l.len);
	buf_free(&l);
}
