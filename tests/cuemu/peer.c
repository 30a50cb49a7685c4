/*
 * cuemu peer access: cuDeviceCanAccessPeer, cuCtxEnablePeerAccess,
 * cuCtxDisablePeerAccess.  Every pair of distinct emulated devices can
 * access each other.  Enabling gives the current context access to the
 * classic allocations (cuMemAlloc*) of the peer context's device, as the
 * "Automatic Registration of Peer Memory" section of cuda.h says; VMM
 * mappings are not covered (their access is cuMemSetAccess's alone, as on
 * real hardware).  Copies check it (vmm.c, cuemu_range_ok).
 *
 * Only primary contexts exist, one per device, so the state is a bit per
 * (accessor device, owner device) pair.
 */
#include "cuemu_internal.h"

/* cuemu_peer_on[a] has bit o set when a's context may access o's memory. */
static uint32_t	cuemu_peer_on[CUEMU_MAX_DEVICES];

bool
cuemu_peer_enabled(int accessor, int owner)
{
	if (!cuemu_device_valid(accessor) || !cuemu_device_valid(owner))
		return false;
	return (cuemu_peer_on[accessor] & (1u << owner)) != 0;
}

void
cuemu_peer_forget(int dev)
{
	int d;

	if (!cuemu_device_valid(dev))
		return;
	cuemu_peer_on[dev] = 0;
	for (d = 0; d < CUEMU_MAX_DEVICES; d++)
		cuemu_peer_on[d] &= ~(1u << dev);
}

CUEMU_EXPORT CUresult CUDAAPI
cuDeviceCanAccessPeer(int *canAccessPeer, CUdevice dev, CUdevice peerDev)
{
	CUEMU_ENTER("cuDeviceCanAccessPeer");
	if (canAccessPeer == NULL)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (!cuemu_device_valid(dev) || !cuemu_device_valid(peerDev))
		return cuemu_ret(CUDA_ERROR_INVALID_DEVICE);
	/* A device is not its own peer. */
	*canAccessPeer = dev != peerDev;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuCtxEnablePeerAccess(CUcontext peerContext, unsigned int Flags)
{
	int dev, peer;

	CUEMU_ENTER("cuCtxEnablePeerAccess");
	if ((dev = cuemu_current_device()) < 0 ||
	    (peer = cuemu_ctx_device(peerContext)) < 0 || peer == dev)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	if (Flags != 0)
		return cuemu_ret(CUDA_ERROR_INVALID_VALUE);
	if (cuemu_peer_enabled(dev, peer))
		return cuemu_ret(CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED);
	cuemu_peer_on[dev] |= 1u << peer;
	return cuemu_ret(CUDA_SUCCESS);
}

CUEMU_EXPORT CUresult CUDAAPI
cuCtxDisablePeerAccess(CUcontext peerContext)
{
	int dev, peer;

	CUEMU_ENTER("cuCtxDisablePeerAccess");
	if ((dev = cuemu_current_device()) < 0 ||
	    (peer = cuemu_ctx_device(peerContext)) < 0)
		return cuemu_ret(CUDA_ERROR_INVALID_CONTEXT);
	if (!cuemu_peer_enabled(dev, peer))
		return cuemu_ret(CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
	cuemu_peer_on[dev] &= ~(1u << peer);
	return cuemu_ret(CUDA_SUCCESS);
}
