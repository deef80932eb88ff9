// examples/janus/ops.cpp - see ops.hpp.
#include "ops.hpp"

#include <stdexcept>
#include <string>

#if defined(JANUS_WITH_GCPO_CUDA)
#include <gcpo/cuda.hpp>
#endif

namespace janus {
namespace ops {
namespace {

gcpo::dtype dtype_of(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return gcpo::dtype::float32;
    case torch::kBFloat16: return gcpo::dtype::bfloat16;
    case torch::kHalf: return gcpo::dtype::float16;
    case torch::kInt: return gcpo::dtype::int32;
    case torch::kLong: return gcpo::dtype::int64;
    case torch::kByte: return gcpo::dtype::uint8;
    default: throw std::invalid_argument(std::string("gcpo has no dtype for ") + std::string(c10::toString(t.scalar_type())));
  }
}

template <class View, class Ptr>
View make(Ptr data, const torch::Tensor& t) {
  if (t.dim() < 1 || t.dim() > gcpo::max_rank)
    throw std::invalid_argument("a gcpo view needs rank 1.." + std::to_string(gcpo::max_rank) + ", got " +
                                std::to_string(t.dim()));
  View v;
  v.data = data;
  v.type = dtype_of(t);
  v.space = t.is_cuda() ? gcpo::memory_space::device : gcpo::memory_space::host;
  v.rank = static_cast<int>(t.dim());
  for (int i = 0; i < v.rank; ++i) {
    v.shape[i] = t.size(i);
    v.strides[i] = t.stride(i);
  }
  return v;
}

/// Input view of a tensor (undefined tensor: absent view).
gcpo::const_tensor_view in(const torch::Tensor& t) {
  if (!t.defined()) return {};
  return make<gcpo::const_tensor_view>(static_cast<const void*>(t.data_ptr()), t);
}
/// Output view of a tensor.
gcpo::tensor_view out(torch::Tensor& t) {
  if (!t.defined()) return {};
  return make<gcpo::tensor_view>(t.data_ptr(), t);
}

void check(const gcpo::status& s, const char* op) {
  if (!s.ok())
    throw std::runtime_error(std::string("gcpo::") + op + ": " + gcpo::to_string(s.code()) + ": " + s.message());
}

/// Scratch memory on the tensors' device, as a gcpo workspace.
struct Scratch {
  torch::Tensor buffer;
  gcpo::workspace ws;
  Scratch(std::size_t bytes, const torch::Device& device) {
    buffer = torch::empty({static_cast<std::int64_t>(bytes > 0 ? bytes : 1)},
                          torch::TensorOptions().dtype(torch::kByte).device(device));
    ws.data = buffer.data_ptr();
    ws.bytes = bytes;
    ws.space = device.is_cuda() ? gcpo::memory_space::device : gcpo::memory_space::host;
  }
};

bool on_cuda(const torch::Tensor& t) {
  if (!t.is_cuda()) return false;
#if defined(JANUS_WITH_GCPO_CUDA)
  return true;
#else
  throw std::runtime_error("this trainer was built without gcpo::cuda: CUDA tensors cannot go through gcpo");
#endif
}

#if defined(JANUS_WITH_GCPO_CUDA)
// libtorch runs its kernels on the current stream, which this trainer never changes from the
// default (legacy) stream; gcpo's CUDA twins are enqueued on that same stream, so they are
// ordered with torch's work without a synchronisation and without linking c10_cuda.
cudaStream_t torch_stream() { return nullptr; }
#endif

}  // namespace

bool cuda_available() noexcept {
#if defined(JANUS_WITH_GCPO_CUDA)
  return true;
#else
  return false;
#endif
}

void generation_step(const torch::Tensor& logits, bool cfg, const gcpo::sampling_options& opt, torch::Tensor& tokens,
                     torch::Tensor& logprob, torch::Tensor& entropy) {
  TORCH_CHECK(logits.dim() == 2 && logits.stride(1) == 1, "generation_step: logits must be [rows, V], rows contiguous");
  const std::int64_t rows = logits.size(0), V = logits.size(1);
  const std::int64_t R = cfg ? rows / 2 : rows;
  TORCH_CHECK(!cfg || rows % 2 == 0, "generation_step: CFG needs an even number of rows");
  // Conditional rows 0, 2, 4, ... and unconditional rows 1, 3, 5, ... as strided views.
  const torch::Tensor cond = cfg ? logits.slice(0, 0, rows, 2) : logits;
  const torch::Tensor uncond = cfg ? logits.slice(0, 1, rows, 2) : torch::Tensor();
  const std::size_t bytes = gcpo::generation_step_workspace_bytes(R, V);
  Scratch scratch(bytes, logits.device());
  if (on_cuda(logits)) {
#if defined(JANUS_WITH_GCPO_CUDA)
    check(gcpo::cuda::generation_step(in(cond), in(uncond), out(tokens), out(logprob), out(entropy), opt, scratch.ws,
                                      torch_stream()),
          "cuda::generation_step");
#endif
  } else {
    check(gcpo::host::generation_step(in(cond), in(uncond), out(tokens), out(logprob), out(entropy), opt, scratch.ws),
          "host::generation_step");
  }
}

TokenStats token_stats(const torch::Tensor& logits, const torch::Tensor& tokens, float temperature) {
  const auto R = logits.size(0), N = logits.size(1);
  auto fopt = torch::TensorOptions().dtype(torch::kFloat).device(logits.device());
  TokenStats s{torch::empty({R, N}, fopt), torch::empty({R, N}, fopt), torch::empty({R, N}, fopt)};
  gcpo::token_stats_options o;
  o.temperature = temperature;
  const torch::Tensor tok = tokens.contiguous();
  if (on_cuda(logits)) {
#if defined(JANUS_WITH_GCPO_CUDA)
    check(gcpo::cuda::token_stats(in(logits), in(tok), out(s.entropy), out(s.logprob), out(s.lse), o, torch_stream()),
          "cuda::token_stats");
#endif
  } else {
    check(gcpo::host::token_stats(in(logits), in(tok), out(s.entropy), out(s.logprob), out(s.lse), o),
          "host::token_stats");
  }
  return s;
}

torch::Tensor group_similarity_from_tokens(const torch::Tensor& tokens, const torch::Tensor& table, std::int64_t group) {
  torch::Tensor sim = torch::empty({tokens.size(0), tokens.size(1)},
                                   torch::TensorOptions().dtype(torch::kFloat).device(tokens.device()));
  gcpo::similarity_options o;
  o.group = group;
  const torch::Tensor tok = tokens.contiguous();
  const torch::Tensor tab = table.contiguous();
  if (on_cuda(tokens)) {
#if defined(JANUS_WITH_GCPO_CUDA)
    check(gcpo::cuda::group_similarity_from_tokens(in(tok), in(tab), out(sim), o, torch_stream()),
          "cuda::group_similarity_from_tokens");
#endif
  } else {
    check(gcpo::host::group_similarity_from_tokens(in(tok), in(tab), out(sim), o), "host::group_similarity_from_tokens");
  }
  return sim;
}

Selection select_critical_tokens(const torch::Tensor& entropy, const torch::Tensor& similarity,
                                 const gcpo::selection_options& opt) {
  const auto R = entropy.size(0), N = entropy.size(1);
  Selection s;
  s.critical = torch::empty({R, N}, torch::TensorOptions().dtype(torch::kByte).device(entropy.device()));
  s.counts = torch::empty({R}, torch::TensorOptions().dtype(torch::kInt).device(entropy.device()));
  const torch::Tensor ent = entropy.contiguous(), sim = similarity.contiguous();
  gcpo::selection_inputs si;
  si.entropy = in(ent);
  si.similarity = in(sim);
  gcpo::selection_outputs so;
  so.critical = out(s.critical);
  so.counts = out(s.counts);
  Scratch scratch(gcpo::select_critical_tokens_workspace_bytes(R, N), entropy.device());
  if (on_cuda(entropy)) {
#if defined(JANUS_WITH_GCPO_CUDA)
    check(gcpo::cuda::select_critical_tokens(si, so, opt, scratch.ws, torch_stream()), "cuda::select_critical_tokens");
#endif
  } else {
    check(gcpo::host::select_critical_tokens(si, so, opt, scratch.ws), "host::select_critical_tokens");
  }
  return s;
}

torch::Tensor group_advantages(const torch::Tensor& rewards, const gcpo::advantage_options& opt) {
  const torch::Tensor r = rewards.to(torch::kFloat).contiguous();
  torch::Tensor a = torch::empty_like(r);
  if (on_cuda(r)) {
#if defined(JANUS_WITH_GCPO_CUDA)
    check(gcpo::cuda::group_advantages(in(r), out(a), opt, torch_stream()), "cuda::group_advantages");
#endif
  } else {
    check(gcpo::host::group_advantages(in(r), out(a), opt), "host::group_advantages");
  }
  return a;
}

// ------------------------------------------------------------------------------------------
// The loss as a custom autograd function.

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void save_options(AutogradContext* ctx, const gcpo::loss_options& o, float temperature) {
  ctx->saved_data["algo"] = static_cast<std::int64_t>(o.algo);
  ctx->saved_data["clipping"] = static_cast<std::int64_t>(o.clipping);
  ctx->saved_data["eps_low"] = static_cast<double>(o.eps_low);
  ctx->saved_data["eps_high"] = static_cast<double>(o.eps_high);
  ctx->saved_data["beta"] = static_cast<double>(o.beta);
  ctx->saved_data["weight_clip"] = static_cast<double>(o.weight_clip);
  ctx->saved_data["detach_weight"] = o.detach_weight;
  ctx->saved_data["aggregation"] = static_cast<std::int64_t>(o.aggregation);
  ctx->saved_data["max_tokens"] = o.max_tokens;
  ctx->saved_data["denominator"] = o.denominator;
  ctx->saved_data["temperature"] = static_cast<double>(temperature);
}

gcpo::loss_options load_options(AutogradContext* ctx, float& temperature) {
  gcpo::loss_options o;
  o.algo = static_cast<gcpo::algorithm>(ctx->saved_data["algo"].toInt());
  o.clipping = static_cast<gcpo::ratio_clipping>(ctx->saved_data["clipping"].toInt());
  o.eps_low = static_cast<float>(ctx->saved_data["eps_low"].toDouble());
  o.eps_high = static_cast<float>(ctx->saved_data["eps_high"].toDouble());
  o.beta = static_cast<float>(ctx->saved_data["beta"].toDouble());
  o.weight_clip = static_cast<float>(ctx->saved_data["weight_clip"].toDouble());
  o.detach_weight = ctx->saved_data["detach_weight"].toBool();
  o.aggregation = static_cast<gcpo::loss_aggregation>(ctx->saved_data["aggregation"].toInt());
  o.max_tokens = ctx->saved_data["max_tokens"].toDouble();
  o.denominator = ctx->saved_data["denominator"].toDouble();
  temperature = static_cast<float>(ctx->saved_data["temperature"].toDouble());
  return o;
}

gcpo::loss_inputs loss_inputs_of(const torch::Tensor& logp, const torch::Tensor& ref, const torch::Tensor& adv,
                                 const torch::Tensor& mask) {
  gcpo::loss_inputs li;
  li.logp = in(logp);
  li.ref_logp = in(ref);
  li.advantages = in(adv);
  li.mask = in(mask);
  return li;
}

struct GcpoLossFunction : public torch::autograd::Function<GcpoLossFunction> {
  // Inputs: logits [R, N, V] (differentiable), tokens, ref_logp, advantages, mask (uint8
  // [R, N], or empty for "every token": autograd functions take no undefined tensors), options. Outputs: loss (0-d), logprob [R, N], stats [loss_stat_count].
  static variable_list forward(AutogradContext* ctx, torch::Tensor logits, torch::Tensor tokens, torch::Tensor ref_logp,
                               torch::Tensor advantages, torch::Tensor mask, gcpo::loss_options options) {
    const float temperature = 1.0f;
    TokenStats ts = token_stats(logits, tokens, temperature);
    torch::Tensor stats = torch::empty({gcpo::loss_stat_count},
                                       torch::TensorOptions().dtype(torch::kFloat).device(logits.device()));
    gcpo::loss_outputs lo;
    lo.stats = out(stats);
    const gcpo::loss_inputs li = loss_inputs_of(ts.logprob, ref_logp, advantages, mask.numel() ? mask : torch::Tensor());
    // Training (the logits need a gradient): the forward and the loss's gradient dL/dlogp for an
    // upstream gradient of 1 (an absent grad_loss) in one call, on CUDA one pass over the inputs
    // and two launches; the backward scales it by the real upstream gradient (one elementwise
    // launch, so a step's launch count equals a separate forward and backward: 2 + 1).
    const bool fused = logits.requires_grad();
    torch::Tensor grad_logp_1 = fused ? torch::empty_like(ts.logprob) : torch::empty({0}, ts.logprob.options());
    if (on_cuda(logits)) {
#if defined(JANUS_WITH_GCPO_CUDA)
      Scratch scratch(gcpo::gcpo_loss_workspace_bytes(logits.size(0), logits.size(1)), logits.device());
      if (fused)
        check(gcpo::cuda::gcpo_loss_forward_backward(li, lo, gcpo::const_tensor_view{}, out(grad_logp_1), options, scratch.ws, torch_stream()),
              "cuda::gcpo_loss_forward_backward");
      else
        check(gcpo::cuda::gcpo_loss_forward(li, lo, options, scratch.ws, torch_stream()), "cuda::gcpo_loss_forward");
#endif
    } else if (fused) {
      check(gcpo::host::gcpo_loss_forward_backward(li, lo, gcpo::const_tensor_view{}, out(grad_logp_1), options),
            "host::gcpo_loss_forward_backward");
    } else {
      check(gcpo::host::gcpo_loss_forward(li, lo, options), "host::gcpo_loss_forward");
    }
    save_options(ctx, options, temperature);
    ctx->save_for_backward({logits, tokens, ref_logp, advantages, mask, ts.lse, ts.logprob, grad_logp_1});
    torch::Tensor loss = stats.select(0, gcpo::loss_stat_loss).clone();
    ctx->mark_non_differentiable({ts.logprob, stats});
    return {loss, ts.logprob, stats};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& logits = saved[0];
    const torch::Tensor& tokens = saved[1];
    const torch::Tensor& ref_logp = saved[2];
    const torch::Tensor& advantages = saved[3];
    const torch::Tensor mask = saved[4].numel() ? saved[4] : torch::Tensor();
    const torch::Tensor& lse = saved[5];
    const torch::Tensor& logp = saved[6];
    float temperature = 1.0f;
    const gcpo::loss_options options = load_options(ctx, temperature);

    torch::Tensor grad_loss = grad_outputs[0].defined()
                                  ? grad_outputs[0].to(torch::kFloat).reshape({1}).contiguous()
                                  : torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat).device(logits.device()));
    const torch::Tensor& grad_logp_1 = saved[7];
    // dL/dlogp is linear in the upstream gradient: the forward's, scaled (x 1 is exact)
    const bool fused = grad_logp_1.numel() > 0;
    torch::Tensor grad_logp = fused ? (grad_outputs[0].defined() ? grad_logp_1 * grad_loss : grad_logp_1)
                                    : torch::empty_like(logp);
    torch::Tensor grad_logits = torch::empty_like(logits);
    const gcpo::loss_inputs li = loss_inputs_of(logp, ref_logp, advantages, mask);
    gcpo::token_stats_options to;
    to.temperature = temperature;
    if (on_cuda(logits)) {
#if defined(JANUS_WITH_GCPO_CUDA)
      if (!fused) {
        Scratch scratch(gcpo::gcpo_loss_workspace_bytes(logits.size(0), logits.size(1)), logits.device());
        check(gcpo::cuda::gcpo_loss_backward(li, in(grad_loss), out(grad_logp), options, scratch.ws, torch_stream()),
              "cuda::gcpo_loss_backward");
      }
      check(gcpo::cuda::token_stats_backward(in(logits), in(tokens), in(lse), in(grad_logp), out(grad_logits), to,
                                             torch_stream()),
            "cuda::token_stats_backward");
#endif
    } else {
      if (!fused)
        check(gcpo::host::gcpo_loss_backward(li, in(grad_loss), out(grad_logp), options), "host::gcpo_loss_backward");
      check(gcpo::host::token_stats_backward(in(logits), in(tokens), in(lse), in(grad_logp), out(grad_logits), to),
            "host::token_stats_backward");
    }
    return {grad_logits, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

LossResult policy_loss(const torch::Tensor& logits, const torch::Tensor& tokens, const torch::Tensor& ref_logprob,
                       const torch::Tensor& advantages, const torch::Tensor& mask, const gcpo::loss_options& opt) {
  TORCH_CHECK(logits.dim() == 3 && logits.scalar_type() == torch::kFloat, "policy_loss: logits must be float32 [R, N, V]");
  const torch::Tensor lg = logits.stride(2) == 1 ? logits : logits.contiguous();
  variable_list outs = GcpoLossFunction::apply(lg, tokens.contiguous(), ref_logprob.to(torch::kFloat).contiguous(),
                                               advantages.to(torch::kFloat).contiguous(),
                                               mask.defined() ? mask.to(torch::kByte).contiguous()
                                                              : torch::empty({0}, tokens.options().dtype(torch::kByte)),
                                               opt);
  return LossResult{outs[0], outs[1], outs[2]};
}

}  // namespace ops
}  // namespace janus
