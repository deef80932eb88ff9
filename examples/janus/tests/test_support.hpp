// examples/janus/tests/test_support.hpp - helpers every test of examples/janus may share: plain
// C++17, no libtorch (test_util.hpp adds the libtorch ones).
#pragma once

#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

namespace janus_test {

/// A scratch directory, emptied at the start and removed at the end of a test.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) {
    path = std::filesystem::temp_directory_path() / ("janus_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& s) const { return (path / s).string(); }
};

/// The message of the exception `f` throws; "" when it throws nothing (so that a check of the
/// message fails).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace janus_test
