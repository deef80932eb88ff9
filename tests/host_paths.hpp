// tests/host_paths.hpp - gcpo's host twins compiled as other code paths (host_paths_*.cpp),
// behind plain function pointers, for test_host_paths.cpp.
#pragma once

#include <cstdint>

/// One compilation of the host twins. dtype: 0 float32, 1 bfloat16, 2 float16 (raw bits).
struct host_path {
  const char* name;
  bool (*token_stats)(int dtype, const void* logits, const std::int64_t* tokens, std::int64_t R, std::int64_t N,
                      std::int64_t V, float temperature, float* entropy, float* logprob, float* lse);
  bool (*select_critical_tokens)(const float* entropy, const float* similarity, std::int64_t R, std::int64_t H,
                                 std::int64_t W, double gradient_frac, double similarity_frac, std::uint8_t* critical,
                                 std::uint8_t* gradient_mask, std::uint8_t* similarity_mask);
};

extern const host_path host_path_generic;  ///< no run-time AVX2 clones (host_paths_generic.cpp)
extern const host_path host_path_scalar;   ///< also no vector extensions (host_paths_scalar.cpp)
