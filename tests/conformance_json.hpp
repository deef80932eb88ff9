// tests/conformance_json.hpp - reading the conformance cases (gcpo-conformance/1 JSON, see
// tests/data/conformance/README.md), shared by the host (tests/test_conformance.cpp) and
// device (tests/cuda/test_cuda_conformance.cpp) suites.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <system_error>
#include <vector>

namespace gcpo_conformance {

/// Spec section 8: values |got - want| <= 1e-5 + 1e-4 |want|; gradients 1e-7 + 1e-3 |want|.
constexpr double value_atol = 1e-5, value_rtol = 1e-4;
constexpr double grad_atol = 1e-7, grad_rtol = 1e-3;

/// A JSON array of numbers as float32 (the operators' input precision).
inline std::vector<float> floats(const nlohmann::json& j) {
  std::vector<float> v;
  v.reserve(j.size());
  for (const auto& x : j) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}

/// A JSON array of numbers as float64 (the expected values).
inline std::vector<double> doubles(const nlohmann::json& j) {
  std::vector<double> v;
  v.reserve(j.size());
  for (const auto& x : j) v.push_back(x.get<double>());
  return v;
}

/// The `shape` object of a case: P prompts x G samples = R rollouts of N = H x W tokens.
struct case_shape {
  std::int64_t P, G, H, W, V, D, R, N;
};
inline case_shape shape_of(const nlohmann::json& c) {
  const auto& sh = c.at("shape");
  case_shape s{};
  s.P = sh.at("prompts");
  s.G = sh.at("group");
  s.H = sh.at("height");
  s.W = sh.at("width");
  s.V = sh.at("vocab");
  s.D = sh.at("embed_dim");
  s.R = s.P * s.G;
  s.N = s.H * s.W;
  return s;
}

/// The *.json files of a folder, sorted (none when it cannot be read).
inline std::vector<std::filesystem::path> cases_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace gcpo_conformance
