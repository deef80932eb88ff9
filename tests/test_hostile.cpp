// Hostile and careless input to every host operator (issue 8): overflowing extents and
// products, null data, negative extents and strides, malformed views, out-of-range dtype and
// memory-space codes, self-overlapping outputs, outputs aliasing inputs, workspaces aliasing
// any argument, out-of-range enums, NaN / infinite options. Each case asserts the status code
// and that the message names the argument as the caller wrote it. The checks are the ones the
// CUDA twins run (detail::validate_* and the shared workspace checks), so the CUDA launchers
// are covered by the same cases (their workspace checks are called directly with device views).
//
// The operator table gives every operator a small valid call (R = 4, N = 4 = 2 x 2, V = 8,
// D = 3, G = 2) whose views live in separate 8 KB slots of one arena, so a view moved onto
// another slot overlaps only that slot, and a call that validation wrongly accepted would
// write inside the arena (or be reported by AddressSanitizer) rather than anywhere else.
#include <catch2/catch.hpp>

#include <gcpo/dlpack.hpp>
#include <gcpo/gcpo.hpp>

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;
using gcpo::dtype;
using gcpo::memory_space;
using gcpo::status_code;

namespace {

constexpr std::int64_t R = 4, N = 4, V = 8, D = 3, G = 2;
constexpr std::size_t slot_bytes = 8192;
constexpr std::size_t slots = 96;  // 89 views, a free first slot and a workspace slot
constexpr std::int64_t two32 = std::int64_t{1} << 32;
__extension__ typedef unsigned __int128 u128;  // independent 128-bit arithmetic for expected sizes

/// Back-quoted spans of a message never nest or hold a parenthesised remark: each span between
/// a pair of back-quotes is a name, without " (" inside and without leading or trailing spaces.
bool quotes_are_names(const std::string& m) {
  std::size_t pos = 0;
  int quotes = 0;
  while ((pos = m.find('`', pos)) != std::string::npos) {
    const std::size_t end = m.find('`', pos + 1);
    if (end == std::string::npos) return false;
    const std::string span = m.substr(pos + 1, end - pos - 1);
    if (span.empty() || span.find(" (") != std::string::npos || span.front() == ' ' || span.back() == ' ') return false;
    quotes += 2;
    pos = end + 1;
  }
  return quotes > 0;
}

/// `s` failed with `code` and its message contains `text` (and reads as names in back-quotes).
void check_error(const gcpo::status& s, status_code code, const std::string& text) {
  INFO("status message: " << s.message());
  CHECK(s.code() == code);
  CHECK_THAT(std::string(s.message()), Catch::Matchers::Contains(text));
  CHECK(quotes_are_names(s.message()));
}

/// One operator with a valid call: views by slot (inputs stored as tensor_view too), their
/// names as the messages spell them, which are outputs, and a call with replaced views.
struct op_case {
  using call_type = std::function<gcpo::status(const std::vector<gcpo::tensor_view>&, gcpo::workspace)>;
  op_case(std::string op_, std::vector<std::string> names_, std::vector<bool> is_output_,
          std::vector<gcpo::tensor_view> views_, call_type call_, std::size_t workspace_bytes_ = 0)
      : op(std::move(op_)), names(std::move(names_)), is_output(std::move(is_output_)), views(std::move(views_)),
        call(std::move(call_)), workspace_bytes(workspace_bytes_) {}
  std::string op;
  std::vector<std::string> names;
  std::vector<bool> is_output;
  std::vector<gcpo::tensor_view> views;
  std::function<gcpo::status(const std::vector<gcpo::tensor_view>&, gcpo::workspace)> call;
  std::size_t workspace_bytes = 0;  ///< 0: the operator takes no workspace
  /// (output, input) pairs that may be exactly the same view (in place).
  std::vector<std::pair<int, int>> in_place;
};

/// Owns the arena and builds the table of every host operator.
class operator_table {
 public:
  operator_table() : arena_(slot_bytes * slots + 256) {
    base_ = reinterpret_cast<unsigned char*>((reinterpret_cast<std::uintptr_t>(arena_.data()) + 255) / 256 * 256);
    build();
  }
  std::vector<op_case>& cases() { return cases_; }
  /// A host workspace of `bytes` in a slot of its own.
  gcpo::workspace own_workspace(std::size_t bytes) {
    return gcpo::workspace{base_ + (slots - 1) * slot_bytes, bytes, memory_space::host};
  }
  /// Fills every slot with finite, valid content (token ids 0..V-1, masks 0/1).
  void reset_contents() {
    for (std::size_t s = 0; s < slots; ++s) {
      unsigned char* p = base_ + static_cast<std::size_t>(s) * slot_bytes;
      std::memset(p, 0, slot_bytes);
    }
    for (auto& f : fill_) f();
  }

 private:
  template <class T>
  T* slot(std::size_t n) {
    REQUIRE(n * sizeof(T) <= slot_bytes / 2);
    REQUIRE(next_ + 1 < slots);
    T* p = reinterpret_cast<T*>(base_ + next_ * slot_bytes);
    ++next_;
    return p;
  }
  template <class T>
  gcpo::tensor_view make(std::initializer_list<std::int64_t> shape, double value) {
    std::size_t n = 1;
    for (auto e : shape) n *= static_cast<std::size_t>(e);
    T* p = slot<T>(n);
    fill_.push_back([p, n, value] {
      for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<T>(value + (std::is_integral<T>::value ? 0.0 : 0.01 * i));
    });
    return gcpo::make_view(p, shape);
  }
  gcpo::tensor_view floats(std::initializer_list<std::int64_t> shape, double value = 0.5) { return make<float>(shape, value); }
  gcpo::tensor_view ids(std::initializer_list<std::int64_t> shape) {
    std::size_t n = 1;
    for (auto e : shape) n *= static_cast<std::size_t>(e);
    std::int64_t* p = slot<std::int64_t>(n);
    fill_.push_back([p, n] {
      for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::int64_t>(i % V);
    });
    return gcpo::make_view(p, shape);
  }
  gcpo::tensor_view bytes(std::initializer_list<std::int64_t> shape, int value) {
    return make<std::uint8_t>(shape, value);
  }

  void build();

  std::vector<unsigned char> arena_;
  unsigned char* base_ = nullptr;
  std::size_t next_ = 1;  // slot 0 stays free: workspaces placed before a view stay in the arena
  std::vector<std::function<void()>> fill_;
  std::vector<op_case> cases_;
};

void operator_table::build() {
  using V_ = std::vector<gcpo::tensor_view>;
  using gcpo::workspace;
  {
    op_case c{"token_stats", {"logits", "tokens", "entropy", "logprob", "lse"}, {false, false, true, true, true},
              {floats({R, N, V}), ids({R, N}), floats({R, N}), floats({R, N}), floats({R, N})}, nullptr};
    c.call = [](const V_& v, workspace) { return gcpo::host::token_stats(v[0], v[1], v[2], v[3], v[4]); };
    cases_.push_back(c);
  }
  {
    op_case c{"token_stats_backward",
              {"logits", "tokens", "lse", "grad_logprob", "grad_logits"},
              {false, false, false, false, true},
              {floats({R, N, V}), ids({R, N}), floats({R, N}, 3.0), floats({R, N}), floats({R, N, V})},
              nullptr};
    c.call = [](const V_& v, workspace) { return gcpo::host::token_stats_backward(v[0], v[1], v[2], v[3], v[4]); };
    c.in_place = {{4, 0}};
    cases_.push_back(c);
  }
  gcpo::similarity_options so;
  so.group = G;
  {
    op_case c{"group_similarity", {"embeddings", "similarity"}, {false, true}, {floats({R, N, D}), floats({R, N})}, nullptr};
    c.call = [so](const V_& v, workspace) { return gcpo::host::group_similarity(v[0], v[1], so); };
    cases_.push_back(c);
  }
  {
    op_case c{"group_similarity_from_tokens", {"tokens", "table", "similarity"}, {false, false, true},
              {ids({R, N}), floats({V, D}), floats({R, N})}, nullptr};
    c.call = [so](const V_& v, workspace) { return gcpo::host::group_similarity_from_tokens(v[0], v[1], v[2], so); };
    cases_.push_back(c);
  }
  gcpo::selection_options sel;
  sel.initial_frac = 0.25;
  sel.gradient_frac = 0.25;
  sel.similarity_frac = 0.25;
  sel.window_start_frac = 0.25;
  sel.window_frac = 0.5;
  {
    op_case c{"initial_mask", {"mask"}, {true}, {bytes({R, N}, 0)}, nullptr};
    c.call = [sel](const V_& v, workspace) { return gcpo::host::initial_mask(v[0], sel); };
    cases_.push_back(c);
  }
  {
    op_case c{"smoothed_entropy", {"entropy", "smoothed"}, {false, true}, {floats({R, N}), floats({R, N})}, nullptr};
    c.call = [sel](const V_& v, workspace) { return gcpo::host::smoothed_entropy(v[0], v[1], sel); };
    cases_.push_back(c);
  }
  {
    op_case c{"entropy_gradient", {"smoothed", "gradient"}, {false, true}, {floats({R, N}), floats({R, N})}, nullptr};
    c.call = [sel](const V_& v, workspace) { return gcpo::host::entropy_gradient(v[0], v[1], sel); };
    cases_.push_back(c);
  }
  {
    op_case c{"gradient_topk", {"gradient", "mask"}, {false, true}, {floats({R, N}), bytes({R, N}, 0)}, nullptr};
    c.call = [sel](const V_& v, workspace) { return gcpo::host::gradient_topk(v[0], v[1], sel); };
    cases_.push_back(c);
  }
  {
    op_case c{"low_similarity_mask", {"similarity", "exclude", "mask"}, {false, false, true},
              {floats({R, N}), bytes({R, N}, 0), bytes({R, N}, 0)}, nullptr};
    c.call = [sel](const V_& v, workspace) { return gcpo::host::low_similarity_mask(v[0], v[1], v[2], sel); };
    cases_.push_back(c);
  }
  {
    op_case c{"union_mask", {"a", "b", "c", "critical", "counts"}, {false, false, false, true, true},
              {bytes({R, N}, 1), bytes({R, N}, 0), bytes({R, N}, 0), bytes({R, N}, 0), make<std::int32_t>({R}, 0)},
              nullptr};
    c.call = [](const V_& v, workspace) { return gcpo::host::union_mask(v[0], v[1], v[2], v[3], v[4]); };
    c.in_place = {{3, 0}, {3, 1}, {3, 2}};
    cases_.push_back(c);
  }
  // select_critical_tokens, once per similarity source.
  const std::vector<std::string> out_names = {"outputs.critical",         "outputs.counts",
                                              "outputs.initial",          "outputs.gradient",
                                              "outputs.low_similarity",   "outputs.smoothed_entropy",
                                              "outputs.entropy_gradient", "outputs.similarity"};
  auto selection_outputs = [&](op_case& c) {
    c.views.push_back(bytes({R, N}, 0));
    c.views.push_back(make<std::int32_t>({R}, 0));
    for (int i = 0; i < 3; ++i) c.views.push_back(bytes({R, N}, 0));
    for (int i = 0; i < 3; ++i) c.views.push_back(floats({R, N}));
    for (const auto& n : out_names) {
      c.names.push_back(n);
      c.is_output.push_back(true);
    }
  };
  auto to_outputs = [](const V_& v, std::size_t k) {
    gcpo::selection_outputs o;
    o.critical = v[k];
    o.counts = v[k + 1];
    o.initial = v[k + 2];
    o.gradient = v[k + 3];
    o.low_similarity = v[k + 4];
    o.smoothed_entropy = v[k + 5];
    o.entropy_gradient = v[k + 6];
    o.similarity = v[k + 7];
    return o;
  };
  const std::size_t sel_ws = gcpo::select_critical_tokens_workspace_bytes(R, N);
  {
    op_case c{"select_critical_tokens (similarity)", {"inputs.entropy", "inputs.similarity"}, {false, false},
              {floats({R, N}), floats({R, N})}, nullptr, sel_ws};
    selection_outputs(c);
    c.call = [sel, to_outputs](const V_& v, workspace ws) {
      gcpo::selection_inputs in;
      in.entropy = v[0];
      in.similarity = v[1];
      return gcpo::host::select_critical_tokens(in, to_outputs(v, 2), sel, ws);
    };
    cases_.push_back(c);
  }
  {
    op_case c{"select_critical_tokens (embeddings)", {"inputs.entropy", "inputs.embeddings"}, {false, false},
              {floats({R, N}), floats({R, N, D})}, nullptr, sel_ws};
    selection_outputs(c);
    c.call = [sel, so, to_outputs](const V_& v, workspace ws) {
      gcpo::selection_inputs in;
      in.entropy = v[0];
      in.embeddings = v[1];
      in.similarity_opts = so;
      return gcpo::host::select_critical_tokens(in, to_outputs(v, 2), sel, ws);
    };
    cases_.push_back(c);
  }
  {
    op_case c{"select_critical_tokens (tokens)",
              {"inputs.entropy", "inputs.tokens", "inputs.embedding_table"},
              {false, false, false},
              {floats({R, N}), ids({R, N}), floats({V, D})},
              nullptr,
              sel_ws};
    selection_outputs(c);
    c.call = [sel, so, to_outputs](const V_& v, workspace ws) {
      gcpo::selection_inputs in;
      in.entropy = v[0];
      in.tokens = v[1];
      in.embedding_table = v[2];
      in.similarity_opts = so;
      return gcpo::host::select_critical_tokens(in, to_outputs(v, 3), sel, ws);
    };
    cases_.push_back(c);
  }
  {
    op_case c{"group_advantages", {"rewards", "advantages"}, {false, true}, {floats({R}), floats({R})}, nullptr};
    gcpo::advantage_options ao;
    ao.group = G;
    c.call = [ao](const V_& v, workspace) { return gcpo::host::group_advantages(v[0], v[1], ao); };
    c.in_place = {{1, 0}};
    cases_.push_back(c);
  }
  {
    op_case c{"advantage_weight", {"logp", "ref_logp", "weight"}, {false, false, true},
              {floats({R, N}, -1.0), floats({R, N}, -1.1), floats({R, N})}, nullptr};
    c.call = [](const V_& v, workspace) { return gcpo::host::advantage_weight(v[0], v[1], v[2]); };
    cases_.push_back(c);
  }
  const std::vector<std::string> loss_in = {"inputs.logp", "inputs.ref_logp", "inputs.old_logp", "inputs.advantages",
                                            "inputs.mask"};
  auto loss_views = [&]() {
    return V_{floats({R, N}, -1.0), floats({R, N}, -1.1), floats({R, N}, -1.05), floats({R}), bytes({R, N}, 1)};
  };
  gcpo::loss_options lo;
  lo.clipping = gcpo::ratio_clipping::ppo;
  {
    op_case c{"gcpo_loss_forward", loss_in, {false, false, false, false, false}, loss_views(), nullptr};
    c.names.insert(c.names.end(), {"outputs.stats", "outputs.weight", "outputs.kl"});
    c.is_output.insert(c.is_output.end(), {true, true, true});
    c.views.push_back(floats({gcpo::loss_stat_count}));
    c.views.push_back(floats({R, N}));
    c.views.push_back(floats({R, N}));
    c.call = [lo](const V_& v, workspace) {
      gcpo::loss_outputs out;
      out.stats = v[5];
      out.weight = v[6];
      out.kl = v[7];
      return gcpo::host::gcpo_loss_forward(loss_inputs_from(v), out, lo);
    };
    cases_.push_back(c);
  }
  {
    op_case c{"gcpo_loss_backward", loss_in, {false, false, false, false, false}, loss_views(), nullptr};
    c.names.insert(c.names.end(), {"grad_loss", "grad_logp"});
    c.is_output.insert(c.is_output.end(), {false, true});
    c.views.push_back(floats({1}, 1.0));
    c.views.push_back(floats({R, N}));
    c.call = [lo](const V_& v, workspace) {
      return gcpo::host::gcpo_loss_backward(loss_inputs_from(v), v[5], v[6], lo);
    };
    cases_.push_back(c);
  }
  {
    op_case c{"generation_step",
              {"cond_logits", "uncond_logits", "tokens", "logprob", "entropy"},
              {false, false, true, true, true},
              {floats({R, V}), floats({R, V}, 0.2), ids({R}), floats({R}), floats({R})},
              nullptr,
              gcpo::generation_step_workspace_bytes(R, V)};
    gcpo::sampling_options sp;
    sp.top_k = 3;
    sp.top_p = 0.9f;
    sp.cfg_scale = 2.0f;
    c.call = [sp](const V_& v, workspace ws) { return gcpo::host::generation_step(v[0], v[1], v[2], v[3], v[4], sp, ws); };
    cases_.push_back(c);
  }
  {
    op_case c{"count_nonfinite", {"x", "count"}, {false, true}, {floats({R, N, V}), make<std::int64_t>({1}, 0)}, nullptr};
    c.call = [](const V_& v, workspace) { return gcpo::host::count_nonfinite(v[0], v[1]); };
    cases_.push_back(c);
  }
  {
    op_case c{"check_finite", {"x"}, {false}, {floats({R, N, V})}, nullptr};
    c.call = [](const V_& v, workspace) { return gcpo::host::check_finite(v[0], nullptr); };
    cases_.push_back(c);
  }
}

/// Runs `c` with view `slot` replaced by `bad` (and a fresh workspace of its own).
gcpo::status call_with(operator_table& t, const op_case& c, std::size_t slot, const gcpo::tensor_view& bad) {
  std::vector<gcpo::tensor_view> v = c.views;
  v[slot] = bad;
  return c.call(v, t.own_workspace(c.workspace_bytes));
}

/// A dimension of `v` with extent > 1, or -1.
int wide_dim(const gcpo::tensor_view& v) {
  for (int d = 0; d < v.rank; ++d)
    if (v.shape[d] > 1) return d;
  return -1;
}

}  // namespace

TEST_CASE("hostile: every operator's valid call passes (the baseline of the table)", "[hostile]") {
  operator_table t;
  t.reset_contents();
  for (auto& c : t.cases()) {
    INFO("operator " << c.op);
    const gcpo::status s = c.call(c.views, t.own_workspace(c.workspace_bytes));
    INFO("status message: " << s.message());
    CHECK(s.ok());
  }
}

TEST_CASE("hostile: malformed views are rejected by name, for every argument of every operator", "[hostile]") {
  operator_table t;
  t.reset_contents();
  int cases = 0;
  for (auto& c : t.cases()) {
    for (std::size_t i = 0; i < c.views.size(); ++i) {
      const std::string& name = c.names[i];
      const gcpo::tensor_view good = c.views[i];
      INFO("operator " << c.op << ", argument `" << name << "`");
      {  // null data with elements
        gcpo::tensor_view v = good;
        v.data = nullptr;
        check_error(call_with(t, c, i, v), status_code::invalid_argument, "`" + name + ".data` is null");
      }
      {  // a negative extent
        gcpo::tensor_view v = good;
        v.shape[0] = -3;
        check_error(call_with(t, c, i, v), status_code::invalid_argument,
                    "`" + name + ".shape[0]` (-3) must not be negative");
      }
      {  // extents whose product overflows int64 (rank 1: a span beyond int64 bytes)
        gcpo::tensor_view v = good;
        if (v.rank >= 2) {
          for (int d = 0; d < v.rank; ++d) v.shape[d] = two32;
          check_error(call_with(t, c, i, v), status_code::invalid_argument,
                      "`" + name + ".shape` (4294967296 x 4294967296");
        } else {
          v.shape[0] = std::numeric_limits<std::int64_t>::max() / 2;
          check_error(call_with(t, c, i, v), status_code::invalid_argument, "`" + name + ".strides` (1) with");
        }
      }
      {  // an out-of-range dtype code and memory space code
        gcpo::tensor_view v = good;
        v.type = static_cast<dtype>(77);
        check_error(call_with(t, c, i, v), status_code::invalid_argument,
                    "`" + name + ".dtype` (77) is not a gcpo::dtype value");
        v = good;
        v.space = static_cast<memory_space>(9);
        check_error(call_with(t, c, i, v), status_code::invalid_argument,
                    "`" + name + ".space` (9) is not a gcpo::memory_space value");
      }
      {  // malformed rank (more than 4 extents)
        gcpo::tensor_view v = good;
        v.rank = gcpo::malformed_rank;
        check_error(call_with(t, c, i, v), status_code::invalid_argument, "`" + name + "` is malformed");
      }
      {  // an address range that wraps around the end of the address space (aligned last element)
        gcpo::tensor_view v = good;
        v.data = reinterpret_cast<void*>(std::numeric_limits<std::uintptr_t>::max() -
                                         static_cast<std::uintptr_t>(gcpo::dtype_size(v.type)) + 1);
        check_error(call_with(t, c, i, v), status_code::invalid_argument,
                    "`" + name + "` (data ");
      }
      if (gcpo::dtype_size(good.type) > 1) {  // data not aligned to the element size
        gcpo::tensor_view v = good;
        v.data = static_cast<unsigned char*>(v.data) + 1;
        const gcpo::status s = call_with(t, c, i, v);
        check_error(s, status_code::invalid_argument, "`" + name + ".data` (");
        CHECK_THAT(std::string(s.message()), Catch::Matchers::Contains("is not aligned to its element size"));
      }
      const int d = wide_dim(good);
      if (d >= 0) {
        {  // a stride that makes the span overflow int64 bytes
          gcpo::tensor_view v = good;
          v.strides[d] = std::numeric_limits<std::int64_t>::max() / 2;
          check_error(call_with(t, c, i, v), status_code::invalid_argument, "`" + name + ".strides` (");
        }
        {  // a negative stride (data at the last element of that dimension, so the view is in bounds)
          gcpo::tensor_view v = good;
          v.data = static_cast<unsigned char*>(v.data) +
                   (v.shape[d] - 1) * v.strides[d] * gcpo::dtype_size(v.type);
          v.strides[d] = -v.strides[d];
          const gcpo::status s = call_with(t, c, i, v);
          check_error(s, status_code::invalid_argument, "`" + name);
        }
        {  // a zero stride: elements of that dimension share memory (an output would race)
          gcpo::tensor_view v = good;
          v.strides[d] = 0;
          check_error(call_with(t, c, i, v), status_code::invalid_argument, "`" + name);
        }
      }
      cases += 1;
    }
  }
  CHECK(cases > 60);
}

TEST_CASE("hostile: outputs may not overlap inputs or other outputs (every operator)", "[hostile]") {
  operator_table t;
  t.reset_contents();
  for (auto& c : t.cases()) {
    for (std::size_t o = 0; o < c.views.size(); ++o) {
      if (!c.is_output[o]) continue;
      for (std::size_t j = 0; j < c.views.size(); ++j) {
        if (j == o) continue;
        bool exact_ok = false;
        for (auto p : c.in_place) exact_ok = exact_ok || (p.first == static_cast<int>(o) && p.second == static_cast<int>(j));
        // The output starts inside the other view (one element in, or at it where in place is allowed).
        gcpo::tensor_view v = c.views[o];
        v.data = static_cast<unsigned char*>(c.views[j].data) + (exact_ok ? 4 : 0);
        INFO("operator " << c.op << ": `" << c.names[o] << "` over `" << c.names[j] << "`");
        const gcpo::status s = call_with(t, c, o, v);
        check_error(s, status_code::aliasing, "`" + c.names[o] + "`");
        CHECK_THAT(std::string(s.message()), Catch::Matchers::Contains("`" + c.names[j] + "`"));
      }
    }
  }
}

TEST_CASE("hostile: a workspace may not overlap any argument (generation_step, select_critical_tokens)", "[hostile]") {
  operator_table t;
  t.reset_contents();
  int checked = 0;
  for (auto& c : t.cases()) {
    if (c.workspace_bytes == 0) continue;
    for (std::size_t j = 0; j < c.views.size(); ++j) {
      for (std::ptrdiff_t shift : {std::ptrdiff_t{0}, std::ptrdiff_t{-64}}) {
        // The workspace starts at the view, or ends 64 bytes into it.
        const std::ptrdiff_t start = shift == 0 ? 0 : 64 - static_cast<std::ptrdiff_t>(c.workspace_bytes);
        gcpo::workspace ws{static_cast<unsigned char*>(c.views[j].data) + start, c.workspace_bytes, memory_space::host};
        INFO("operator " << c.op << ": workspace over `" << c.names[j] << "` from byte " << start);
        const gcpo::status s = c.call(c.views, ws);
        check_error(s, status_code::aliasing, "`workspace` (the ");
        CHECK_THAT(std::string(s.message()), Catch::Matchers::Contains("overlap `" + c.names[j] + "`"));
        ++checked;
      }
    }
  }
  CHECK(checked == 2 * (5 + 3 * 8 + 2 + 2 + 3));
  // A workspace right after an argument (sharing no byte) is fine.
  auto& gen = t.cases()[t.cases().size() - 3];
  REQUIRE(gen.op == "generation_step");
  gcpo::workspace after{static_cast<unsigned char*>(gen.views[0].data) + R * V * 4, gen.workspace_bytes,
                        memory_space::host};
  GCPO_REQUIRE_OK(gen.call(gen.views, after));
}

TEST_CASE("hostile: the CUDA loss workspace check (shared, called here with device views)", "[hostile]") {
  std::vector<float> buf(4096);
  auto dev = [&](std::size_t at, std::initializer_list<std::int64_t> shape) {
    return gcpo::make_view(buf.data() + at, shape, memory_space::device);
  };
  gcpo::loss_inputs in;
  in.logp = dev(0, {R, N});
  in.ref_logp = dev(64, {R, N});
  in.advantages = dev(128, {R});
  gcpo::loss_outputs out;
  out.stats = dev(192, {gcpo::loss_stat_count});
  const gcpo::tensor_view grad = dev(256, {R, N});
  const std::size_t need = gcpo::gcpo_loss_workspace_bytes(R, N);
  gcpo::workspace ws{buf.data() + 1024, need, memory_space::device};
  GCPO_REQUIRE_OK(gcpo::detail::check_loss_workspace(in, &out, {}, {}, ws, memory_space::device));
  GCPO_REQUIRE_OK(gcpo::detail::check_loss_workspace(in, nullptr, {}, grad, ws, memory_space::device));
  ws.data = buf.data() + 60;  // ends inside ref_logp and advantages
  check_error(gcpo::detail::check_loss_workspace(in, &out, {}, {}, ws, memory_space::device), status_code::aliasing,
              "shall not overlap `inputs.ref_logp`");
  ws.data = buf.data() + 250;
  check_error(gcpo::detail::check_loss_workspace(in, nullptr, {}, grad, ws, memory_space::device),
              status_code::aliasing, "shall not overlap `grad_logp`");
  ws.data = buf.data() + 190;
  check_error(gcpo::detail::check_loss_workspace(in, &out, {}, {}, ws, memory_space::device), status_code::aliasing,
              "shall not overlap `outputs.stats`");
  ws.space = memory_space::host;
  check_error(gcpo::detail::check_loss_workspace(in, &out, {}, {}, ws, memory_space::device),
              status_code::wrong_memory_space, "`workspace` is host memory");
  ws.space = static_cast<memory_space>(3);
  check_error(gcpo::detail::check_loss_workspace(in, &out, {}, {}, ws, memory_space::device),
              status_code::invalid_argument, "`workspace.space` (3)");
}

TEST_CASE("hostile: the cases of issue 8, one by one", "[hostile]") {
  SECTION("grid {2^62 + 1, 4} with N = 4 is an error, not a heap overflow") {
    std::vector<float> e(16, 1.0f), out(16);
    std::vector<std::uint8_t> m(16);
    gcpo::selection_options o;
    o.grid = {(std::int64_t{1} << 62) + 1, 4};
    const std::string text = "`options.grid` height * width (4611686018427387905 * 4) overflows int64";
    check_error(gcpo::host::smoothed_entropy(cview(e, {4, 4}), view(out, {4, 4}), o), status_code::invalid_argument, text);
    check_error(gcpo::host::entropy_gradient(cview(e, {4, 4}), view(out, {4, 4}), o), status_code::invalid_argument, text);
    check_error(gcpo::host::initial_mask(view(m, {4, 4}), o), status_code::invalid_argument, text);
    check_error(gcpo::host::gradient_topk(cview(e, {4, 4}), view(m, {4, 4}), o), status_code::invalid_argument, text);
    check_error(gcpo::host::low_similarity_mask(cview(e, {4, 4}), {}, view(m, {4, 4}), o), status_code::invalid_argument,
                text);
    gcpo::selection_inputs in;
    in.entropy = cview(e, {4, 4});
    in.similarity = cview(e, {4, 4});
    gcpo::selection_outputs so;
    so.critical = view(m, {4, 4});
    host_workspace ws(gcpo::select_critical_tokens_workspace_bytes(4, 4));
    check_error(gcpo::host::select_critical_tokens(in, so, o, ws.get()), status_code::invalid_argument, text);
    gcpo::selection_counts counts;
    check_error(gcpo::selection_counts_for(4, o, counts), status_code::invalid_argument, text);
    // Both factors at 2^32: the product wraps to 0 in 64 bits.
    o.grid = {two32, two32};
    check_error(gcpo::selection_counts_for(0, o, counts), status_code::invalid_argument, "overflows int64");
  }
  SECTION("a square grid of a huge N (no rows) is not a perfect square, without overflow") {
    std::vector<float> out(1);
    const std::int64_t big = std::numeric_limits<std::int64_t>::max();
    const auto e = gcpo::make_view(static_cast<const float*>(nullptr), {0, big});
    check_error(gcpo::host::smoothed_entropy(e, gcpo::make_view(out.data(), {0, big}), {}),
                status_code::invalid_argument, "is not a perfect square");
    // (2^31 - 1)^2 is a perfect square but beyond the selection's int32 positions.
    gcpo::selection_counts counts;
    check_error(gcpo::selection_counts_for(std::int64_t{2147483647} * 2147483647, {}, counts),
                status_code::invalid_argument, "must be at most 2^31 - 1");
  }
  SECTION("make_view(nullptr, {2^32, 2^32, 1}) does not wrap to 0 elements") {
    const auto logits = gcpo::make_view(static_cast<const float*>(nullptr), {two32, two32, 1});
    CHECK(logits.numel() == -1);
    std::vector<float> ent(1);
    check_error(gcpo::host::token_stats(logits, {}, gcpo::make_view(ent.data(), {two32, two32}), {}, {}),
                status_code::invalid_argument, "`logits.shape` (4294967296 x 4294967296 x 1) has more elements than fit in int64");
  }
  SECTION("an output whose own elements overlap: grad_logits with strides {8, 2, 1}") {
    constexpr std::int64_t r = 2, n = 4, v = 8;
    std::vector<float> logits(r * n * v, 0.1f), lse(r * n, 3.0f), glp(r * n, 1.0f), grad(r * n * v, 0.0f);
    std::vector<std::int64_t> tok(r * n, 1);
    const auto g = gcpo::make_strided_view(grad.data(), {r, n, v}, {8, 2, 1});
    check_error(gcpo::host::token_stats_backward(cview(logits, {r, n, v}), cview(tok, {r, n}), cview(lse, {r, n}),
                                                 cview(glp, {r, n}), g),
                status_code::aliasing, "`grad_logits` overlaps itself: strides (8 x 2 x 1) over shape (2 x 4 x 8)");
    // The same memory read in place (exactly `logits`, self-overlapping) is refused too.
    const auto in_place = gcpo::make_strided_view(logits.data(), {r, n, v}, {8, 2, 1});
    check_error(gcpo::host::token_stats_backward(in_place, cview(tok, {r, n}), cview(lse, {r, n}), cview(glp, {r, n}),
                                                 gcpo::make_strided_view(logits.data(), {r, n, v}, {8, 2, 1})),
                status_code::aliasing, "`grad_logits` overlaps itself");
  }
  SECTION("a generation_step workspace that overlaps cond_logits") {
    std::vector<float> cond(2 * 64, 0.5f);
    std::vector<std::int32_t> tok(2);
    const std::size_t need = gcpo::generation_step_workspace_bytes(2, 64);
    std::vector<unsigned char> big(need + 4096);
    // cond_logits inside the workspace's bytes
    const auto c = gcpo::make_view(reinterpret_cast<const float*>(big.data() + 512), {2, 64});
    std::memcpy(big.data() + 512, cond.data(), cond.size() * 4);
    check_error(gcpo::host::generation_step(c, {}, view(tok, {2}), {}, {}, {}, {big.data(), need, memory_space::host}),
                status_code::aliasing, "`workspace` (the " + std::to_string(need) +
                                           " bytes from workspace.data) shall not overlap `cond_logits`");
  }
  SECTION("count_nonfinite / check_finite reject negative extents") {
    std::vector<float> x(6, 1.0f);
    std::vector<std::int64_t> cnt(1);
    check_error(gcpo::host::count_nonfinite(gcpo::make_view(x.data(), {-2, -3}), view(cnt, {1})),
                status_code::invalid_argument, "`x.shape[0]` (-2) must not be negative");
    check_error(gcpo::host::count_nonfinite(gcpo::make_view(x.data(), {-5}), view(cnt, {1})),
                status_code::invalid_argument, "`x.shape[0]` (-5) must not be negative");
    check_error(gcpo::host::check_finite(gcpo::make_view(x.data(), {-2, -3}), "scores"), status_code::invalid_argument,
                "`scores.shape[0]` (-2) must not be negative");
    check_error(gcpo::host::check_finite(gcpo::make_view(x.data(), {-5}), "scores"), status_code::invalid_argument,
                "`scores.shape[0]` (-5) must not be negative");
    check_error(gcpo::host::count_nonfinite(cview(x, {6}), gcpo::make_view(cnt.data(), {-1})),
                status_code::invalid_argument, "`count.shape[0]` (-1) must not be negative");
  }
  SECTION("check_finite(x, nullptr) names the tensor `x`") {
    std::vector<float> x = {1.0f, nan_f};
    check_error(gcpo::host::check_finite(cview(x, {2}), nullptr), status_code::non_finite,
                "`x` element 1 (row-major) is nan");
    check_error(gcpo::host::check_finite(gcpo::make_view(static_cast<const float*>(nullptr), {2}), nullptr),
                status_code::invalid_argument, "`x.data` is null");
    check_error(gcpo::host::check_finite(gcpo::make_strided_view(x.data(), {2}, {-1}), nullptr),
                status_code::invalid_argument, "`x.strides[0]` (-1) must be positive");
  }
  SECTION("out-of-range enum values are named") {
    std::vector<float> rw(4, 1.0f), adv(4);
    gcpo::advantage_options ao;
    ao.group = 2;
    ao.std = static_cast<gcpo::advantage_std>(7);
    check_error(gcpo::host::group_advantages(cview(rw, {4}), view(adv, {4}), ao), status_code::invalid_argument,
                "`options.std` (7) is not a gcpo::advantage_std value (0..2)");
    std::vector<float> lp(8, -1.0f), st(gcpo::loss_stat_count), grad(8);
    gcpo::loss_inputs in;
    in.logp = cview(lp, {2, 4});
    in.ref_logp = cview(lp, {2, 4});
    in.advantages = cview(rw, {2});
    gcpo::loss_outputs out;
    out.stats = view(st, {gcpo::loss_stat_count});
    auto both = [&](const gcpo::loss_options& o, const std::string& text) {
      check_error(gcpo::host::gcpo_loss_forward(in, out, o), status_code::invalid_argument, text);
      check_error(gcpo::host::gcpo_loss_backward(in, {}, view(grad, {2, 4}), o), status_code::invalid_argument, text);
    };
    gcpo::loss_options o;
    o.aggregation = static_cast<gcpo::loss_aggregation>(9);
    both(o, "`options.aggregation` (9) is not a gcpo::loss_aggregation value (0..3)");
    o = {};
    o.algo = static_cast<gcpo::algorithm>(2);
    both(o, "`options.algo` (2) is not a gcpo::algorithm value (0..1)");
    o = {};
    o.clipping = static_cast<gcpo::ratio_clipping>(-1);
    both(o, "`options.clipping` (-1) is not a gcpo::ratio_clipping value (0..1)");
  }
  SECTION("messages inside select_critical_tokens name the inputs as the caller wrote them") {
    constexpr std::int64_t r = 2, n = 9;
    std::vector<float> ent(r * n, 1.0f), table(4 * 3, 1.0f);
    std::vector<std::int64_t> tok(r * n, 1);
    tok[5] = 4;  // V = 4: out of range
    std::vector<std::uint8_t> crit(r * n);
    gcpo::selection_inputs in;
    in.entropy = cview(ent, {r, n});
    in.tokens = cview(tok, {r, n});
    in.embedding_table = cview(table, {4, 3});
    in.similarity_opts.group = 2;
    gcpo::selection_outputs out;
    out.critical = view(crit, {r, n});
    host_workspace ws(gcpo::select_critical_tokens_workspace_bytes(r, n));
    check_error(gcpo::host::select_critical_tokens(in, out, {}, ws.get()), status_code::invalid_argument,
                "`inputs.tokens[0, 5]` (4) must be in [0, V = 4)");
    tok[5] = 1;
    in.embedding_table = gcpo::make_view(tok.data(), {4, 3});
    check_error(gcpo::host::select_critical_tokens(in, out, {}, ws.get()), status_code::unsupported_dtype,
                "`inputs.embedding_table.dtype` is int64");
    in.embedding_table = gcpo::make_strided_view(table.data(), {4, 3}, {3, 2});
    check_error(gcpo::host::select_critical_tokens(in, out, {}, ws.get()), status_code::invalid_argument,
                "`inputs.embedding_table.strides[1]` (2) must be 1");
    in.embedding_table = {};
    in.tokens = {};
    std::vector<std::int32_t> emb(r * n * 3);
    in.embeddings = gcpo::make_view(emb.data(), {r, n, 3});
    check_error(gcpo::host::select_critical_tokens(in, out, {}, ws.get()), status_code::unsupported_dtype,
                "`inputs.embeddings.dtype` is int32");
    in.embeddings = gcpo::make_view(table.data(), {r, n, 3}, memory_space::device);
    check_error(gcpo::host::select_critical_tokens(in, out, {}, ws.get()), status_code::wrong_memory_space,
                "`inputs.embeddings` is a device view");
  }
  SECTION("a DLPack tensor whose shape overflows gives a view every operator refuses (no wrapped strides)") {
    std::int64_t shape[3] = {two32, two32, 4};
    DLTensor t{};
    t.data = nullptr;
    t.byte_offset = 64;  // an offset on a null pointer: not pointer arithmetic
    t.device = {kDLCPU, 0};
    t.ndim = 3;
    t.dtype = {kDLFloat, 32, 1};
    t.shape = shape;
    gcpo::const_tensor_view v;
    GCPO_REQUIRE_OK(gcpo::from_dlpack(t, v, "x"));
    CHECK(v.numel() == -1);
    std::vector<std::int64_t> cnt(1);
    check_error(gcpo::host::count_nonfinite(v, view(cnt, {1})), status_code::invalid_argument,
                "`x.shape` (4294967296 x 4294967296 x 4) has more elements than fit in int64");
  }
  SECTION("in-place exceptions read without nested back-quotes") {
    std::vector<float> rw(4, 1.0f);
    gcpo::advantage_options ao;
    ao.group = 2;
    check_error(gcpo::host::group_advantages(cview(rw, {4}), gcpo::make_view(rw.data() + 1, {4}), ao),
                status_code::aliasing, "`advantages` shall not overlap `rewards` unless it is exactly `rewards` (in place)");
    GCPO_REQUIRE_OK(gcpo::host::group_advantages(cview(rw, {4}), view(rw, {4}), ao));
  }
}

TEST_CASE("hostile: NaN and infinite options are rejected by name (every operator with floating options)", "[hostile]") {
  const float bad_f[] = {nan_f, inf_f, -inf_f};
  std::vector<float> a(64, 0.5f), b(64, 0.4f), out(64);
  std::vector<std::int64_t> tok(16, 1);
  std::vector<std::uint8_t> m(16);
  for (float x : bad_f) {
    INFO("value " << x);
    gcpo::token_stats_options to;
    to.temperature = x;
    check_error(gcpo::host::token_stats(cview(a, {1, 4, 8}), {}, view(out, {1, 4}), {}, {}, to),
                status_code::invalid_argument, "`options.temperature`");
    gcpo::advantage_options ao;
    ao.group = 2;
    ao.eps = x;
    check_error(gcpo::host::group_advantages(cview(a, {4}), view(out, {4}), ao), status_code::invalid_argument,
                "`options.eps`");
    gcpo::weight_options wo;
    wo.clip = x;
    check_error(gcpo::host::advantage_weight(cview(a, {2, 4}), cview(b, {2, 4}), view(out, {2, 4}), wo),
                status_code::invalid_argument, "`options.clip`");
    gcpo::similarity_options so;
    so.group = 2;
    so.eps = x;
    check_error(gcpo::host::group_similarity(cview(a, {2, 4, 2}), view(out, {2, 4}), so), status_code::invalid_argument,
                "`options.eps`");
    gcpo::selection_inputs si;
    si.entropy = cview(a, {2, 4});
    si.embeddings = cview(b, {2, 4, 2});
    si.similarity_opts = so;
    gcpo::selection_outputs sout;
    sout.critical = view(m, {2, 4});
    host_workspace ws(gcpo::select_critical_tokens_workspace_bytes(2, 4));
    gcpo::selection_options sel;
    sel.grid = {2, 2};
    check_error(gcpo::host::select_critical_tokens(si, sout, sel, ws.get()), status_code::invalid_argument,
                "`inputs.similarity_opts.eps`");
    double gcpo::selection_options::*fracs[] = {&gcpo::selection_options::initial_frac,
                                                &gcpo::selection_options::gradient_frac,
                                                &gcpo::selection_options::similarity_frac,
                                                &gcpo::selection_options::window_start_frac,
                                                &gcpo::selection_options::window_frac};
    const char* frac_names[] = {"`options.initial_frac`", "`options.gradient_frac`", "`options.similarity_frac`",
                                "`options.window_start_frac`", "`options.window_frac`"};
    for (int f = 0; f < 5; ++f) {
      gcpo::selection_options s2 = sel;
      s2.*fracs[f] = x;
      check_error(gcpo::host::initial_mask(view(m, {2, 4}), s2), status_code::invalid_argument, frac_names[f]);
    }
    gcpo::sampling_options sp;
    sp.cfg_scale = x;
    std::vector<std::int32_t> t2(2);
    host_workspace gws(gcpo::generation_step_workspace_bytes(2, 8));
    check_error(gcpo::host::generation_step(cview(a, {2, 8}), cview(b, {2, 8}), view(t2, {2}), {}, {}, sp, gws.get()),
                status_code::invalid_argument, "`options.cfg_scale`");
    sp = {};
    sp.temperature = x;
    check_error(gcpo::host::generation_step(cview(a, {2, 8}), {}, view(t2, {2}), {}, {}, sp, gws.get()),
                status_code::invalid_argument, "`options.temperature`");
    sp = {};
    sp.top_p = x;
    check_error(gcpo::host::generation_step(cview(a, {2, 8}), {}, view(t2, {2}), {}, {}, sp, gws.get()),
                status_code::invalid_argument, "`options.top_p`");
    // the loss: every floating option where it is used
    gcpo::loss_inputs li;
    li.logp = cview(a, {2, 4});
    li.ref_logp = cview(b, {2, 4});
    li.advantages = cview(a, {2});
    gcpo::loss_outputs lout;
    std::vector<float> st(gcpo::loss_stat_count);
    lout.stats = view(st, {gcpo::loss_stat_count});
    auto both = [&](const gcpo::loss_options& o, const std::string& text) {
      check_error(gcpo::host::gcpo_loss_forward(li, lout, o), status_code::invalid_argument, text);
      check_error(gcpo::host::gcpo_loss_backward(li, {}, view(out, {2, 4}), o), status_code::invalid_argument, text);
    };
    gcpo::loss_options lo;
    lo.beta = x;
    both(lo, "`options.beta`");
    lo = {};
    lo.weight_clip = x;
    both(lo, "`options.weight_clip`");
    lo = {};
    lo.clipping = gcpo::ratio_clipping::ppo;
    lo.eps_low = x;
    both(lo, "`options.eps_low`");
    lo.eps_low = 0.2f;
    lo.eps_high = x;
    both(lo, "`options.eps_high`");
    lo = {};
    lo.aggregation = gcpo::loss_aggregation::constant;
    lo.max_tokens = x;
    both(lo, "`options.max_tokens`");
    lo = {};
    lo.aggregation = gcpo::loss_aggregation::external;
    lo.denominator = x;
    both(lo, "`options.denominator`");
  }
}

TEST_CASE("hostile: workspace-size queries saturate at SIZE_MAX, and operators refuse them by name", "[hostile]") {
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  // Expected values from the definition in 128-bit arithmetic: each array rounded up to 256
  // bytes, plus 256 of slack; SIZE_MAX when the total does not fit in 64 bits.
  auto carved = [](std::initializer_list<u128> sizes) -> std::size_t {
    const u128 cap = static_cast<u128>(1) << 100;  // beyond 2^64 the value is SIZE_MAX anyway
    u128 total = 0;
    for (auto s : sizes) total += ((s < cap ? s : cap) + 255) / 256 * 256;
    if (total == 0) return 0;
    total += 256;
    return total > std::numeric_limits<std::size_t>::max() ? std::numeric_limits<std::size_t>::max()
                                                           : static_cast<std::size_t>(total);
  };
  auto sel = [&](std::int64_t r, std::int64_t n) {
    const u128 rn = static_cast<u128>(r) * static_cast<u128>(n);
    return carved({rn * 4, rn * 4, rn * 4, rn, rn, rn, static_cast<u128>(n) * 4});
  };
  auto gen = [&](std::int64_t r, std::int64_t v) {
    const u128 rv = static_cast<u128>(r < 1 ? 1 : r) * static_cast<u128>(v);
    return carved({rv * 4, rv * 4});
  };
  auto loss = [&](std::int64_t r) { return carved({static_cast<u128>(r) * 64}); };
  const std::int64_t probes[] = {0, 1, 7, 576, std::int64_t{1} << 31, std::int64_t{1} << 40, std::int64_t{1} << 60,
                                 std::int64_t{1} << 62, big};
  for (std::int64_t x : probes)
    for (std::int64_t y : probes) {
      INFO("R = " << x << ", N or V = " << y);
      CHECK(gcpo::select_critical_tokens_workspace_bytes(x, y) == sel(x, y));
      CHECK(gcpo::generation_step_workspace_bytes(x, y) == gen(x, y));
      CHECK(gcpo::gcpo_loss_workspace_bytes(x, y) == loss(x));
    }
  CHECK(gcpo::select_critical_tokens_workspace_bytes(big, big) == SIZE_MAX);
  CHECK(gcpo::generation_step_workspace_bytes(big, 2) == SIZE_MAX);
  CHECK(gcpo::gcpo_loss_workspace_bytes(big, 1) == SIZE_MAX);
  CHECK(gcpo::select_critical_tokens_workspace_bytes(-5, 7) == gcpo::select_critical_tokens_workspace_bytes(0, 7));
  // generation_step on views that validate (bfloat16 [2^60, 2], 2^62 bytes, at addresses that
  // are never read) but whose workspace would need 2^64 bytes: refused before any access.
  const auto cond = gcpo::make_view(reinterpret_cast<const gcpo::bfloat16*>(std::uintptr_t{1} << 40),
                                    {std::int64_t{1} << 60, 2});
  const auto tok = gcpo::make_view(reinterpret_cast<std::int32_t*>(std::uintptr_t{1} << 63), {std::int64_t{1} << 60});
  REQUIRE(gcpo::generation_step_workspace_bytes(std::int64_t{1} << 60, 2) == SIZE_MAX);
  check_error(gcpo::host::generation_step(cond, {}, tok, {}, {}, {}, {}), status_code::invalid_argument,
              "`generation_step_workspace_bytes(R, V)` does not fit in size_t");
}
