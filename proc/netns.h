/*
 * Network namespaces of custom-runtime instances: each copy of a server
 * listens on the same port of its own namespace, with only loopback up.
 * The daemon reaches it with a socket made inside that namespace: setns()
 * on the calling thread, socket(), setns() back. A socket stays in the
 * namespace it was made in, so connect/send/recv then run anywhere (the
 * event loop) and no nsenter or helper process is needed.
 */
#ifndef THAW_NETNS_H
#define THAW_NETNS_H

/* Brings loopback up in the caller's network namespace. 0 or -errno.
 * Async-signal-safe (a clone child may call it). */
int netns_lo_up(void);

/* Makes a new network namespace with loopback up and returns an fd of it
 * (close-on-exec) in *out; the calling thread stays in its own. 0 or -errno. */
int netns_new(int *out);

/* A TCP socket (close-on-exec) made inside the namespace netns_fd. The
 * calling thread is back in its own namespace on return (else the process
 * aborts: it would make every later socket in the wrong one). 0 or -errno. */
int netns_socket(int netns_fd, int *out);

#endif
