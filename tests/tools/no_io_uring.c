/*
 * no_io_uring: runs a command with io_uring refused, as container runtimes'
 * default seccomp profiles refuse it (containerd 2.0, Docker 25, Debian's
 * containers-common): a seccomp filter makes io_uring_setup,
 * io_uring_enter and io_uring_register fail with EPERM (--enosys: ENOSYS,
 * what a kernel without io_uring says) and allows everything else. The
 * filter is inherited by all the command starts, as in a pod.
 *
 *     no_io_uring [--enosys] COMMAND ARGS...
 *
 * Raw seccomp BPF (no libseccomp). Without CAP_SYS_ADMIN the kernel wants
 * no_new_privs first; with it the bit stays off, as in a pod that allows
 * privilege escalation. Exit 127 when the filter or the exec fails.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "no_io_uring: add this architecture's AUDIT_ARCH_"
#endif

static int install(unsigned err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* another ABI: not ours */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
	if (!syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return 0;
	if (errno != EACCES)
		return -errno;
	/* not CAP_SYS_ADMIN: the kernel takes a filter only with no_new_privs */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return -errno;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned err = EPERM;
	int i = 1;
	if (i < argc && !strcmp(argv[i], "--enosys")) {
		err = ENOSYS;
		i++;
	}
	if (i >= argc) {
		fputs("usage: no_io_uring [--enosys] COMMAND ARGS...\n", stderr);
		return 2;
	}
	int ret = install(err);
	if (ret) {
		fprintf(stderr, "no_io_uring: seccomp: %s\n", strerror(-ret));
		return 127;
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "no_io_uring: %s: %s\n", argv[i], strerror(errno));
	return 127;
}
