// python/csrc/gcpo_ops.cpp - the PyTorch extension: gcpo's operators as torch.ops.gcpo.*.
//
// Every operator is registered once (TORCH_LIBRARY) with a CPU kernel calling the host twin and,
// when the extension is built with gcpo::cuda (GCPO_TORCH_WITH_CUDA), a CUDA kernel calling the
// CUDA twin on PyTorch's current stream (legacy default stream when the libtorch it is built
// against has no CUDA), with its workspace from PyTorch's allocator (the caching allocator on
// CUDA). Tensors go to gcpo as views (pointer, shape, strides): nothing is copied or made
// contiguous here; gcpo's validation names any argument whose layout, dtype or shape it cannot
// take, and that message is raised (ValueError for bad arguments, RuntimeError otherwise).
// Autograd is in the Python package (python/gcpo/__init__.py), which calls the backward ops.
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <gcpo/gcpo.hpp>

#if defined(GCPO_TORCH_WITH_CUDA)
#include <gcpo/cuda.hpp>
#if defined(GCPO_TORCH_CUDA_STREAM)
#include <c10/cuda/CUDAStream.h>
#endif
#endif

namespace {

using at::Tensor;

// ---- tensors as gcpo views ------------------------------------------------------------------

gcpo::dtype dtype_of(const Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return gcpo::dtype::float32;
    case at::kBFloat16: return gcpo::dtype::bfloat16;
    case at::kHalf: return gcpo::dtype::float16;
    case at::kInt: return gcpo::dtype::int32;
    case at::kLong: return gcpo::dtype::int64;
    case at::kByte: return gcpo::dtype::uint8;
    case at::kBool: return gcpo::dtype::uint8;  // one byte, 0 or 1: read as a uint8 mask
    default:
      TORCH_CHECK_VALUE(false, "gcpo: `", name, "` has dtype ", c10::toString(t.scalar_type()),
                        ", which gcpo does not take (gcpo dtypes: float32, bfloat16, float16, int32, int64, uint8/bool)");
  }
  return gcpo::dtype::float32;  // unreachable
}

template <class View, class Ptr>
View view_of(Ptr data, const Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.dim() >= 1 && t.dim() <= gcpo::max_rank, "gcpo: `", name, "` has ", t.dim(),
                    " dimensions; gcpo views have 1 to ", gcpo::max_rank);
  View v;
  v.data = data;
  v.type = dtype_of(t, name);
  v.space = t.is_cuda() ? gcpo::memory_space::device : gcpo::memory_space::host;
  v.rank = static_cast<int>(t.dim());
  for (int i = 0; i < v.rank; ++i) {
    v.shape[i] = t.size(i);
    v.strides[i] = t.stride(i);
  }
  return v;
}

gcpo::const_tensor_view in(const Tensor& t, const char* name) {
  if (!t.defined()) return {};
  return view_of<gcpo::const_tensor_view>(static_cast<const void*>(t.data_ptr()), t, name);
}

gcpo::tensor_view out(const Tensor& t, const char* name) {
  return view_of<gcpo::tensor_view>(t.data_ptr(), t, name);
}

/// Raises gcpo's message for a status that is not ok: ValueError for a bad argument.
void check(const gcpo::status& s, const char* op) {
  if (s.ok()) return;
  const gcpo::status_code c = s.code();
  const bool bad_argument = c == gcpo::status_code::invalid_argument || c == gcpo::status_code::unsupported_dtype ||
                            c == gcpo::status_code::wrong_memory_space || c == gcpo::status_code::aliasing;
  TORCH_CHECK_VALUE(!bad_argument, "gcpo.", op, ": ", gcpo::to_string(c), ": ", s.message());
  TORCH_CHECK(false, "gcpo.", op, ": ", gcpo::to_string(c), ": ", s.message());
}

/// Every tensor is defined-or-optional and on the device of the first one, named in the message.
void check_same_device(const char* op, std::initializer_list<std::pair<const Tensor*, const char*>> tensors) {
  const Tensor* first = nullptr;
  const char* first_name = nullptr;
  for (const auto& p : tensors) {
    if (!p.first->defined()) continue;
    if (!first) {
      first = p.first;
      first_name = p.second;
      continue;
    }
    TORCH_CHECK_VALUE(p.first->device() == first->device(), "gcpo.", op, ": `", p.second, "` is on ",
                      p.first->device(), " but `", first_name, "` is on ", first->device());
  }
}

at::TensorOptions float_on(const Tensor& like) { return at::TensorOptions().dtype(at::kFloat).device(like.device()); }

/// Scratch bytes on the device of `like` (PyTorch's allocator: the caching allocator on CUDA).
struct Scratch {
  Tensor buffer;
  gcpo::workspace ws;
  Scratch(std::size_t bytes, const Tensor& like) {
    TORCH_CHECK(bytes != SIZE_MAX, "gcpo: workspace size overflows size_t");
    buffer = at::empty({static_cast<std::int64_t>(bytes > 0 ? bytes : 1)},
                       at::TensorOptions().dtype(at::kByte).device(like.device()));
    ws.data = buffer.data_ptr();
    ws.bytes = bytes;
    ws.space = like.is_cuda() ? gcpo::memory_space::device : gcpo::memory_space::host;
  }
};

#if defined(GCPO_TORCH_WITH_CUDA)
cudaStream_t stream_of(const Tensor& t) {
#if defined(GCPO_TORCH_CUDA_STREAM)
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
#else
  // A libtorch without CUDA cannot hold CUDA tensors; this path only keeps the build honest.
  (void)t;
  return nullptr;
#endif
}
#endif

/// Which twin runs: host for CPU tensors, CUDA for CUDA tensors.
enum class twin { host, cuda };

// ---- options from their Python spellings -------------------------------------------------

gcpo::advantage_std advantage_std_of(const std::string& s) {
  if (s == "unbiased") return gcpo::advantage_std::unbiased;
  if (s == "biased") return gcpo::advantage_std::biased;
  if (s == "none") return gcpo::advantage_std::none;
  TORCH_CHECK_VALUE(false, "gcpo.group_advantages: `std` must be 'unbiased', 'biased' or 'none', got '", s, "'");
  return {};
}

gcpo::loss_options loss_options_of(const std::string& algo, const std::string& clipping, double eps_low,
                                   double eps_high, double beta, double weight_clip, bool detach_weight,
                                   const std::string& aggregation, double max_tokens, double denominator) {
  gcpo::loss_options o;
  if (algo == "gcpo") o.algo = gcpo::algorithm::gcpo;
  else if (algo == "grpo") o.algo = gcpo::algorithm::grpo;
  else TORCH_CHECK_VALUE(false, "gcpo.gcpo_loss: `algo` must be 'gcpo' or 'grpo', got '", algo, "'");
  if (clipping == "none") o.clipping = gcpo::ratio_clipping::none;
  else if (clipping == "ppo") o.clipping = gcpo::ratio_clipping::ppo;
  else TORCH_CHECK_VALUE(false, "gcpo.gcpo_loss: `clipping` must be 'none' or 'ppo', got '", clipping, "'");
  if (aggregation == "token_mean") o.aggregation = gcpo::loss_aggregation::token_mean;
  else if (aggregation == "sequence_mean") o.aggregation = gcpo::loss_aggregation::sequence_mean;
  else if (aggregation == "constant") o.aggregation = gcpo::loss_aggregation::constant;
  else if (aggregation == "external") o.aggregation = gcpo::loss_aggregation::external;
  else
    TORCH_CHECK_VALUE(false, "gcpo.gcpo_loss: `aggregation` must be 'token_mean', 'sequence_mean', 'constant' or ",
                      "'external', got '", aggregation, "'");
  o.eps_low = static_cast<float>(eps_low);
  o.eps_high = static_cast<float>(eps_high);
  o.beta = static_cast<float>(beta);
  o.weight_clip = static_cast<float>(weight_clip);
  o.detach_weight = detach_weight;
  o.max_tokens = max_tokens;
  o.denominator = denominator;
  return o;
}

// ---- the operators, written once for both twins -------------------------------------------

template <twin T>
std::tuple<Tensor, Tensor, Tensor> token_stats(const Tensor& logits, const Tensor& tokens, double temperature) {
  check_same_device("token_stats", {{&logits, "logits"}, {&tokens, "tokens"}});
  const c10::DeviceGuard guard(logits.device());
  const auto lv = in(logits, "logits");
  TORCH_CHECK_VALUE(logits.dim() == 3, "gcpo.token_stats: `logits` must be [R, N, V], got ", logits.dim(),
                    " dimensions");
  const std::int64_t R = logits.size(0), N = logits.size(1);
  Tensor entropy = at::empty({R, N}, float_on(logits));
  Tensor logprob = at::empty({R, N}, float_on(logits));
  Tensor lse = at::empty({R, N}, float_on(logits));
  gcpo::token_stats_options o;
  o.temperature = static_cast<float>(temperature);
  if constexpr (T == twin::host) {
    check(gcpo::host::token_stats(lv, in(tokens, "tokens"), out(entropy, "entropy"), out(logprob, "logprob"),
                                  out(lse, "lse"), o),
          "token_stats");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    check(gcpo::cuda::token_stats(lv, in(tokens, "tokens"), out(entropy, "entropy"), out(logprob, "logprob"),
                                  out(lse, "lse"), o, stream_of(logits)),
          "token_stats");
#endif
  }
  return {entropy, logprob, lse};
}

template <twin T>
Tensor token_stats_backward(const Tensor& logits, const Tensor& tokens, const Tensor& lse, const Tensor& grad_logprob,
                            double temperature) {
  check_same_device("token_stats_backward", {{&logits, "logits"}, {&tokens, "tokens"}, {&lse, "lse"},
                                              {&grad_logprob, "grad_logprob"}});
  const c10::DeviceGuard guard(logits.device());
  const auto lv = in(logits, "logits");
  // The gradient in the logits' dtype, laid out as they are when their rows are contiguous.
  Tensor grad_logits = logits.stride(-1) == 1 ? at::empty_like(logits) : at::empty_like(logits, at::MemoryFormat::Contiguous);
  gcpo::token_stats_options o;
  o.temperature = static_cast<float>(temperature);
  if constexpr (T == twin::host) {
    check(gcpo::host::token_stats_backward(lv, in(tokens, "tokens"), in(lse, "lse"), in(grad_logprob, "grad_logprob"),
                                           out(grad_logits, "grad_logits"), o),
          "token_stats_backward");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    check(gcpo::cuda::token_stats_backward(lv, in(tokens, "tokens"), in(lse, "lse"), in(grad_logprob, "grad_logprob"),
                                           out(grad_logits, "grad_logits"), o, stream_of(logits)),
          "token_stats_backward");
#endif
  }
  return grad_logits;
}

template <twin T>
Tensor group_advantages(const Tensor& rewards, std::int64_t group, const std::string& std_kind, double eps) {
  const c10::DeviceGuard guard(rewards.device());
  const auto rv = in(rewards, "rewards");
  TORCH_CHECK_VALUE(rewards.dim() == 1, "gcpo.group_advantages: `rewards` must be [R], got ", rewards.dim(),
                    " dimensions");
  gcpo::advantage_options o;
  o.group = group;
  o.std = advantage_std_of(std_kind);
  o.eps = static_cast<float>(eps);
  Tensor adv = at::empty({rewards.size(0)}, float_on(rewards));
  if constexpr (T == twin::host) {
    check(gcpo::host::group_advantages(rv, out(adv, "advantages"), o), "group_advantages");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    check(gcpo::cuda::group_advantages(rv, out(adv, "advantages"), o, stream_of(rewards)), "group_advantages");
#endif
  }
  return adv;
}

template <twin T>
Tensor group_similarity(const Tensor& embeddings, std::int64_t group, double eps) {
  const c10::DeviceGuard guard(embeddings.device());
  const auto ev = in(embeddings, "embeddings");
  TORCH_CHECK_VALUE(embeddings.dim() == 3, "gcpo.group_similarity: `embeddings` must be [R, N, D], got ",
                    embeddings.dim(), " dimensions");
  gcpo::similarity_options o;
  o.group = group;
  o.eps = static_cast<float>(eps);
  Tensor sim = at::empty({embeddings.size(0), embeddings.size(1)}, float_on(embeddings));
  if constexpr (T == twin::host) {
    check(gcpo::host::group_similarity(ev, out(sim, "similarity"), o), "group_similarity");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    check(gcpo::cuda::group_similarity(ev, out(sim, "similarity"), o, stream_of(embeddings)), "group_similarity");
#endif
  }
  return sim;
}

template <twin T>
Tensor group_similarity_from_tokens(const Tensor& tokens, const Tensor& table, std::int64_t group, double eps) {
  check_same_device("group_similarity_from_tokens", {{&tokens, "tokens"}, {&table, "table"}});
  const c10::DeviceGuard guard(tokens.device());
  const auto tv = in(tokens, "tokens");
  TORCH_CHECK_VALUE(tokens.dim() == 2, "gcpo.group_similarity_from_tokens: `tokens` must be [R, N], got ",
                    tokens.dim(), " dimensions");
  gcpo::similarity_options o;
  o.group = group;
  o.eps = static_cast<float>(eps);
  Tensor sim = at::empty({tokens.size(0), tokens.size(1)}, float_on(tokens));
  if constexpr (T == twin::host) {
    check(gcpo::host::group_similarity_from_tokens(tv, in(table, "table"), out(sim, "similarity"), o),
          "group_similarity_from_tokens");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    check(gcpo::cuda::group_similarity_from_tokens(tv, in(table, "table"), out(sim, "similarity"), o, stream_of(tokens)),
          "group_similarity_from_tokens");
#endif
  }
  return sim;
}

template <twin T>
std::tuple<Tensor, Tensor> select_critical_tokens(const Tensor& entropy, const Tensor& similarity,
                                                  c10::IntArrayRef grid, double initial_frac, double gradient_frac,
                                                  double similarity_frac, double window_start_frac,
                                                  double window_frac) {
  check_same_device("select_critical_tokens", {{&entropy, "entropy"}, {&similarity, "similarity"}});
  const c10::DeviceGuard guard(entropy.device());
  gcpo::selection_inputs si;
  si.entropy = in(entropy, "entropy");
  si.similarity = in(similarity, "similarity");
  TORCH_CHECK_VALUE(entropy.dim() == 2, "gcpo.select_critical_tokens: `entropy` must be [R, N], got ", entropy.dim(),
                    " dimensions");
  TORCH_CHECK_VALUE(grid.empty() || grid.size() == 2, "gcpo.select_critical_tokens: `grid` must be (H, W) or empty");
  gcpo::selection_options o;
  if (grid.size() == 2) o.grid = gcpo::grid_shape{grid[0], grid[1]};
  o.initial_frac = initial_frac;
  o.gradient_frac = gradient_frac;
  o.similarity_frac = similarity_frac;
  o.window_start_frac = window_start_frac;
  o.window_frac = window_frac;
  const std::int64_t R = entropy.size(0), N = entropy.size(1);
  Tensor critical = at::empty({R, N}, at::TensorOptions().dtype(at::kBool).device(entropy.device()));
  Tensor counts = at::empty({R}, at::TensorOptions().dtype(at::kInt).device(entropy.device()));
  gcpo::selection_outputs so;
  so.critical = out(critical, "critical");
  so.counts = out(counts, "counts");
  Scratch scratch(gcpo::select_critical_tokens_workspace_bytes(R, N), entropy);
  if constexpr (T == twin::host) {
    check(gcpo::host::select_critical_tokens(si, so, o, scratch.ws), "select_critical_tokens");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    check(gcpo::cuda::select_critical_tokens(si, so, o, scratch.ws, stream_of(entropy)), "select_critical_tokens");
#endif
  }
  return {critical, counts};
}

gcpo::loss_inputs loss_inputs_of(const Tensor& logp, const Tensor& ref_logp, const c10::optional<Tensor>& old_logp,
                                 const Tensor& advantages, const c10::optional<Tensor>& mask) {
  gcpo::loss_inputs li;
  li.logp = in(logp, "logp");
  li.ref_logp = in(ref_logp, "ref_logp");
  li.old_logp = old_logp.has_value() ? in(*old_logp, "old_logp") : gcpo::const_tensor_view{};
  li.advantages = in(advantages, "advantages");
  li.mask = mask.has_value() ? in(*mask, "mask") : gcpo::const_tensor_view{};
  return li;
}

// The loss's forward; with `with_grad`, also the gradient dL/dlogp for an upstream gradient of 1
// (an absent grad_loss) in the same call: on CUDA one pass over the inputs and two launches, where
// gcpo_loss_forward then gcpo_loss_backward take three. gcpo.gcpo_loss does not use it: its
// backward would have to scale the kept gradient by the upstream one (a third launch, and an
// [R, N] tensor kept from forward to backward), which is what the separate backward costs.
template <twin T>
std::tuple<Tensor, Tensor, Tensor, Tensor> loss_forward(const Tensor& logp, const Tensor& ref_logp,
                                                        const c10::optional<Tensor>& old_logp, const Tensor& advantages,
                                                        const c10::optional<Tensor>& mask, const std::string& algo,
                                                        const std::string& clipping, double eps_low, double eps_high,
                                                        double beta, double weight_clip, bool detach_weight,
                                                        const std::string& aggregation, double max_tokens,
                                                        double denominator, bool with_grad) {
  const Tensor none;
  check_same_device("gcpo_loss", {{&logp, "logp"}, {&ref_logp, "ref_logp"}, {old_logp ? &*old_logp : &none, "old_logp"},
                                  {&advantages, "advantages"}, {mask ? &*mask : &none, "mask"}});
  const c10::DeviceGuard guard(logp.device());
  const gcpo::loss_options o = loss_options_of(algo, clipping, eps_low, eps_high, beta, weight_clip, detach_weight,
                                               aggregation, max_tokens, denominator);
  const gcpo::loss_inputs li = loss_inputs_of(logp, ref_logp, old_logp, advantages, mask);
  TORCH_CHECK_VALUE(logp.dim() == 2, "gcpo.gcpo_loss: `logp` must be [R, N], got ", logp.dim(), " dimensions");
  Tensor stats = at::empty({gcpo::loss_stat_count}, float_on(logp));
  Tensor weight = at::empty({logp.size(0), logp.size(1)}, float_on(logp));
  Tensor kl = at::empty({logp.size(0), logp.size(1)}, float_on(logp));
  Tensor grad_logp = at::empty({with_grad ? logp.size(0) : 0, with_grad ? logp.size(1) : 0}, float_on(logp));
  gcpo::loss_outputs lo;
  lo.stats = out(stats, "stats");
  lo.weight = out(weight, "weight");
  lo.kl = out(kl, "kl");
  if constexpr (T == twin::host) {
    if (with_grad)
      check(gcpo::host::gcpo_loss_forward_backward(li, lo, gcpo::const_tensor_view{}, out(grad_logp, "grad_logp"), o),
            "gcpo_loss");
    else
      check(gcpo::host::gcpo_loss_forward(li, lo, o), "gcpo_loss");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    Scratch scratch(gcpo::gcpo_loss_workspace_bytes(logp.size(0), logp.size(1)), logp);
    if (with_grad)
      check(gcpo::cuda::gcpo_loss_forward_backward(li, lo, gcpo::const_tensor_view{}, out(grad_logp, "grad_logp"), o,
                                                   scratch.ws, stream_of(logp)),
            "gcpo_loss");
    else
      check(gcpo::cuda::gcpo_loss_forward(li, lo, o, scratch.ws, stream_of(logp)), "gcpo_loss");
#endif
  }
  return {stats, weight, kl, grad_logp};
}

#define GCPO_LOSS_FORWARD_PARAMS                                                                                    \
  const Tensor &logp, const Tensor &ref_logp, const c10::optional<Tensor> &old_logp, const Tensor &advantages,      \
      const c10::optional<Tensor> &mask, const std::string &algo, const std::string &clipping, double eps_low,      \
      double eps_high, double beta, double weight_clip, bool detach_weight, const std::string &aggregation,         \
      double max_tokens, double denominator
#define GCPO_LOSS_FORWARD_ARGS                                                                                      \
  logp, ref_logp, old_logp, advantages, mask, algo, clipping, eps_low, eps_high, beta, weight_clip, detach_weight, \
      aggregation, max_tokens, denominator

template <twin T>
std::tuple<Tensor, Tensor, Tensor> gcpo_loss_forward(GCPO_LOSS_FORWARD_PARAMS) {
  const auto r = loss_forward<T>(GCPO_LOSS_FORWARD_ARGS, false);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

template <twin T>
std::tuple<Tensor, Tensor, Tensor, Tensor> gcpo_loss_forward_backward(GCPO_LOSS_FORWARD_PARAMS) {
  return loss_forward<T>(GCPO_LOSS_FORWARD_ARGS, true);
}
#undef GCPO_LOSS_FORWARD_PARAMS
#undef GCPO_LOSS_FORWARD_ARGS

template <twin T>
Tensor gcpo_loss_backward(const Tensor& logp, const Tensor& ref_logp, const c10::optional<Tensor>& old_logp,
                          const Tensor& advantages, const c10::optional<Tensor>& mask, const Tensor& grad_loss,
                          const std::string& algo, const std::string& clipping, double eps_low, double eps_high,
                          double beta, double weight_clip, bool detach_weight, const std::string& aggregation,
                          double max_tokens, double denominator) {
  const Tensor none;
  check_same_device("gcpo_loss_backward",
                    {{&logp, "logp"}, {&ref_logp, "ref_logp"}, {old_logp ? &*old_logp : &none, "old_logp"},
                     {&advantages, "advantages"}, {mask ? &*mask : &none, "mask"}, {&grad_loss, "grad_loss"}});
  const c10::DeviceGuard guard(logp.device());
  const gcpo::loss_options o = loss_options_of(algo, clipping, eps_low, eps_high, beta, weight_clip, detach_weight,
                                               aggregation, max_tokens, denominator);
  const gcpo::loss_inputs li = loss_inputs_of(logp, ref_logp, old_logp, advantages, mask);
  TORCH_CHECK_VALUE(logp.dim() == 2, "gcpo.gcpo_loss_backward: `logp` must be [R, N], got ", logp.dim(), " dimensions");
  Tensor grad_logp = at::empty({logp.size(0), logp.size(1)}, float_on(logp));
  const auto gv = in(grad_loss, "grad_loss");
  if constexpr (T == twin::host) {
    check(gcpo::host::gcpo_loss_backward(li, gv, out(grad_logp, "grad_logp"), o), "gcpo_loss_backward");
  } else {
#if defined(GCPO_TORCH_WITH_CUDA)
    Scratch scratch(gcpo::gcpo_loss_workspace_bytes(logp.size(0), logp.size(1)), logp);
    check(gcpo::cuda::gcpo_loss_backward(li, gv, out(grad_logp, "grad_logp"), o, scratch.ws, stream_of(logp)),
          "gcpo_loss_backward");
#endif
  }
  return grad_logp;
}

bool cuda_enabled() {
#if defined(GCPO_TORCH_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

}  // namespace

TORCH_LIBRARY(gcpo, m) {
  m.def("token_stats(Tensor logits, Tensor tokens, float temperature=1.0) -> (Tensor entropy, Tensor logprob, Tensor lse)");
  m.def("token_stats_backward(Tensor logits, Tensor tokens, Tensor lse, Tensor grad_logprob, float temperature=1.0) -> Tensor");
  m.def("group_advantages(Tensor rewards, int group, str std=\"unbiased\", float eps=0.0001) -> Tensor");
  m.def("group_similarity(Tensor embeddings, int group, float eps=1e-08) -> Tensor");
  m.def("group_similarity_from_tokens(Tensor tokens, Tensor table, int group, float eps=1e-08) -> Tensor");
  m.def("select_critical_tokens(Tensor entropy, Tensor similarity, int[] grid, float initial_frac, "
        "float gradient_frac, float similarity_frac, float window_start_frac, float window_frac) "
        "-> (Tensor critical, Tensor counts)");
  m.def("gcpo_loss_forward(Tensor logp, Tensor ref_logp, Tensor? old_logp, Tensor advantages, Tensor? mask, "
        "str algo, str clipping, float eps_low, float eps_high, float beta, float weight_clip, bool detach_weight, "
        "str aggregation, float max_tokens, float denominator) -> (Tensor stats, Tensor weight, Tensor kl)");
  m.def("gcpo_loss_backward(Tensor logp, Tensor ref_logp, Tensor? old_logp, Tensor advantages, Tensor? mask, "
        "Tensor grad_loss, str algo, str clipping, float eps_low, float eps_high, float beta, float weight_clip, "
        "bool detach_weight, str aggregation, float max_tokens, float denominator) -> Tensor");
  m.def("gcpo_loss_forward_backward(Tensor logp, Tensor ref_logp, Tensor? old_logp, Tensor advantages, Tensor? mask, "
        "str algo, str clipping, float eps_low, float eps_high, float beta, float weight_clip, bool detach_weight, "
        "str aggregation, float max_tokens, float denominator) -> (Tensor stats, Tensor weight, Tensor kl, Tensor grad_logp)");
  m.def("cuda_enabled() -> bool", &cuda_enabled);
}

#define GCPO_REGISTER_TWIN(KEY, T)                                         \
  TORCH_LIBRARY_IMPL(gcpo, KEY, m) {                                       \
    m.impl("token_stats", &token_stats<T>);                                \
    m.impl("token_stats_backward", &token_stats_backward<T>);              \
    m.impl("group_advantages", &group_advantages<T>);                      \
    m.impl("group_similarity", &group_similarity<T>);                      \
    m.impl("group_similarity_from_tokens", &group_similarity_from_tokens<T>); \
    m.impl("select_critical_tokens", &select_critical_tokens<T>);          \
    m.impl("gcpo_loss_forward", &gcpo_loss_forward<T>);                    \
    m.impl("gcpo_loss_backward", &gcpo_loss_backward<T>);                  \
    m.impl("gcpo_loss_forward_backward", &gcpo_loss_forward_backward<T>);  \
  }

GCPO_REGISTER_TWIN(CPU, twin::host)
#if defined(GCPO_TORCH_WITH_CUDA)
GCPO_REGISTER_TWIN(CUDA, twin::cuda)
#endif
