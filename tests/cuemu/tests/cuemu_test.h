/* Helpers shared by the black-box tests of the emulated driver: context
 * set-up, allocation properties, child processes and fd passing.  Every
 * expectation in these tests comes from the doc comments in cuda.h, never
 * from the emulator's sources. */
#ifndef CUEMU_TEST_H
#define CUEMU_TEST_H

#include <cuda.h>

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../common/check.h"

#define MiB ((size_t)1 << 20)

/* The call must return one of two codes (both documented for it). */
#define CHECK_CU2(call, e1, e2)                                                  \
	do {                                                                         \
		CUresult check_r_ = (call);                                              \
		if (check_r_ != (e1) && check_r_ != (e2)) {                              \
			fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s or %s\n",   \
			    __FILE__, __LINE__, #call, (int)check_r_,                        \
			    check_cu_name(check_r_), #e1, #e2);                              \
			exit(1);                                                             \
		}                                                                        \
	} while (0)

/* The call must fail with one of three documented codes. */
#define CHECK_CU3(call, e1, e2, e3)                                              \
	do {                                                                         \
		CUresult check_r_ = (call);                                              \
		if (check_r_ != (e1) && check_r_ != (e2) && check_r_ != (e3)) {          \
			fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s, %s or "    \
			    "%s\n", __FILE__, __LINE__, #call, (int)check_r_,                \
			    check_cu_name(check_r_), #e1, #e2, #e3);                         \
			exit(1);                                                             \
		}                                                                        \
	} while (0)

/* Whether the libcuda.so.1 in use is the emulator (stale-handle checks are
 * undefined behaviour on a real driver, so they only run on cuemu). */
static inline int
ct_is_emulator(void)
{
	void *lib, *sym;
	Dl_info info;

	lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	if (lib == NULL)
		return 0;
	sym = dlsym(lib, "cuInit");
	if (sym == NULL || dladdr(sym, &info) == 0 || info.dli_fname == NULL)
		return 0;
	return strstr(info.dli_fname, "/tests/cuemu/") != NULL;
}

/* cuInit, then make device dev's primary context current. */
static inline CUcontext
ct_init_ctx(int ordinal)
{
	CUdevice dev;
	CUcontext ctx = NULL;

	CHECK_OK(cuInit(0));
	CHECK_OK(cuDeviceGet(&dev, ordinal));
	CHECK_OK(cuDevicePrimaryCtxRetain(&ctx, dev));
	CHECK(ctx != NULL);
	CHECK_OK(cuCtxSetCurrent(ctx));
	return ctx;
}

/* Properties of a pinned device allocation, optionally fd-exportable. */
static inline CUmemAllocationProp
ct_prop(int dev, int posix_fd)
{
	CUmemAllocationProp p;

	memset(&p, 0, sizeof(p));
	p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.location.id = dev;
	p.requestedHandleTypes = posix_fd ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
	    : CU_MEM_HANDLE_TYPE_NONE;
	return p;
}

/* Minimum allocation granularity of device dev. */
static inline size_t
ct_gran(int dev)
{
	CUmemAllocationProp p = ct_prop(dev, 1);
	size_t g = 0;

	CHECK_OK(cuMemGetAllocationGranularity(&g, &p,
	    CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	CHECK(g > 0);
	return g;
}

/* Read-write access for device dev. */
static inline CUmemAccessDesc
ct_rw(int dev)
{
	CUmemAccessDesc d;

	memset(&d, 0, sizeof(d));
	d.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	d.location.id = dev;
	d.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	return d;
}

/* Reserve, map and enable a fresh fd-exportable allocation of size bytes. */
static inline CUdeviceptr
ct_map_new(int dev, size_t size, CUmemGenericAllocationHandle *hp)
{
	CUmemAllocationProp p = ct_prop(dev, 1);
	CUmemAccessDesc a = ct_rw(dev);
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;

	CHECK_OK(cuMemCreate(&h, size, &p, 0));
	CHECK_OK(cuMemAddressReserve(&va, size, 0, 0, 0));
	CHECK_OK(cuMemMap(va, size, 0, h, 0));
	CHECK_OK(cuMemSetAccess(va, size, &a, 1));
	*hp = h;
	return va;
}

/* Undo ct_map_new. */
static inline void
ct_unmap_free(CUdeviceptr va, size_t size, CUmemGenericAllocationHandle h)
{
	CHECK_OK(cuMemUnmap(va, size));
	CHECK_OK(cuMemAddressFree(va, size));
	CHECK_OK(cuMemRelease(h));
}

/* Fill buf with a pattern derived from seed. */
static inline void
ct_fill(unsigned char *buf, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = (unsigned char)((i * 131u + seed * 7u + (i >> 12)) & 0xff);
}

/* Whether buf holds the pattern of ct_fill(seed). */
static inline int
ct_check(const unsigned char *buf, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (buf[i] !=
		    (unsigned char)((i * 131u + seed * 7u + (i >> 12)) & 0xff))
			return 0;
	}
	return 1;
}

/* Write exactly n bytes or die. */
static inline void
ct_write(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		CHECK(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

/* Read exactly n bytes or die (EOF included). */
static inline void
ct_read(int fd, void *buf, size_t n)
{
	char *p = buf;
	ssize_t r;

	while (n > 0) {
		r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r > 0);
		p += r;
		n -= (size_t)r;
	}
}

/* Send one byte tag and one fd over a Unix socket with SCM_RIGHTS. */
static inline void
ct_send_fd(int sock, int fd)
{
	char tag = 'F';
	struct iovec iov = { &tag, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg;
	struct cmsghdr *c;

	memset(&msg, 0, sizeof(msg));
	memset(&u, 0, sizeof(u));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	CHECK(sendmsg(sock, &msg, 0) == 1);
}

/* Receive an fd sent by ct_send_fd. */
static inline int
ct_recv_fd(int sock)
{
	char tag = 0;
	struct iovec iov = { &tag, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg;
	struct cmsghdr *c;
	int fd = -1;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	CHECK(recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) == 1 && tag == 'F');
	c = CMSG_FIRSTHDR(&msg);
	CHECK(c != NULL && c->cmsg_type == SCM_RIGHTS);
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	CHECK(fd >= 0);
	return fd;
}

/* Wait for pid; return its wait status. */
static inline int
ct_wait(pid_t pid)
{
	int st = 0;

	while (waitpid(pid, &st, 0) < 0)
		CHECK(errno == EINTR);
	return st;
}

/* Wait for pid and require a clean exit(0). */
static inline void
ct_wait_ok(pid_t pid, const char *what)
{
	int st = ct_wait(pid);

	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child '%s' failed: %s %d\n", what,
		    WIFEXITED(st) ? "exit" : "signal",
		    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		exit(1);
	}
}

/* Whether fd is an open descriptor. */
static inline int
ct_fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

/* Monotonic time in microseconds. */
static inline long long
ct_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* In a child expected to die: no core file, default SIGSEGV/SIGBUS action
 * (sanitizers install their own handlers). */
static inline void
ct_prepare_to_crash(void)
{
	struct sigaction sa;

	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

#endif
