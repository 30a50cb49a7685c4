/*
 * Stream capture through the runtime: cudaStreamBeginCapture ..
 * cudaStreamEndCapture with the three modes, cudaStreamIsCapturing,
 * cudaStreamGetCaptureInfo, cudaThreadExchangeStreamCaptureMode, and the
 * captured graph instantiated and launched.  cudaMalloc is the documented
 * example of a "potentially unsafe" call: refused in global mode (and the
 * capture invalidated), allowed in relaxed mode.
 */
#include "rt_test.h"

static enum cudaStreamCaptureStatus
status(cudaStream_t s)
{
	enum cudaStreamCaptureStatus st = (enum cudaStreamCaptureStatus)99;

	CHECK_RT_OK(cudaStreamIsCapturing(s, &st));
	return st;
}

int
main(void)
{
	unsigned char host[4096], back[4096];
	enum cudaStreamCaptureStatus st;
	enum cudaStreamCaptureMode m;
	unsigned long long id = 0;
	cudaGraphExec_t x;
	cudaGraph_t g, g2;
	cudaStream_t s;
	void *d, *e;

	CHECK_RT_OK(cudaSetDevice(0));
	CHECK_RT_OK(cudaMalloc(&d, sizeof(host)));
	CHECK_RT_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	CHECK_RT_OK(cudaMemset(d, 0, sizeof(host)));

	/* Global mode: cudaMalloc refused, the capture invalidated. */
	CHECK_RT_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
	CHECK(status(s) == cudaStreamCaptureStatusActive);
	CHECK_RT(cudaMalloc(&e, 4096), cudaErrorStreamCaptureUnsupported);
	CHECK(cudaGetLastError() == cudaErrorStreamCaptureUnsupported);
	CHECK(status(s) == cudaStreamCaptureStatusInvalidated);
	g = (cudaGraph_t)(uintptr_t)1;
	CHECK_RT(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
	CHECK(g == NULL && status(s) == cudaStreamCaptureStatusNone);

	/* cudaDeviceSynchronize conflicts in every mode. */
	CHECK_RT_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
	CHECK_RT(cudaDeviceSynchronize(), cudaErrorStreamCaptureUnsupported);
	CHECK_RT(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
	CHECK_RT_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
	CHECK_RT(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
	CHECK_RT(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);

	/* Relaxed mode: cudaMalloc and cudaFree are allowed; copies are
	 * recorded, replayed by a launch. */
	rt_fill(host, sizeof(host), 3);
	CHECK_RT_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
	CHECK_RT_OK(cudaStreamGetCaptureInfo(s, &st, &id, &g2, NULL, NULL,
	    NULL));
	CHECK(st == cudaStreamCaptureStatusActive && id != 0 && g2 != NULL);
	CHECK_RT_OK(cudaMalloc(&e, 4096));
	CHECK_RT_OK(cudaFree(e));
	CHECK_RT_OK(cudaMemcpyAsync(d, host, sizeof(host),
	    cudaMemcpyHostToDevice, s));
	CHECK_RT_OK(cudaMemcpy(back, d, sizeof(back), cudaMemcpyDeviceToHost));
	CHECK(back[0] == 0 && back[sizeof(back) - 1] == 0);	/* not run yet */
	CHECK_RT_OK(cudaStreamEndCapture(s, &g));
	CHECK(g == g2 && status(s) == cudaStreamCaptureStatusNone);
	CHECK_RT_OK(cudaGraphInstantiate(&x, g, 0));
	CHECK_RT_OK(cudaGraphLaunch(x, s));
	CHECK_RT_OK(cudaStreamSynchronize(s));
	CHECK_RT_OK(cudaMemcpy(back, d, sizeof(back), cudaMemcpyDeviceToHost));
	CHECK(rt_check(back, sizeof(back), 3));
	CHECK_RT_OK(cudaGraphExecDestroy(x));
	CHECK_RT_OK(cudaGraphDestroy(g));

	/* The thread's mode, push-pop: a global capture, this thread relaxed. */
	CHECK_RT_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
	m = cudaStreamCaptureModeRelaxed;
	CHECK_RT_OK(cudaThreadExchangeStreamCaptureMode(&m));
	CHECK(m == cudaStreamCaptureModeGlobal);
	CHECK_RT_OK(cudaMalloc(&e, 4096));
	CHECK_RT_OK(cudaFree(e));
	CHECK_RT_OK(cudaThreadExchangeStreamCaptureMode(&m));
	CHECK(m == cudaStreamCaptureModeRelaxed);
	CHECK_RT_OK(cudaStreamEndCapture(s, &g));
	CHECK_RT_OK(cudaGraphDestroy(g));
	CHECK_RT(cudaThreadExchangeStreamCaptureMode(NULL), cudaErrorInvalidValue);

	/* Not capturing: ending is an error; the legacy stream cannot be
	 * captured. */
	CHECK(cudaStreamEndCapture(s, &g) != cudaSuccess);
	CHECK(cudaStreamBeginCapture(cudaStreamLegacy,
	    cudaStreamCaptureModeRelaxed) != cudaSuccess);
	(void)cudaGetLastError();

	CHECK_RT_OK(cudaStreamDestroy(s));
	CHECK_RT_OK(cudaFree(d));
	printf("ok\n");
	return 0;
}
