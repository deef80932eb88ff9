// examples/janus/tests/test_util.hpp - helpers the trainer's libtorch tests share.
#pragma once

#include <filesystem>
#include <string>

#include <unistd.h>

#include <torch/torch.h>

#include "test_support.hpp"

namespace janus_test {

/// Same dtype, shape and bytes.
inline bool bit_equal(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         torch::equal(a.contiguous().reshape({-1}).view(torch::kByte), b.contiguous().reshape({-1}).view(torch::kByte));
}

}  // namespace janus_test
