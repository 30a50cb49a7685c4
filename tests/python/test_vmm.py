"""python/vmm against the emulator, through ctypes: run by test_python.sh
under LD_PRELOAD=libvmm_client.so with a vmmd on VMM_SOCKET_DIR (argv[1]:
vmmctl; argv[2]: client/vmm_client.h)."""
import ctypes
import json
import re
import subprocess
import sys

import vmm

vmmctl, header = sys.argv[1:3]


def lent():
    out = subprocess.run([vmmctl, "stats", "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["pool"]["lent_bytes"]


# The ctypes mirror of struct vmm_usage is the header's, field for field.
text = open(header).read()
body = re.search(r"struct vmm_usage \{(.*?)\};", text, re.S).group(1)
fields = []
for decl in re.findall(r"uint64_t\s+([^;]+);", body):
    fields += [f.strip() for f in decl.split(",")]
assert fields == [n for n, _ in vmm._Usage._fields_], fields

assert vmm.library_path() is not None
rt = ctypes.CDLL("libcudart.so.13")
p = ctypes.c_void_p()
assert rt.cudaMalloc(ctypes.byref(p), ctypes.c_size_t(8 << 20)) == 0
s = vmm.stats()
assert s["allocs"] == 1 and s["in_use_bytes"] >= 8 << 20, s
assert lent() >= 8 << 20

free, total = vmm.mem_get_info()
cfree, ctotal = ctypes.c_size_t(), ctypes.c_size_t()
assert rt.cudaMemGetInfo(ctypes.byref(cfree), ctypes.byref(ctotal)) == 0
assert 0 < free <= total and total == ctotal.value, (free, total, ctotal.value)

assert rt.cudaFree(p) == 0
assert vmm.stats()["frees"] == 1
vmm.flush()
assert vmm.stats()["cached_bytes"] == 0
assert lent() == 0, lent()

try:
    import torch  # noqa: F401
except ImportError:
    try:
        vmm.use_in_torch()
        raise AssertionError("use_in_torch without torch did not raise")
    except vmm.VmmError as e:
        assert "PyTorch is not installed" in str(e), e
print("python vmm: ok")
