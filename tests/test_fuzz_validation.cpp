// Property test of every host operator's validation (issue 8): a seeded generator throws
// random shapes, strides (negative, zero, interleaved, huge), offsets, dtypes, memory spaces,
// absent views, aliasing placements, workspaces and options (NaN, infinities, out-of-range
// enums and grids) at each operator, a fixed number of times (a few seconds under ASan).
//
// Every call that validation accepts is then checked against preconditions computed here by
// brute force, independently of the library:
// - every view has the operator's rank, an allowed dtype, host memory, extents that agree
//   with the other views (symbols R, N, V, D), an element count computed in 128 bits that
//   fits in int64, and every element address inside the test's buffer;
// - contiguous views have row-major addresses; the others positive strides and (where the
//   operator needs it) a contiguous last dimension;
// - no two elements of an output share a byte, and no output shares a byte with another
//   view (enumerated element by element), except the exact in-place aliases an operator allows;
// - the bytes of the workspace the operator may use (its size from the definition, in 128
//   bits) share no byte with any view;
// - the options are in their documented ranges (checked here from the documentation);
// and its result is sane: no byte outside the outputs and the workspace changed (the buffer
// is poisoned around and between the views), masks are 0/1, sampled tokens lie in [0, V).
// A sanitizer report, or one accepted call that breaks a precondition, fails the test.
#include <catch2/catch.hpp>

#include <gcpo/gcpo.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "unit_support.hpp"

using namespace gcpo_test;
using gcpo::dtype;
using gcpo::memory_space;

namespace {

__extension__ typedef __int128 i128;

constexpr std::size_t arena_bytes = 24576;  // where the views live
constexpr std::size_t guard_bytes = 4096;   // poisoned bytes on either side
constexpr unsigned char poison = 0xA5;

const std::vector<dtype> floating = {dtype::float32, dtype::bfloat16, dtype::float16};
const std::vector<dtype> f32 = {dtype::float32};
const std::vector<dtype> index_types = {dtype::int32, dtype::int64};
const std::vector<dtype> u8 = {dtype::uint8};
const std::vector<dtype> i32 = {dtype::int32};
const std::vector<dtype> i64 = {dtype::int64};

/// What the operator requires of a view's layout.
enum class layout { contiguous, inner, positive };

/// One argument of an operator: its name, extents as symbols (R, N, V, D; '1' is 1, 'S' the
/// loss stat count, '*' any rank and extents), dtypes, role.
struct arg {
  std::string name;
  std::string dims;
  std::vector<dtype> types;
  bool output;
  bool optional;
  layout lay;
};

/// Every options struct, drawn at random for each call.
struct options {
  gcpo::token_stats_options ts;
  gcpo::similarity_options sim;
  gcpo::selection_options sel;
  gcpo::advantage_options adv;
  gcpo::weight_options w;
  gcpo::loss_options loss;
  gcpo::sampling_options samp;
};

/// Symbol values bound from accepted views.
struct symbols {
  std::int64_t R = -1, N = -1, V = -1, D = -1;
  std::int64_t G = 2;  ///< the group the generator drew R from (not bound from views)
  std::int64_t value(char c) const {
    return c == 'R' ? R : c == 'N' ? N : c == 'V' ? V : D;
  }
  std::int64_t* of(char c) {
    switch (c) {
      case 'R': return &R;
      case 'N': return &N;
      case 'V': return &V;
      case 'D': return &D;
      default: return nullptr;
    }
  }
};

using views_t = std::vector<gcpo::tensor_view>;

struct fuzz_op {
  std::string name;
  std::vector<arg> args;
  bool takes_workspace = false;
  /// The call, with the views in the order of `args`.
  std::function<gcpo::status(const views_t&, const options&, gcpo::workspace)> call;
  /// Preconditions beyond the per-view ones (options, combinations), from the documentation.
  std::function<bool(const views_t&, const symbols&, const options&, std::string&)> extra;
  /// Workspace bytes from the definition (128-bit arithmetic; > 2^64 - 1 means "none fits").
  std::function<i128(const symbols&)> workspace_bytes;
  /// (output, input) pairs that may be exactly the same view.
  std::vector<std::pair<int, int>> in_place;
  /// Groups of optional arguments of which a call gives exactly one (clean draws pick one).
  std::vector<std::vector<int>> one_of;
};

bool finite(double x) { return std::isfinite(x); }

/// Bytes for arrays carved from a workspace: each rounded up to 256, plus 256 of slack.
i128 carved(std::initializer_list<i128> sizes) {
  i128 total = 0;
  for (i128 s : sizes) total += (s + 255) / 256 * 256;
  return total == 0 ? 0 : total + 256;
}

bool perfect_square(std::int64_t n) {
  for (std::int64_t s = 0; static_cast<i128>(s) * s <= n; ++s)
    if (static_cast<i128>(s) * s == n) return true;
  return false;
}

/// selection_options are valid for N tokens (documented rules, selection.hpp / operators.md).
bool selection_ok(std::int64_t N, const gcpo::selection_options& o, bool counts_needed, std::string& why) {
  if (N > 2147483647) return why = "N beyond int32", false;
  const auto g = o.grid;
  if (g.height == 0 && g.width == 0) {
    if (!perfect_square(N)) return why = "N not a perfect square", false;
  } else if (g.height < 1 || g.width < 1 || static_cast<i128>(g.height) * g.width != N) {
    return why = "grid does not multiply to N", false;
  }
  if (!counts_needed) return true;
  for (double f : {o.initial_frac, o.gradient_frac, o.similarity_frac, o.window_start_frac, o.window_frac})
    if (!(f >= 0.0 && f <= 1.0)) return why = "fraction outside [0, 1]", false;
  const long double ws = std::floor(static_cast<long double>(N) * o.window_start_frac);
  const long double w = std::floor(static_cast<long double>(N) * o.window_frac);
  if (ws + w > N) return why = "window beyond N", false;
  return true;
}

bool similarity_ok(std::int64_t R, const gcpo::similarity_options& o, std::string& why) {
  if (o.group < 2 || o.group > 1024 || R % o.group != 0 || !(o.eps > 0.0f) || !finite(o.eps))
    return why = "similarity options", false;
  return true;
}

bool loss_options_ok(const gcpo::loss_options& o, std::string& why) {
  const int algo = static_cast<int>(o.algo), clip = static_cast<int>(o.clipping), agg = static_cast<int>(o.aggregation);
  if (algo < 0 || algo > 1 || clip < 0 || clip > 1 || agg < 0 || agg > 3) return why = "loss enum", false;
  if (clip == 1 && !(o.eps_low >= 0.0f && o.eps_low < 1.0f)) return why = "eps_low", false;
  if (clip == 1 && !(o.eps_high >= 0.0f && finite(o.eps_high))) return why = "eps_high", false;
  if (!(o.beta >= 0.0f && finite(o.beta)) || !(o.weight_clip >= 0.0f && finite(o.weight_clip)))
    return why = "beta / weight_clip", false;
  if (agg == 2 && !(o.max_tokens >= 0.0 && finite(o.max_tokens))) return why = "max_tokens", false;
  if (agg == 3 && !(o.denominator > 0.0 && finite(o.denominator))) return why = "denominator", false;
  return true;
}

const std::string stat_dims = "S";

std::vector<fuzz_op> make_ops() {
  std::vector<fuzz_op> ops;
  auto always = [](const views_t&, const symbols&, const options&, std::string&) { return true; };
  auto present = [](const gcpo::tensor_view& v) { return v.present(); };
  {
    fuzz_op op;
    op.name = "token_stats";
    op.args = {{"logits", "RNV", floating, false, false, layout::inner},
               {"tokens", "RN", index_types, false, true, layout::contiguous},
               {"entropy", "RN", f32, true, true, layout::contiguous},
               {"logprob", "RN", f32, true, true, layout::contiguous},
               {"lse", "RN", f32, true, true, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::token_stats(v[0], v[1], v[2], v[3], v[4], o.ts);
    };
    op.extra = [present](const views_t& v, const symbols& s, const options& o, std::string& why) {
      if (s.V < 1) return why = "V < 1", false;
      if (!(o.ts.temperature > 0.0f && finite(o.ts.temperature))) return why = "temperature", false;
      if (!present(v[2]) && !present(v[3]) && !present(v[4])) return why = "no output", false;
      if (present(v[3]) && !present(v[1])) return why = "logprob without tokens", false;
      return true;
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "token_stats_backward";
    op.args = {{"logits", "RNV", floating, false, false, layout::inner},
               {"tokens", "RN", index_types, false, false, layout::contiguous},
               {"lse", "RN", f32, false, false, layout::contiguous},
               {"grad_logprob", "RN", f32, false, false, layout::contiguous},
               {"grad_logits", "RNV", floating, true, false, layout::inner}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::token_stats_backward(v[0], v[1], v[2], v[3], v[4], o.ts);
    };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      if (s.V < 1) return why = "V < 1", false;
      if (!(o.ts.temperature > 0.0f && finite(o.ts.temperature))) return why = "temperature", false;
      return true;
    };
    op.in_place = {{4, 0}};
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "group_similarity";
    op.args = {{"embeddings", "RND", floating, false, false, layout::inner},
               {"similarity", "RN", f32, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::group_similarity(v[0], v[1], o.sim);
    };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      return similarity_ok(s.R, o.sim, why);
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "group_similarity_from_tokens";
    op.args = {{"tokens", "RN", index_types, false, false, layout::contiguous},
               {"table", "VD", floating, false, false, layout::inner},
               {"similarity", "RN", f32, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::group_similarity_from_tokens(v[0], v[1], v[2], o.sim);
    };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      return similarity_ok(s.R, o.sim, why);
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "initial_mask";
    op.args = {{"mask", "RN", u8, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) { return gcpo::host::initial_mask(v[0], o.sel); };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      return selection_ok(s.N, o.sel, true, why);
    };
    ops.push_back(op);
  }
  for (int which = 0; which < 2; ++which) {
    fuzz_op op;
    op.name = which == 0 ? "smoothed_entropy" : "entropy_gradient";
    op.args = {{which == 0 ? "entropy" : "smoothed", "RN", f32, false, false, layout::contiguous},
               {which == 0 ? "smoothed" : "gradient", "RN", f32, true, false, layout::contiguous}};
    op.call = [which](const views_t& v, const options& o, gcpo::workspace) {
      return which == 0 ? gcpo::host::smoothed_entropy(v[0], v[1], o.sel) : gcpo::host::entropy_gradient(v[0], v[1], o.sel);
    };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      return selection_ok(s.N, o.sel, false, why);
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "gradient_topk";
    op.args = {{"gradient", "RN", f32, false, false, layout::contiguous}, {"mask", "RN", u8, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) { return gcpo::host::gradient_topk(v[0], v[1], o.sel); };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      return selection_ok(s.N, o.sel, true, why);
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "low_similarity_mask";
    op.args = {{"similarity", "RN", f32, false, false, layout::contiguous},
               {"exclude", "RN", u8, false, true, layout::contiguous},
               {"mask", "RN", u8, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::low_similarity_mask(v[0], v[1], v[2], o.sel);
    };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      return selection_ok(s.N, o.sel, true, why);
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "union_mask";
    op.args = {{"a", "RN", u8, false, false, layout::contiguous},
               {"b", "RN", u8, false, false, layout::contiguous},
               {"c", "RN", u8, false, true, layout::contiguous},
               {"critical", "RN", u8, true, false, layout::contiguous},
               {"counts", "R", i32, true, true, layout::contiguous}};
    op.call = [](const views_t& v, const options&, gcpo::workspace) {
      return gcpo::host::union_mask(v[0], v[1], v[2], v[3], v[4]);
    };
    op.extra = always;
    op.in_place = {{3, 0}, {3, 1}, {3, 2}};
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "select_critical_tokens";
    op.args = {{"inputs.entropy", "RN", f32, false, false, layout::contiguous},
               {"inputs.similarity", "RN", f32, false, true, layout::contiguous},
               {"inputs.embeddings", "RND", floating, false, true, layout::inner},
               {"inputs.tokens", "RN", index_types, false, true, layout::contiguous},
               {"inputs.embedding_table", "VD", floating, false, true, layout::inner},
               {"outputs.critical", "RN", u8, true, false, layout::contiguous},
               {"outputs.counts", "R", i32, true, true, layout::contiguous},
               {"outputs.initial", "RN", u8, true, true, layout::contiguous},
               {"outputs.gradient", "RN", u8, true, true, layout::contiguous},
               {"outputs.low_similarity", "RN", u8, true, true, layout::contiguous},
               {"outputs.smoothed_entropy", "RN", f32, true, true, layout::contiguous},
               {"outputs.entropy_gradient", "RN", f32, true, true, layout::contiguous},
               {"outputs.similarity", "RN", f32, true, true, layout::contiguous}};
    op.takes_workspace = true;
    op.call = [](const views_t& v, const options& o, gcpo::workspace ws) {
      gcpo::selection_inputs in;
      in.entropy = v[0];
      in.similarity = v[1];
      in.embeddings = v[2];
      in.tokens = v[3];
      in.embedding_table = v[4];
      in.similarity_opts = o.sim;
      gcpo::selection_outputs out;
      out.critical = v[5];
      out.counts = v[6];
      out.initial = v[7];
      out.gradient = v[8];
      out.low_similarity = v[9];
      out.smoothed_entropy = v[10];
      out.entropy_gradient = v[11];
      out.similarity = v[12];
      return gcpo::host::select_critical_tokens(in, out, o.sel, ws);
    };
    op.extra = [present](const views_t& v, const symbols& s, const options& o, std::string& why) {
      const int sources = (present(v[1]) ? 1 : 0) + (present(v[2]) ? 1 : 0) + ((present(v[3]) || present(v[4])) ? 1 : 0);
      if (sources != 1) return why = "not exactly one similarity source", false;
      if ((present(v[3]) || present(v[4])) && !(present(v[3]) && present(v[4]))) return why = "tokens without table", false;
      if (!present(v[1]) && !similarity_ok(s.R, o.sim, why)) return false;
      return selection_ok(s.N, o.sel, true, why);
    };
    op.one_of = {{1}, {2}, {3, 4}};
    op.workspace_bytes = [](const symbols& s) {
      const i128 rn = static_cast<i128>(s.R) * s.N;
      return carved({rn * 4, rn * 4, rn * 4, rn, rn, rn, static_cast<i128>(s.N) * 4});
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "group_advantages";
    op.args = {{"rewards", "R", f32, false, false, layout::contiguous}, {"advantages", "R", f32, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::group_advantages(v[0], v[1], o.adv);
    };
    op.extra = [](const views_t&, const symbols& s, const options& o, std::string& why) {
      const int std_kind = static_cast<int>(o.adv.std);
      if (std_kind < 0 || std_kind > 2) return why = "std enum", false;
      if (o.adv.group < (std_kind == 0 ? 2 : 1) || s.R % o.adv.group != 0) return why = "group", false;
      if (!(o.adv.eps >= 0.0f && finite(o.adv.eps))) return why = "eps", false;
      return true;
    };
    op.in_place = {{1, 0}};
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "advantage_weight";
    op.args = {{"logp", "RN", f32, false, false, layout::contiguous},
               {"ref_logp", "RN", f32, false, false, layout::contiguous},
               {"weight", "RN", f32, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::advantage_weight(v[0], v[1], v[2], o.w);
    };
    op.extra = [](const views_t&, const symbols&, const options& o, std::string& why) {
      if (!(o.w.clip >= 0.0f && finite(o.w.clip))) return why = "clip", false;
      return true;
    };
    ops.push_back(op);
  }
  const std::vector<arg> loss_args = {{"inputs.logp", "RN", f32, false, false, layout::contiguous},
                                      {"inputs.ref_logp", "RN", f32, false, false, layout::contiguous},
                                      {"inputs.old_logp", "RN", f32, false, true, layout::contiguous},
                                      {"inputs.advantages", "R", f32, false, false, layout::contiguous},
                                      {"inputs.mask", "RN", u8, false, true, layout::contiguous}};
  auto loss_extra = [](const views_t&, const symbols&, const options& o, std::string& why) {
    return loss_options_ok(o.loss, why);
  };
  {
    fuzz_op op;
    op.name = "gcpo_loss_forward";
    op.args = loss_args;
    op.args.push_back({"outputs.stats", stat_dims, f32, true, false, layout::contiguous});
    op.args.push_back({"outputs.weight", "RN", f32, true, true, layout::contiguous});
    op.args.push_back({"outputs.kl", "RN", f32, true, true, layout::contiguous});
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      gcpo::loss_outputs out;
      out.stats = v[5];
      out.weight = v[6];
      out.kl = v[7];
      return gcpo::host::gcpo_loss_forward(loss_inputs_from(v), out, o.loss);
    };
    op.extra = loss_extra;
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "gcpo_loss_backward";
    op.args = loss_args;
    op.args.push_back({"grad_loss", "1", f32, false, true, layout::contiguous});
    op.args.push_back({"grad_logp", "RN", f32, true, false, layout::contiguous});
    op.call = [](const views_t& v, const options& o, gcpo::workspace) {
      return gcpo::host::gcpo_loss_backward(loss_inputs_from(v), v[5], v[6], o.loss);
    };
    op.extra = loss_extra;
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "generation_step";
    op.args = {{"cond_logits", "RV", floating, false, false, layout::inner},
               {"uncond_logits", "RV", floating, false, true, layout::inner},
               {"tokens", "R", index_types, true, false, layout::contiguous},
               {"logprob", "R", f32, true, true, layout::contiguous},
               {"entropy", "R", f32, true, true, layout::contiguous}};
    op.takes_workspace = true;
    op.call = [](const views_t& v, const options& o, gcpo::workspace ws) {
      return gcpo::host::generation_step(v[0], v[1], v[2], v[3], v[4], o.samp, ws);
    };
    op.extra = [present](const views_t& v, const symbols& s, const options& o, std::string& why) {
      if (s.V < 1 || s.V >= (std::int64_t{1} << 31)) return why = "V", false;
      if (present(v[1]) && v[1].type != v[0].type) return why = "uncond dtype", false;
      const auto& p = o.samp;
      if (!finite(p.cfg_scale) || !(p.temperature > 0.0f && finite(p.temperature)) || p.top_k < 0 ||
          !(p.top_p > 0.0f && p.top_p <= 1.0f))
        return why = "sampling options", false;
      return true;
    };
    op.workspace_bytes = [](const symbols& s) {
      const i128 rv = static_cast<i128>(s.R < 1 ? 1 : s.R) * s.V;
      return carved({rv * 4, rv * 4});
    };
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "count_nonfinite";
    op.args = {{"x", "*", floating, false, false, layout::positive}, {"count", "1", i64, true, false, layout::contiguous}};
    op.call = [](const views_t& v, const options&, gcpo::workspace) { return gcpo::host::count_nonfinite(v[0], v[1]); };
    op.extra = always;
    ops.push_back(op);
  }
  {
    fuzz_op op;
    op.name = "check_finite";
    op.args = {{"x", "*", floating, false, false, layout::positive}};
    op.call = [](const views_t& v, const options&, gcpo::workspace) { return gcpo::host::check_finite(v[0], "x"); };
    op.extra = always;
    ops.push_back(op);
  }
  return ops;
}

// --- the generator -------------------------------------------------------------------------

/// The test's buffer: guard, arena, guard; 256-byte aligned arena.
struct buffer {
  std::vector<unsigned char> bytes;
  unsigned char* arena;
  buffer() : bytes(arena_bytes + 2 * guard_bytes + 256) {
    const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(bytes.data()) + guard_bytes;
    arena = reinterpret_cast<unsigned char*>((p + 255) / 256 * 256);
  }
  std::uintptr_t lo() const { return reinterpret_cast<std::uintptr_t>(arena); }
  std::uintptr_t hi() const { return lo() + arena_bytes; }
};

/// Lowest and highest element offsets (in elements), 128-bit.
void offsets(const gcpo::tensor_view& v, i128& lo, i128& hi) {
  lo = hi = 0;
  for (int d = 0; d < v.rank; ++d) {
    const i128 reach = static_cast<i128>(v.shape[d] - 1) * v.strides[d];
    (reach < 0 ? lo : hi) += reach;
  }
}

/// Number of elements in 128 bits (-1: malformed or negative extent).
i128 count128(const gcpo::tensor_view& v) {
  if (v.rank < 1 || v.rank > 4) return -1;
  i128 n = 1;
  for (int d = 0; d < v.rank; ++d) {
    if (v.shape[d] < 0) return -1;
    const i128 cap = static_cast<i128>(1) << 100;  // saturate: only "too many" matters
    if (v.shape[d] != 0 && n > cap / v.shape[d]) n = cap;
    else n *= v.shape[d];
  }
  return n;
}

class generator {
 public:
  explicit generator(std::uint64_t seed) : rng_(seed) {}

  std::int64_t uniform(std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p; }
  template <class T>
  T pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(v.size()) - 1))];
  }

  symbols draw_symbols() {
    symbols s;
    const std::int64_t G = pick<std::int64_t>({1, 2, 2, 3, 4});
    s.G = G;
    s.R = chance(0.1) ? uniform(0, 5) : G * uniform(0, 3);
    const std::int64_t side = uniform(0, 4);
    s.N = chance(0.7) ? side * side : uniform(0, 12);
    s.V = chance(0.05) ? 0 : uniform(1, 12);
    s.D = uniform(0, 4);
    return s;
  }

  /// Clean draws: every view well formed (only placement and options may break the call).
  void set_clean(bool clean) { clean_ = clean; }
  bool clean() const { return clean_; }
  /// A corruption of probability p (a tenth of it in a clean draw).
  bool corrupt(double p) { return chance(clean_ ? p * 0.1 : p); }

  float some_float(float valid) {
    if (!corrupt(0.12)) return valid;
    return pick<float>({nan_f, inf_f, -inf_f, -1.0f, 0.0f, 1.0f, 2.5f, -0.0f, 1e30f});
  }
  double some_fraction(double valid) {
    if (!corrupt(0.08)) return valid;
    return pick<double>({std::nan(""), inf_d, -inf_d, -0.1, 1.1, 0.0, 1.0, 0.5});
  }

  options draw_options(const symbols& s) {
    options o;
    o.ts.temperature = some_float(pick<float>({1.0f, 0.7f, 1.3f}));
    o.sim.group = corrupt(0.1) ? pick<std::int64_t>({-1, 0, 1, 3, 2048}) : chance(0.8) ? s.G : pick<std::int64_t>({2, 3, 4});
    o.sim.eps = some_float(1e-8f);
    // grid: mostly a factorisation of N or {0, 0}; sometimes hostile.
    if (corrupt(0.1)) {
      const std::int64_t big = std::int64_t{1} << 62;
      o.sel.grid = pick<gcpo::grid_shape>({{big + 1, 4}, {std::int64_t{1} << 32, std::int64_t{1} << 32}, {-2, -2}, {0, 3},
                                           {3, 0}, {big, big}, {1, 1}, {2, 3}});
    } else if (chance(0.5) && s.N > 0) {
      std::vector<gcpo::grid_shape> f;
      for (std::int64_t h = 1; h <= s.N; ++h)
        if (s.N % h == 0) f.push_back({h, s.N / h});
      o.sel.grid = pick(f);
    }
    const double fr[] = {0.1, 0.25, 0.5, 0.0, 1.0};
    o.sel.initial_frac = some_fraction(fr[uniform(0, 4)]);
    o.sel.gradient_frac = some_fraction(fr[uniform(0, 4)]);
    o.sel.similarity_frac = some_fraction(fr[uniform(0, 4)]);
    o.sel.window_start_frac = some_fraction(chance(0.5) ? 0.1 : fr[uniform(0, 4)]);
    o.sel.window_frac = some_fraction(chance(0.5) ? 0.8 : fr[uniform(0, 4)]);
    o.adv.group = corrupt(0.1) ? pick<std::int64_t>({-3, 0, 1, 5}) : chance(0.8) ? s.G : pick<std::int64_t>({1, 2, 3, 4});
    o.adv.std = static_cast<gcpo::advantage_std>(corrupt(0.05) ? pick<int>({3, 7, -1}) : static_cast<int>(uniform(0, 2)));
    o.adv.eps = some_float(1e-4f);
    o.w.clip = some_float(0.5f);
    o.loss.algo = static_cast<gcpo::algorithm>(corrupt(0.05) ? pick<int>({2, 5}) : static_cast<int>(uniform(0, 1)));
    o.loss.clipping = static_cast<gcpo::ratio_clipping>(corrupt(0.05) ? pick<int>({2, -1}) : static_cast<int>(uniform(0, 1)));
    o.loss.aggregation =
        static_cast<gcpo::loss_aggregation>(corrupt(0.05) ? pick<int>({4, 9}) : static_cast<int>(uniform(0, 3)));
    o.loss.eps_low = some_float(0.2f);
    o.loss.eps_high = some_float(0.28f);
    o.loss.beta = some_float(0.01f);
    o.loss.weight_clip = some_float(0.5f);
    o.loss.detach_weight = chance(0.5);
    o.loss.max_tokens = some_fraction(pick<double>({0.0, 3.0, 10.0}));
    o.loss.denominator = some_fraction(pick<double>({1.0, 7.5}));
    o.samp.cfg_scale = some_float(pick<float>({1.0f, 3.0f}));
    o.samp.temperature = some_float(pick<float>({1.0f, 0.8f}));
    o.samp.top_k = corrupt(0.05) ? -1 : uniform(0, 6);
    o.samp.top_p = some_float(pick<float>({1.0f, 0.9f, 0.5f}));
    o.samp.seed = static_cast<std::uint64_t>(uniform(0, 1000));
    o.samp.step = static_cast<std::uint64_t>(uniform(0, 1000));
    return o;
  }

  /// A view for `a` with extents from `s` (sometimes off by one), an allowed dtype (sometimes
  /// not), and a layout: contiguous, dense in another order with gaps, or random strides;
  /// placed in the arena (near another view's data a quarter of the time). Sometimes hostile.
  gcpo::tensor_view draw_view(const arg& a, const symbols& s, const buffer& buf, const views_t& placed, int force = 0) {
    gcpo::tensor_view v;
    if (force < 0 || (a.optional && force == 0 && chance(0.45))) return v;
    // extents
    std::vector<std::int64_t> shape;
    if (a.dims == "*") {
      const int r = static_cast<int>(uniform(1, 4));
      for (int d = 0; d < r; ++d) shape.push_back(uniform(0, 5));
    } else {
      for (char c : a.dims) shape.push_back(c == '1' ? 1 : c == 'S' ? static_cast<std::int64_t>(gcpo::loss_stat_count) : s.value(c));
    }
    if (corrupt(0.04)) shape[static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(shape.size()) - 1))] += chance(0.5) ? 1 : -1;
    if (corrupt(0.02)) shape.push_back(2);  // one rank too many
    v.rank = static_cast<int>(std::min<std::size_t>(shape.size(), 4));
    for (int d = 0; d < v.rank; ++d) v.shape[d] = shape[static_cast<std::size_t>(d)];
    v.type = corrupt(0.04) ? static_cast<dtype>(uniform(0, 5)) : pick(a.types);
    // strides: in a clean draw row-major, or (where the operator allows strides) dense in
    // another order with the last dimension innermost
    int kind = static_cast<int>(uniform(0, 10));
    if (clean_) kind = a.lay == layout::contiguous ? 0 : pick<int>({0, 0, 0, 6, 6, 10});
    if (kind < 6 || kind == 10) {  // row-major
      std::int64_t st = 1;
      for (int d = v.rank - 1; d >= 0; --d) {
        v.strides[d] = st;
        st *= std::max<std::int64_t>(v.shape[d], 0);
      }
      if (kind == 10 && v.rank >= 2) {  // squeezed: an outer stride below the row-major one (elements collide)
        const int d = static_cast<int>(uniform(0, v.rank - 2));
        if (v.strides[d] > 1) v.strides[d] = uniform(1, v.strides[d] - 1);
      }
    } else if (kind < 8) {  // dense in a random dimension order with gaps, last dim sometimes contiguous
      std::vector<int> order(static_cast<std::size_t>(v.rank));
      for (int d = 0; d < v.rank; ++d) order[static_cast<std::size_t>(d)] = d;
      std::shuffle(order.begin(), order.end(), rng_);
      if (clean_ || chance(0.6)) {  // keep the last dimension innermost
        order.erase(std::find(order.begin(), order.end(), v.rank - 1));
        order.push_back(v.rank - 1);
      }
      std::int64_t st = 1;
      for (int k = v.rank - 1; k >= 0; --k) {
        const int d = order[static_cast<std::size_t>(k)];
        v.strides[d] = st;
        st = st * std::max<std::int64_t>(v.shape[d], 1) + uniform(0, 2);
      }
    } else {  // random strides: negative, zero, interleaved
      for (int d = 0; d < v.rank; ++d) v.strides[d] = uniform(-6, 9);
      if (chance(0.5)) v.strides[v.rank - 1] = 1;
    }
    // placement: keep every element inside the arena
    i128 lo = 0, hi = 0;
    const i128 n = count128(v);
    const std::int64_t size = gcpo::dtype_size(v.type);
    if (n > 0) {
      offsets(v, lo, hi);
      const i128 first = -lo * size, last = (hi + 1) * size;  // bytes below and above data
      const i128 room = static_cast<i128>(arena_bytes) - first - last;
      if (room < 0) return draw_view(a, s, buf, placed, force);  // too large for the arena: draw again
      std::int64_t at = uniform(0, static_cast<std::int64_t>(room) / size) * size;
      if (!placed.empty() && chance(clean_ ? 0.05 : 0.25)) {  // near another view
        const gcpo::tensor_view& o = placed[static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(placed.size()) - 1))];
        if (o.data != nullptr) {
          const std::int64_t there = static_cast<std::int64_t>(static_cast<unsigned char*>(o.data) - buf.arena) - static_cast<std::int64_t>(first) +
                                     (chance(0.5) ? 0 : uniform(-8, 8) * size);
          if (there >= 0 && there <= room) at = there;
        }
      }
      v.data = buf.arena + first + at;
    } else {
      v.data = chance(0.5) ? nullptr : buf.arena;
      if (v.data == nullptr && v.rank == 0) v.rank = 1;
    }
    // hostile variants (never acceptable)
    if (corrupt(0.05)) {
      switch (uniform(0, 8)) {
        case 0: v.data = nullptr; break;
        case 1: v.shape[0] = -uniform(1, 3); break;
        case 2:  // extents whose product overflows int64 (rank 1: a span that does)
          for (int d = 0; d < v.rank; ++d) v.shape[d] = std::int64_t{1} << 32;
          if (v.rank == 1) {
            v.shape[0] = 4;
            v.strides[0] = std::numeric_limits<std::int64_t>::max() / 2;
          }
          break;
        case 3:  // a stride whose reach overflows int64 (on an extent of at least 3)
          v.shape[0] = std::max<std::int64_t>(v.shape[0], 3);
          v.strides[0] = std::numeric_limits<std::int64_t>::max() / uniform(1, 2);
          break;
        case 4: v.type = static_cast<dtype>(uniform(6, 255)); break;
        case 5: v.space = static_cast<memory_space>(uniform(2, 255)); break;
        case 6: v.rank = gcpo::malformed_rank; break;
        case 7: v.data = reinterpret_cast<void*>(std::numeric_limits<std::uintptr_t>::max()); break;  // wraps
        default: v.space = memory_space::device; break;
      }
    }
    return v;
  }

  /// A workspace: mostly its size, sometimes smaller, at a random place (possibly over views).
  gcpo::workspace draw_workspace(std::size_t need, const buffer& buf, const views_t& placed) {
    gcpo::workspace ws;
    if (corrupt(0.03)) return ws;
    std::size_t bytes = need;
    if (corrupt(0.05) && need > 0) bytes = need - static_cast<std::size_t>(uniform(1, static_cast<std::int64_t>(std::min<std::size_t>(need, 300))));
    if (bytes > arena_bytes) bytes = arena_bytes;
    std::int64_t at = uniform(0, static_cast<std::int64_t>(arena_bytes - bytes));
    if (!placed.empty() && chance(clean_ ? 0.05 : 0.3)) {
      const gcpo::tensor_view& o = placed[static_cast<std::size_t>(uniform(0, static_cast<std::int64_t>(placed.size()) - 1))];
      if (o.data != nullptr && o.rank > 0 && o.rank <= 4) {
        const std::int64_t there = static_cast<std::int64_t>(static_cast<unsigned char*>(o.data) - buf.arena) + uniform(-300, 64);
        if (there >= 0 && there + static_cast<std::int64_t>(bytes) <= static_cast<std::int64_t>(arena_bytes)) at = there;
      }
    }
    ws.data = buf.arena + at;
    ws.bytes = bytes;
    ws.space = corrupt(0.03) ? memory_space::device : memory_space::host;
    return ws;
  }

  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
  bool clean_ = false;
};

/// Element byte offsets (relative to the arena) of a small validated view, row-major.
std::vector<std::int64_t> element_bytes(const gcpo::tensor_view& v, const buffer& buf) {
  std::vector<std::int64_t> out;
  const i128 n = count128(v);
  if (n <= 0) return out;
  std::int64_t idx[4] = {};
  const std::int64_t base = static_cast<std::int64_t>(static_cast<unsigned char*>(v.data) - buf.arena);
  const std::int64_t size = gcpo::dtype_size(v.type);
  for (i128 i = 0; i < n; ++i) {
    std::int64_t off = 0;
    for (int d = 0; d < v.rank; ++d) off += idx[d] * v.strides[d];
    out.push_back(base + off * size);
    for (int d = v.rank - 1; d >= 0; --d) {
      if (++idx[d] < v.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/// Fills an input view's elements with valid values of its dtype (ids in [0, V), masks 0/1).
void fill(const gcpo::tensor_view& v, const buffer& buf, generator& g, std::int64_t V) {
  for (std::int64_t b : element_bytes(v, buf)) {
    unsigned char* p = buf.arena + b;
    switch (v.type) {
      case dtype::float32: {
        const float x = static_cast<float>(g.uniform(-300, 300)) / 100.0f;
        std::memcpy(p, &x, 4);
        break;
      }
      case dtype::bfloat16:
      case dtype::float16: {
        const float x = static_cast<float>(g.uniform(-300, 300)) / 100.0f;
        const std::uint16_t h = v.type == dtype::bfloat16 ? gcpo::bfloat16::from_float(x).bits : gcpo::float16::from_float(x).bits;
        std::memcpy(p, &h, 2);
        break;
      }
      case dtype::int32: {
        const std::int32_t x = static_cast<std::int32_t>(g.uniform(0, std::max<std::int64_t>(V, 1) - 1));
        std::memcpy(p, &x, 4);
        break;
      }
      case dtype::int64: {
        const std::int64_t x = g.uniform(0, std::max<std::int64_t>(V, 1) - 1);
        std::memcpy(p, &x, 8);
        break;
      }
      default: *p = static_cast<unsigned char>(g.uniform(0, 1)); break;
    }
  }
}

/// The brute-force precondition check of an accepted call; returns "" or what is broken.
std::string check_accepted(const fuzz_op& op, const views_t& v, const options& o, const gcpo::workspace& ws,
                           const buffer& buf, symbols& s) {
  // per view: rank, dtype, space, extents, count, bounds, layout; bind the symbols
  for (std::size_t i = 0; i < op.args.size(); ++i) {
    const arg& a = op.args[i];
    const gcpo::tensor_view& x = v[i];
    if (x.absent()) {
      if (!a.optional) return a.name + " absent but required";
      continue;
    }
    if (a.dims != "*" && x.rank != static_cast<int>(a.dims.size())) return a.name + ": rank";
    if (x.rank < 1 || x.rank > 4) return a.name + ": rank outside 1..4";
    if (std::find(a.types.begin(), a.types.end(), x.type) == a.types.end()) return a.name + ": dtype";
    if (x.space != memory_space::host) return a.name + ": memory space";
    const i128 n = count128(x);
    if (n < 0) return a.name + ": negative extent";
    if (n > std::numeric_limits<std::int64_t>::max()) return a.name + ": element count beyond int64";
    if (a.dims != "*")
      for (int d = 0; d < x.rank; ++d) {
        const char c = a.dims[static_cast<std::size_t>(d)];
        const std::int64_t want = c == '1' ? 1 : c == 'S' ? static_cast<std::int64_t>(gcpo::loss_stat_count) : -2;
        if (want != -2) {
          if (x.shape[d] != want) return a.name + ": fixed extent";
          continue;
        }
        std::int64_t* sym = s.of(c);
        if (*sym < 0) *sym = x.shape[d];
        else if (*sym != x.shape[d]) return a.name + ": extent disagrees with " + std::string(1, c);
      }
    if (n == 0) continue;
    if (x.data == nullptr) return a.name + ": null data";
    if (reinterpret_cast<std::uintptr_t>(x.data) % static_cast<std::uintptr_t>(gcpo::dtype_size(x.type)) != 0)
      return a.name + ": data not aligned to the element size";
    i128 lo, hi;
    offsets(x, lo, hi);
    const i128 size = gcpo::dtype_size(x.type);
    const i128 p = static_cast<i128>(reinterpret_cast<std::uintptr_t>(x.data));
    if (p + lo * size < static_cast<i128>(buf.lo()) || p + (hi + 1) * size > static_cast<i128>(buf.hi()))
      return a.name + ": elements outside the buffer";
    const std::vector<std::int64_t> bytes = element_bytes(x, buf);
    if (a.lay == layout::contiguous) {
      for (std::size_t k = 0; k < bytes.size(); ++k)
        if (bytes[k] != bytes[0] + static_cast<std::int64_t>(k) * static_cast<std::int64_t>(size))
          return a.name + ": not row-major contiguous";
    } else {
      for (int d = 0; d < x.rank; ++d)
        if (x.shape[d] > 1 && x.strides[d] <= 0) return a.name + ": stride not positive";
      if (a.lay == layout::inner && x.shape[x.rank - 1] > 1 && x.strides[x.rank - 1] != 1)
        return a.name + ": last dimension not contiguous";
    }
  }
  std::string why;
  if (!op.extra(v, s, o, why)) return "precondition: " + why;
  // byte sets: outputs must not overlap themselves or any other view (bar exact in-place aliases)
  std::vector<std::vector<std::pair<std::int64_t, std::int64_t>>> spans(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i].absent()) continue;
    const std::int64_t size = gcpo::dtype_size(v[i].type);
    for (std::int64_t b : element_bytes(v[i], buf)) spans[i].push_back({b, b + size});
    std::sort(spans[i].begin(), spans[i].end());
  }
  auto share_a_byte = [](const std::vector<std::pair<std::int64_t, std::int64_t>>& a,
                         const std::vector<std::pair<std::int64_t, std::int64_t>>& b) {
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
      if (a[i].second <= b[j].first) ++i;
      else if (b[j].second <= a[i].first) ++j;
      else return true;
    }
    return false;
  };
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!op.args[i].output || spans[i].empty()) continue;
    for (std::size_t k = 1; k < spans[i].size(); ++k)
      if (spans[i][k].first < spans[i][k - 1].second) return op.args[i].name + " overlaps itself";
    for (std::size_t j = 0; j < v.size(); ++j) {
      if (j == i || spans[j].empty() || !share_a_byte(spans[i], spans[j])) continue;
      bool exact = false;
      for (auto pr : op.in_place)
        if (pr.first == static_cast<int>(i) && pr.second == static_cast<int>(j)) {
          exact = v[i].data == v[j].data && v[i].type == v[j].type && v[i].rank == v[j].rank;
          for (int d = 0; exact && d < v[i].rank; ++d)
            exact = v[i].shape[d] == v[j].shape[d] && (v[i].shape[d] <= 1 || v[i].strides[d] == v[j].strides[d]);
        }
      if (!exact) return op.args[i].name + " overlaps " + op.args[j].name;
    }
  }
  if (op.takes_workspace) {
    const i128 need = op.workspace_bytes(s);
    if (need > 0) {
      if (ws.data == nullptr || ws.space != memory_space::host || static_cast<i128>(ws.bytes) < need)
        return "workspace too small, absent or not host memory";
      const std::int64_t w0 = static_cast<std::int64_t>(static_cast<unsigned char*>(ws.data) - buf.arena);
      const std::vector<std::pair<std::int64_t, std::int64_t>> wspan = {{w0, w0 + static_cast<std::int64_t>(need)}};
      for (std::size_t j = 0; j < v.size(); ++j)
        if (!spans[j].empty() && share_a_byte(wspan, spans[j])) return "workspace overlaps " + op.args[j].name;
    }
  }
  return "";
}

}  // namespace

TEST_CASE("fuzz: random views and options at every operator's validation, accepted calls meet their preconditions",
          "[fuzz]") {
  const std::uint64_t seed = 0x6763706f2d38ull;  // fixed: the run is reproducible
  constexpr int iterations = 10000;
  INFO("seed " << seed);
  generator g(seed);
  buffer buf;
  std::vector<fuzz_op> ops = make_ops();
  std::vector<int> accepted(ops.size(), 0), rejected(ops.size(), 0);
  std::vector<unsigned char> before;
  int failures = 0;
  for (int it = 0; it < iterations && failures < 5; ++it) {
    const std::size_t k = static_cast<std::size_t>(it) % ops.size();
    const fuzz_op& op = ops[k];
    g.set_clean(g.chance(0.5));
    const symbols drawn = g.draw_symbols();
    const options o = g.draw_options(drawn);
    std::memset(buf.bytes.data(), poison, buf.bytes.size());
    views_t v;
    std::vector<int> force(op.args.size(), 0);  // clean draws: exactly one of each `one_of` group
    if (g.clean() && !op.one_of.empty()) {
      const std::size_t chosen = static_cast<std::size_t>(g.uniform(0, static_cast<std::int64_t>(op.one_of.size()) - 1));
      for (std::size_t q = 0; q < op.one_of.size(); ++q)
        for (int i : op.one_of[q]) force[static_cast<std::size_t>(i)] = q == chosen ? 1 : -1;
    }
    for (std::size_t i = 0; i < op.args.size(); ++i) v.push_back(g.draw_view(op.args[i], drawn, buf, v, force[i]));
    for (std::size_t i = 0; i < v.size(); ++i)  // inputs get valid values (where the view is one)
      if (!op.args[i].output && v[i].present() && v[i].rank >= 1 && v[i].rank <= 4 && v[i].space == memory_space::host &&
          static_cast<int>(v[i].type) <= 5 && count128(v[i]) > 0 && count128(v[i]) < 100000 && v[i].data != nullptr) {
        i128 lo, hi;
        offsets(v[i], lo, hi);
        const i128 p = static_cast<i128>(reinterpret_cast<std::uintptr_t>(v[i].data));
        const i128 size = gcpo::dtype_size(v[i].type);
        if (p + lo * size >= static_cast<i128>(buf.lo()) && p + (hi + 1) * size <= static_cast<i128>(buf.hi()))
          fill(v[i], buf, g, drawn.V);
      }
    gcpo::workspace ws;
    if (op.takes_workspace) {
      const std::size_t need = op.name == "generation_step"
                                   ? gcpo::generation_step_workspace_bytes(drawn.R, drawn.V)
                                   : gcpo::select_critical_tokens_workspace_bytes(drawn.R, drawn.N);
      ws = g.draw_workspace(need, buf, v);
    }
    before = buf.bytes;
    const gcpo::status st = op.call(v, o, ws);
    if (!st.ok()) {
      ++rejected[k];
      // A rejection names something in back-quotes.
      if (std::string(st.message()).find('`') == std::string::npos) {
        INFO("iteration " << it << ", " << op.name << ": message without a name: " << st.message());
        CHECK(false);
        ++failures;
      }
      // Nothing may be written before validation fails... except by operators that validate
      // data while writing: none of the host twins writes before its checks of views and options;
      // a data-dependent error (a token id out of range) is reported before any output is written.
      // (token_stats writes row by row and reports an out-of-range token id where it meets it:
      // on failure its outputs are unspecified, as documented.)
      if (buf.bytes != before && std::string(st.message()).find("must be in [0, V =") == std::string::npos) {
        INFO("iteration " << it << ", " << op.name << " wrote memory and then failed: " << st.message());
        CHECK(false);
        ++failures;
      }
      continue;
    }
    ++accepted[k];
    symbols bound;
    const std::string broken = check_accepted(op, v, o, ws, buf, bound);
    if (!broken.empty()) {
      INFO("iteration " << it << ", " << op.name << " accepted a call that breaks: " << broken);
      CHECK(false);
      ++failures;
      continue;
    }
    // Writes only inside the outputs and the workspace's bytes; masks 0/1, tokens in [0, V).
    std::vector<char> may_write(buf.bytes.size(), 0);
    const std::int64_t arena_at = static_cast<std::int64_t>(buf.arena - buf.bytes.data());
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!op.args[i].output || v[i].absent()) continue;
      const std::int64_t size = gcpo::dtype_size(v[i].type);
      for (std::int64_t b : element_bytes(v[i], buf)) {
        for (std::int64_t q = 0; q < size; ++q) may_write[static_cast<std::size_t>(arena_at + b + q)] = 1;
        const unsigned char* p = buf.arena + b;
        if (v[i].type == dtype::uint8 && *p > 1) {
          INFO("iteration " << it << ", " << op.name << ": " << op.args[i].name << " holds " << int(*p));
          CHECK(false);
          ++failures;
        }
        if (op.name == "generation_step" && op.args[i].name == "tokens") {
          std::int64_t t = 0;
          if (v[i].type == dtype::int32) {
            std::int32_t t32;
            std::memcpy(&t32, p, 4);
            t = t32;
          } else {
            std::memcpy(&t, p, 8);
          }
          if (t < 0 || t >= bound.V) {
            INFO("iteration " << it << ": generation_step drew token " << t << " of V = " << bound.V);
            CHECK(false);
            ++failures;
          }
        }
      }
    }
    if (op.takes_workspace && ws.data != nullptr) {
      const std::int64_t w0 = static_cast<std::int64_t>(static_cast<unsigned char*>(ws.data) - buf.bytes.data());
      for (std::size_t q = 0; q < ws.bytes; ++q) may_write[static_cast<std::size_t>(w0) + q] = 1;
    }
    for (std::size_t q = 0; q < buf.bytes.size(); ++q)
      if (!may_write[q] && buf.bytes[q] != before[q]) {
        INFO("iteration " << it << ", " << op.name << " wrote byte " << q << " outside its outputs and workspace");
        CHECK(false);
        ++failures;
        break;
      }
  }
  // The generator reaches both sides of every operator's validation.
  for (std::size_t k = 0; k < ops.size(); ++k) {
    INFO(ops[k].name << ": " << accepted[k] << " accepted, " << rejected[k] << " rejected");
    CHECK(accepted[k] >= 10);
    CHECK(rejected[k] >= 20);
  }
  CHECK(failures == 0);
}
