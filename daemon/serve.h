/*
 * thaw serve: sets up the state folder, the admin token, the functions and
 * the journal's replay, runs one event loop per thread with the front end,
 * pools and housekeeping on it, and drains on SIGTERM. The top of the
 * daemon: nothing includes it but cmd's main.
 */
#ifndef THAW_SERVE_H
#define THAW_SERVE_H

/* Returns after SIGTERM/SIGINT: 0, or -errno with the reason logged. */
int server_run(void);

#endif
