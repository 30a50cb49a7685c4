/* After fork(), the child of a process that used CUDA cannot use it (the
 * driver refuses), and the runtime reports an initialisation error there
 * instead of handing out memory; the parent carries on. */
#include "rt_test.h"

#include <sys/wait.h>
#include <unistd.h>

int
main(void)
{
	unsigned char in[128], out[128];
	void *d = NULL, *c = NULL;
	pid_t pid;
	int st = 0;

	CHECK_RT_OK(cudaMalloc(&d, sizeof(in)));
	rt_fill(in, sizeof(in), 21);
	CHECK_RT_OK(cudaMemcpy(d, in, sizeof(in), cudaMemcpyHostToDevice));

	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CHECK_RT(cudaMalloc(&c, 64), cudaErrorInitializationError);
		CHECK_RT(cudaMemcpy(out, d, sizeof(out), cudaMemcpyDeviceToHost),
		    cudaErrorInitializationError);
		CHECK_RT(cudaGetLastError(), cudaErrorInitializationError);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	CHECK_RT_OK(cudaMemcpy(out, d, sizeof(out), cudaMemcpyDeviceToHost));
	CHECK(rt_check(out, sizeof(out), 21));
	CHECK_RT_OK(cudaFree(d));
	printf("ok\n");
	return 0;
}
