// gcpo/config.hpp - compiler and platform macros shared by every gcpo header.
#pragma once

#if defined(__CUDACC__)
#define GCPO_HOST_DEVICE __host__ __device__
#define GCPO_FORCEINLINE __forceinline__
#else
#define GCPO_HOST_DEVICE
#if defined(__GNUC__)
#define GCPO_FORCEINLINE inline __attribute__((always_inline))
#else
#define GCPO_FORCEINLINE inline
#endif
#endif

/// Pointers a host loop reads and writes without overlap (checked by the operator's
/// validation), so the compiler vectorises it without runtime alias checks.
#if defined(__GNUC__) || defined(_MSC_VER)
#define GCPO_RESTRICT __restrict
#else
#define GCPO_RESTRICT
#endif

/// A host helper kept out of line and not specialised for constant arguments, so that its own
/// loop (with GCPO_RESTRICT arguments) is what the compiler vectorises (GCC, propagating a
/// constant clip into a clone, turned the loop's selects into branches and left it scalar).
#if defined(__GNUC__) && !defined(__clang__)
#define GCPO_NOINLINE __attribute__((noinline, noclone))
#elif defined(__GNUC__)
#define GCPO_NOINLINE __attribute__((noinline))
#else
#define GCPO_NOINLINE
#endif

#define GCPO_VERSION_MAJOR 0
#define GCPO_VERSION_MINOR 1
#define GCPO_VERSION_PATCH 0
