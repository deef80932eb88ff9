// gcpo/detail/host/cpu_dispatch.hpp - run-time choice of an AVX2 clone of a host hot loop.
//
// On x86-64 with GCC or Clang, when the translation unit is not already compiled for AVX2, a
// host twin's hot loop is compiled twice from one always-inlined body: once for the target of
// the translation unit and once with the function attribute `target("avx2")` (no FMA, so no
// contraction: both clones round identically), and the AVX2 one is chosen at run time when the
// CPU has it. `GCPO_NO_HOST_DISPATCH` turns this off.
#pragma once

#if !defined(GCPO_NO_HOST_DISPATCH) && !defined(__CUDACC__) && !defined(__AVX2__) && \
    (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define GCPO_HOST_AVX2_DISPATCH 1
#define GCPO_HOST_TARGET_AVX2 __attribute__((target("avx2")))
#endif

namespace gcpo {
namespace detail {
namespace host_impl {

#if defined(GCPO_HOST_AVX2_DISPATCH)
/// True when the CPU (and OS) support AVX2.
inline bool host_has_avx2() noexcept { return __builtin_cpu_supports("avx2"); }
#endif

}  // namespace host_impl
}  // namespace detail
}  // namespace gcpo
