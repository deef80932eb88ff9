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

#define GCPO_VERSION_MAJOR 0
#define GCPO_VERSION_MINOR 1
#define GCPO_VERSION_PATCH 0
