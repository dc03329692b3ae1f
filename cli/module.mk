# cli/: the client commands of `thaw` (deploy, ls, invoke, rollback, history, top,
# logs, rm) talk to the daemon's HTTP API with libcurl (libcurl4-openssl-dev).
DAEMON_LIBS += -lcurl
