// examples/janus/tests/test_util.hpp - helpers the trainer's libtorch tests share.
#pragma once

#include <filesystem>
#include <string>

#include <unistd.h>

#include <torch/torch.h>

namespace janus_test {

/// A scratch directory, emptied at the start and removed at the end of a test.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) {
    path = std::filesystem::temp_directory_path() / ("janus_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& s) const { return (path / s).string(); }
};

/// Same dtype, shape and bytes.
inline bool bit_equal(const torch::Tensor& a, const torch::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         torch::equal(a.contiguous().reshape({-1}).view(torch::kByte), b.contiguous().reshape({-1}).view(torch::kByte));
}

}  // namespace janus_test
