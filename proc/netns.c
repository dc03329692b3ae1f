#define LOG_PREFIX "netns: "
#include "proc/netns.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int netns_lo_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, "lo", 3);
	ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
	int ret = ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
	close(s);
	return ret;
}

/* This thread's own namespace, opened once per thread. */
static int home(void)
{
	static _Thread_local int fd = -1;
	if (fd < 0)
		fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	return fd;
}

static void go_home(void)
{
	if (setns(home(), CLONE_NEWNET)) {
		pr_perror("setns back to the daemon's network namespace");
		abort();
	}
}

int netns_new(int *out)
{
	int ret = 0;
	if (home() < 0)
		return -errno;
	if (unshare(CLONE_NEWNET)) {
		ret = -errno;
		pr_perror("unshare(CLONE_NEWNET)");
		return ret;
	}
	ret = netns_lo_up();
	if (ret)
		pr_err("loopback up in a new namespace: %s", strerror(-ret));
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (!ret && fd < 0)
		ret = -errno;
	go_home();
	if (ret) {
		if (fd >= 0)
			close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

int netns_socket(int netns_fd, int *out)
{
	if (home() < 0)
		return -errno;
	if (setns(netns_fd, CLONE_NEWNET))
		return -errno;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ret = fd < 0 ? -errno : 0;
	go_home();
	if (!ret)
		*out = fd;
	return ret;
}
