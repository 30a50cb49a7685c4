/* The runtime's legacy IPC: cudaIpcGetMemHandle of cudaMalloc memory opens
 * with cudaIpcOpenMemHandle in another process (same bytes both ways) and
 * closes with cudaIpcCloseMemHandle; the exporting process cannot open its
 * own handle (cudaErrorDeviceUninitialized, the driver's invalid context);
 * an inner pointer has no handle. */
#include "rt_test.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE ((size_t)2 * MiB + 512)

static void
xfer(int fd, void *buf, size_t n, int out)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = out ? write(fd, p, n) : read(fd, p, n);

		CHECK(r > 0);
		p += r;
		n -= (size_t)r;
	}
}

static int
child(int sock)
{
	unsigned char *b = malloc(SIZE);
	cudaIpcMemHandle_t h;
	void *p;

	CHECK(b != NULL);
	xfer(sock, &h, sizeof(h), 0);
	CHECK_RT_OK(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess));
	CHECK_RT_OK(cudaMemcpy(b, p, SIZE, cudaMemcpyDeviceToHost));
	CHECK(rt_check(b, SIZE, 4));
	rt_fill(b, SIZE, 5);
	CHECK_RT_OK(cudaMemcpy(p, b, SIZE, cudaMemcpyHostToDevice));
	/* Its write may still be pending (cuda.h): done before the close and
	 * before the other process looks. */
	CHECK_RT_OK(cudaDeviceSynchronize());
	CHECK_RT_OK(cudaIpcCloseMemHandle(p));
	CHECK_RT(cudaIpcCloseMemHandle(p), cudaErrorInvalidValue);
	xfer(sock, "W", 1, 1);
	free(b);
	return 0;
}

int
main(void)
{
	unsigned char *b = malloc(SIZE);
	cudaIpcMemHandle_t h, other;
	int sv[2], st;
	void *p, *q;
	pid_t pid;
	char ack;

	CHECK(b != NULL);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(child(sv[1]));
	}
	close(sv[1]);
	CHECK_RT_OK(cudaMalloc(&p, SIZE));
	rt_fill(b, SIZE, 4);
	CHECK_RT_OK(cudaMemcpy(p, b, SIZE, cudaMemcpyHostToDevice));
	CHECK_RT_OK(cudaDeviceSynchronize());	/* seen by the other process */
	CHECK_RT(cudaIpcGetMemHandle(NULL, p), cudaErrorInvalidValue);
	CHECK_RT(cudaIpcGetMemHandle(&other, (char *)p + 512),
	    cudaErrorInvalidValue);
	CHECK_RT_OK(cudaIpcGetMemHandle(&h, p));
	CHECK_RT(cudaIpcOpenMemHandle(&q, h, cudaIpcMemLazyEnablePeerAccess),
	    cudaErrorDeviceUninitialized);
	xfer(sv[0], &h, sizeof(h), 1);
	xfer(sv[0], &ack, 1, 0);
	CHECK(ack == 'W');
	CHECK_RT_OK(cudaMemcpy(b, p, SIZE, cudaMemcpyDeviceToHost));
	CHECK(rt_check(b, SIZE, 5));
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	    WEXITSTATUS(st) == 0);
	CHECK_RT_OK(cudaFree(p));
	free(b);
	return 0;
}
