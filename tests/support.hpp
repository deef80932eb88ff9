// tests/support.hpp - helpers shared by the gcpo tests: element-wise comparison with
// per-element tolerances that prints the first mismatches, views over std::vector, seeds.
#pragma once

#include <gcpo/gcpo.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace gcpo_test {

/// Result of comparing two arrays: the number of elements off and a report of the first few.
struct comparison {
  std::size_t mismatches = 0;
  std::string report;
  bool ok() const { return mismatches == 0; }
};

/// Every element: |got - want| <= atol + rtol * |want| (NaN equals NaN; inf equals the same inf).
template <class A, class B>
comparison compare(const A& got, const B& want, double atol, double rtol, const std::string& what) {
  comparison c;
  if (got.size() != want.size()) {
    c.mismatches = 1;
    c.report = what + ": size " + std::to_string(got.size()) + " != expected " + std::to_string(want.size());
    return c;
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    bool good;
    if (std::isnan(w)) good = std::isnan(g);
    else if (std::isinf(w)) good = g == w;
    else good = std::fabs(g - w) <= atol + rtol * std::fabs(w);
    if (!good) {
      if (c.mismatches < 5) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "%s[%zu]: got %.9g, expected %.9g (|diff| %.3g, allowed %.3g)\n", what.c_str(), i,
                      g, w, std::fabs(g - w), atol + rtol * std::fabs(w));
        c.report += buf;
      }
      ++c.mismatches;
    }
  }
  if (c.mismatches) c.report += what + ": " + std::to_string(c.mismatches) + " of " + std::to_string(got.size()) + " elements off\n";
  return c;
}

/// A view over a vector's data with the given shape.
template <class T>
auto view(std::vector<T>& v, std::initializer_list<std::int64_t> shape) {
  return gcpo::make_view(v.data(), shape);
}
template <class T>
auto cview(const std::vector<T>& v, std::initializer_list<std::int64_t> shape) {
  return gcpo::make_view(v.data(), shape);
}

/// A host workspace that owns its bytes.
struct host_workspace {
  std::vector<unsigned char> bytes;
  explicit host_workspace(std::size_t n) : bytes(n) {}
  gcpo::workspace get() { return gcpo::workspace{bytes.data(), bytes.size(), gcpo::memory_space::host}; }
};

}  // namespace gcpo_test
