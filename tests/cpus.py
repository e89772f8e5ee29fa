"""/proc/cpuinfo flag sets of the CPUs the tests pretend to run on (with the `cpu_flags` fixture)."""

AVX2_ONLY = frozenset({"fpu", "sse2", "avx2", "fma"})  # no native bf16: `auto` is fp32 (AMD EPYC here once)
NATIVE_BF16 = AVX2_ONLY | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}  # `auto` is bf16 (Xeon, AMX)
NO_AVX2 = frozenset({"fpu", "sse2"})  # too old for PyTorch's x86 int8 kernels
