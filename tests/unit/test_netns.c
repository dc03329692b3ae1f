/* proc/netns.c: a namespace of its own per instance, sockets made inside
 * it from a thread that stays in its own (needs root: exit 77 otherwise). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc/netns.h"

static ino_t own_netns(void)
{
	struct stat st;
	assert_int_equal(stat("/proc/thread-self/ns/net", &st), 0);
	return st.st_ino;
}

static struct sockaddr_in loopback(uint16_t port)
{
	return (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(port),
				     .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
}

/* A listener on 127.0.0.1:port inside ns. */
static int listen_in(int ns, uint16_t port)
{
	int fd = -1;
	assert_int_equal(netns_socket(ns, &fd), 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = loopback(port);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

static int connect_in(int ns, uint16_t port)
{
	int fd = -1;
	assert_int_equal(netns_socket(ns, &fd), 0);
	struct sockaddr_in a = loopback(port);
	int r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	int err = r ? errno : 0;
	close(fd);
	return err;
}

static void test_each_namespace_has_its_own_loopback_port(void **state)
{
	(void)state;
	ino_t home = own_netns();
	int a = -1, b = -1;
	assert_int_equal(netns_new(&a), 0);
	assert_int_equal(netns_new(&b), 0);
	assert_true(own_netns() == home); /* the thread stayed in its own */
	struct stat sa, sb;
	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_ino != sb.st_ino && sa.st_ino != home);
	/* the same port in both: two copies of one server */
	int la = listen_in(a, 9000), lb = listen_in(b, 9000);
	assert_true(own_netns() == home);
	assert_int_equal(connect_in(a, 9000), 0);
	assert_int_equal(connect_in(b, 9000), 0);
	/* a port open in a is not open in b: loopback up, nothing shared */
	close(lb);
	assert_int_equal(connect_in(b, 9000), ECONNREFUSED);
	assert_int_equal(connect_in(a, 9000), 0);
	close(la);
	close(a);
	close(b);
}

static void test_socket_in_a_closed_fd_fails_and_stays_home(void **state)
{
	(void)state;
	ino_t home = own_netns();
	int fd = 12345;
	assert_int_equal(netns_socket(-1, &fd), -EBADF);
	assert_int_equal(fd, 12345);
	assert_true(own_netns() == home);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("needs root (network namespaces)\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_each_namespace_has_its_own_loopback_port),
	    cmocka_unit_test(test_socket_in_a_closed_fd_fails_and_stays_home),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
