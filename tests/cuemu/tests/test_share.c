/* cuMemExportToShareableHandle / cuMemImportFromShareableHandle with POSIX
 * file descriptors, inside one process. */
#include <sys/mman.h>

#include "cuemu_test.h"

#define FD_TYPE CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR

static int strict;
static size_t g;

/* Export h as a POSIX fd. */
static int
export_fd(CUmemGenericAllocationHandle h)
{
	int fd = -1;

	CHECK_OK(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 0));
	CHECK(fd >= 0 && ct_fd_open(fd));
	return fd;
}

/* Import fd; the fd must still be open afterwards. */
static CUmemGenericAllocationHandle
import_fd(int fd)
{
	CUmemGenericAllocationHandle h = 0;

	CHECK_OK(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
	    FD_TYPE));
	CHECK(h != 0);
	CHECK(ct_fd_open(fd));
	return h;
}

/* Map h (size bytes) at a fresh reservation with read-write access. */
static CUdeviceptr
map_handle(CUmemGenericAllocationHandle h, size_t size)
{
	CUmemAccessDesc rw = ct_rw(0);
	CUdeviceptr va;

	CHECK_OK(cuMemAddressReserve(&va, size, 0, 0, 0));
	CHECK_OK(cuMemMap(va, size, 0, h, 0));
	CHECK_OK(cuMemSetAccess(va, size, &rw, 1));
	return va;
}

/* Unmap and free a map_handle range. */
static void
unmap(CUdeviceptr va, size_t size)
{
	CHECK_OK(cuMemUnmap(va, size));
	CHECK_OK(cuMemAddressFree(va, size));
}

/* Misuse of export. */
static void
test_export_errors(CUmemGenericAllocationHandle h)
{
	CUmemAllocationProp none = ct_prop(0, 0), p = ct_prop(0, 1);
	CUmemGenericAllocationHandle hn, stale;
	int fd = -1;

	CHECK_CU(cuMemExportToShareableHandle(&fd, h, FD_TYPE, 1),
	    CUDA_ERROR_INVALID_VALUE);
	CHECK_CU(cuMemExportToShareableHandle(NULL, h, FD_TYPE, 0),
	    CUDA_ERROR_INVALID_VALUE);
	/* Types the handle was not created for. */
	CHECK_CU3(cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_FABRIC,
	    0), CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_PERMITTED,
	    CUDA_ERROR_NOT_SUPPORTED);
	CHECK_CU3(cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_NONE,
	    0), CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_PERMITTED,
	    CUDA_ERROR_NOT_SUPPORTED);
	/* A handle created without requestedHandleTypes cannot be exported. */
	CHECK_OK(cuMemCreate(&hn, g, &none, 0));
	fd = -1;
	CHECK_CU3(cuMemExportToShareableHandle(&fd, hn, FD_TYPE, 0),
	    CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_PERMITTED,
	    CUDA_ERROR_NOT_SUPPORTED);
	CHECK_OK(cuMemRelease(hn));
	if (strict) {
		CHECK_OK(cuMemCreate(&stale, g, &p, 0));
		CHECK_OK(cuMemRelease(stale));
		CHECK_CU(cuMemExportToShareableHandle(&fd, stale, FD_TYPE, 0),
		    CUDA_ERROR_INVALID_VALUE);
	}
}

/* Import of descriptors that are not exported allocations. */
static void
test_import_errors(int good_fd)
{
	CUmemGenericAllocationHandle h;
	int pfd[2], devnull, foreign, closed;

	CHECK_CU(cuMemImportFromShareableHandle(NULL,
	    (void *)(uintptr_t)good_fd, FD_TYPE), CUDA_ERROR_INVALID_VALUE);
	CHECK_CU2(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)good_fd,
	    CU_MEM_HANDLE_TYPE_WIN32), CUDA_ERROR_INVALID_VALUE,
	    CUDA_ERROR_NOT_SUPPORTED);
	CHECK_CU(cuMemImportFromShareableHandle(&h, (void *)(intptr_t)-1,
	    FD_TYPE), CUDA_ERROR_INVALID_VALUE);

	closed = dup(good_fd);
	CHECK(closed >= 0);
	close(closed);
	CHECK_CU(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)closed,
	    FD_TYPE), CUDA_ERROR_INVALID_VALUE);

	CHECK(pipe(pfd) == 0);
	CHECK_CU2(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)pfd[0],
	    FD_TYPE), CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_SUPPORTED);
	CHECK(ct_fd_open(pfd[0]));
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(devnull >= 0);
	CHECK_CU2(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)devnull,
	    FD_TYPE), CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_SUPPORTED);
	CHECK(ct_fd_open(devnull));
	/* A memfd of the right size that no driver exported. */
	foreign = memfd_create("not-cuda", MFD_CLOEXEC);
	CHECK(foreign >= 0 && ftruncate(foreign, (off_t)g) == 0);
	CHECK_CU2(cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)foreign,
	    FD_TYPE), CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_NOT_SUPPORTED);
	CHECK(ct_fd_open(foreign));
	close(pfd[0]);
	close(pfd[1]);
	close(devnull);
	close(foreign);
}

int
main(void)
{
	CUmemAllocationProp got;
	CUmemGenericAllocationHandle h, hi, hi2, hj;
	CUdeviceptr va, vi, vj;
	unsigned char *buf;
	size_t size;
	int fd1, fd2, fd3;

	strict = ct_is_emulator();
	ct_init_ctx(0);
	g = ct_gran(0);
	size = 2 * g;
	buf = malloc(size);
	CHECK(buf != NULL);

	va = ct_map_new(0, size, &h);
	ct_fill(buf, size, 5);
	CHECK_OK(cuMemcpyHtoD(va, buf, size));

	/* Every export is a new descriptor. */
	fd1 = export_fd(h);
	fd2 = export_fd(h);
	fd3 = export_fd(h);
	CHECK(fd1 != fd2 && fd2 != fd3 && fd1 != fd3);
	test_export_errors(h);
	test_import_errors(fd1);

	/* Import does not take the fd: it can be imported again. */
	hi = import_fd(fd1);
	hi2 = import_fd(fd1);
	memset(&got, 0, sizeof(got));
	CHECK_OK(cuMemGetAllocationPropertiesFromHandle(&got, hi));
	CHECK(got.type == CU_MEM_ALLOCATION_TYPE_PINNED);
	CHECK(got.location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
	    got.location.id == 0);
	CHECK(got.requestedHandleTypes & FD_TYPE);

	/* The import has the exporter's size and bytes. */
	CHECK_OK(cuMemAddressReserve(&vi, 2 * size, 0, 0, 0));
	CHECK_CU(cuMemMap(vi, 2 * size, 0, hi, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_OK(cuMemAddressFree(vi, 2 * size));
	vi = map_handle(hi, size);
	memset(buf, 0, size);
	CHECK_OK(cuMemcpyDtoH(buf, vi, size));
	CHECK(ct_check(buf, size, 5));
	ct_fill(buf, size, 6);
	CHECK_OK(cuMemcpyHtoD(vi, buf, size));
	memset(buf, 0, size);
	CHECK_OK(cuMemcpyDtoH(buf, va, size));
	CHECK(ct_check(buf, size, 6));
	/* Each import is paired with its own cuMemRelease. */
	CHECK_OK(cuMemRelease(hi2));
	CHECK_OK(cuMemcpyDtoH(buf, vi, 4096));

	/* Closing an fd after import does not affect the imported handle. */
	hj = import_fd(fd2);
	close(fd2);
	vj = map_handle(hj, size);
	memset(buf, 0, size);
	CHECK_OK(cuMemcpyDtoH(buf, vj, size));
	CHECK(ct_check(buf, size, 6));
	unmap(vj, size);
	CHECK_OK(cuMemRelease(hj));

	/* Everything gone but fd3: the allocation lives on in the fd. */
	unmap(vi, size);
	CHECK_OK(cuMemRelease(hi));
	unmap(va, size);
	CHECK_OK(cuMemRelease(h));
	close(fd1);
	hj = import_fd(fd3);
	close(fd3);
	vj = map_handle(hj, size);
	memset(buf, 0, size);
	CHECK_OK(cuMemcpyDtoH(buf, vj, size));
	CHECK(ct_check(buf, size, 6));
	unmap(vj, size);
	CHECK_OK(cuMemRelease(hj));
	free(buf);
	return 0;
}
