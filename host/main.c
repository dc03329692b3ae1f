/*
 * thaw-instance: loads a handler and serves it, on the daemon's channel
 * (host.c) or, with --http, as a debug server (http_front.c).
 */
#include "host/host.h"
#include "host/http_front.h"
#include "host/snapmem.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	/* before any other thread exists: the handler's inherit the mask */
	host__snapmem_init();
	/* handler log lines go to a pipe: line-buffer stdout for printf users */
	setvbuf(stdout, NULL, _IOLBF, 0);

	static struct http_front_options http; /* lives as long as the process */
	int mode = http_front_parse_args(argc, argv, &http);
	if (mode < 0)
		return 2;
	if (mode > 0) {
		host__set_identity(http.name, http.function_dir);
		host__start(http.handler, true);
		int r = http_front_run(&http);
		host__stop();
		return r < 0 ? 1 : 0;
	}
	host__set_identity(getenv("THAW_FUNCTION_NAME"), getenv("THAW_FUNCTION_DIR"));
	host__start(getenv("THAW_HANDLER"), false);
	host__serve_channel();
}
