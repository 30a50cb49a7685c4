"""vmm: vmmd's client library, seen from Python (ctypes only, no compiled
extension, nothing beyond the standard library).

The process must run under ``LD_PRELOAD=libvmm_client.so``: this package
only talks to the library already loaded in it; loading the library late
would hook nothing.

    import vmm
    vmm.stats()          # this process: in use, mapped, cached, peak, ...
    vmm.mem_get_info()   # (free, total) as cudaMemGetInfo reports them
    vmm.flush()          # give every cached byte back to vmmd now
    vmm.use_in_torch()   # PyTorch allocates through vmmd, stream-ordered

Every function raises ``vmm.VmmError`` with a clear message when it cannot
do what it says.
"""
import ctypes
import os

__all__ = ["VmmError", "library_path", "stats", "mem_get_info", "flush",
           "use_in_torch"]
__version__ = "0.1.0"

_LIB_NAME = "libvmm_client.so"


class VmmError(RuntimeError):
    """What the library refused, or why it cannot be reached."""


class _Usage(ctypes.Structure):
    # struct vmm_usage of client/vmm_client.h, field for field.
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "in_use_bytes", "mapped_bytes", "cached_bytes", "peak_in_use_bytes",
        "allocs", "frees", "daemon_calls", "reserved_va_bytes", "syncs",
        "native_fallback_bytes", "native_cumemcreate_bytes",
        "native_pool_bytes", "native_managed_bytes", "app_vmm_bytes")]


_lib = None
_path = None


def library_path():
    """The path of the libvmm_client.so loaded in this process, or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    base = os.path.basename(path)
                    if base == _LIB_NAME or base.startswith(_LIB_NAME + "."):
                        return path
    except OSError:
        pass
    return None


def _library():
    global _lib, _path
    if _lib is None:
        path = library_path()
        if path is None:
            raise VmmError("libvmm_client.so is not loaded in this process: "
                           "run it under LD_PRELOAD=/path/to/libvmm_client.so")
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise VmmError("cannot reach %s: %s" % (path, e)) from None
        lib.vmm_strerror.restype = ctypes.c_char_p
        lib.vmm_strerror.argtypes = [ctypes.c_int]
        lib.vmm_get_usage.argtypes = [ctypes.POINTER(_Usage)]
        lib.vmm_mem_get_info.argtypes = [ctypes.POINTER(ctypes.c_size_t),
                                         ctypes.POINTER(ctypes.c_size_t)]
        lib.vmm_flush.argtypes = []
        _lib, _path = lib, path
    return _lib


def _check(rc, what):
    if rc != 0:
        msg = _library().vmm_strerror(rc)
        raise VmmError("%s: %s" % (what, msg.decode() if msg else "error %d" % rc))


def stats():
    """This process's figures as a dict: in_use_bytes, mapped_bytes,
    cached_bytes, peak_in_use_bytes, allocs, frees, daemon_calls,
    reserved_va_bytes, syncs, and the bytes held outside the pool by path
    (passed to CUDA's own allocators, counted): native_fallback_bytes,
    native_cumemcreate_bytes, native_pool_bytes, native_managed_bytes; and
    app_vmm_bytes, the application's own cuMemCreate served from the pool."""
    u = _Usage()
    _check(_library().vmm_get_usage(ctypes.byref(u)), "vmm_get_usage")
    return {name: getattr(u, name) for name, _ in _Usage._fields_}


def mem_get_info():
    """(free, total) bytes of the device as cudaMemGetInfo reports them
    under vmmd: the pool's view, within this process's quota."""
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    _check(_library().vmm_mem_get_info(ctypes.byref(free), ctypes.byref(total)),
           "vmm_mem_get_info")
    return free.value, total.value


def flush():
    """Give every byte this process caches back to vmmd now (after the
    device is idle), for other processes."""
    _check(_library().vmm_flush(), "vmm_flush")


def use_in_torch():
    """Switch PyTorch to vmmd's allocator (CUDAPluggableAllocator with the
    library's vmm_torch_malloc/vmm_torch_free, stream-ordered like
    cudaMallocAsync).  Call it before PyTorch allocates any CUDA memory."""
    lib = _library()
    try:
        import torch
    except ImportError:
        raise VmmError("PyTorch is not installed in this Python "
                       "(use_in_torch needs torch)") from None
    for sym in ("vmm_torch_malloc", "vmm_torch_free"):
        if not hasattr(lib, sym):
            raise VmmError("%s has no %s: it is older than use_in_torch"
                           % (_path, sym))
    try:
        alloc = torch.cuda.memory.CUDAPluggableAllocator(
            _path, "vmm_torch_malloc", "vmm_torch_free")
        torch.cuda.memory.change_current_allocator(alloc)
    except (AttributeError, RuntimeError) as e:
        raise VmmError("PyTorch refused the allocator (it must be set before "
                       "the first CUDA allocation): %s" % e) from None
    return alloc
