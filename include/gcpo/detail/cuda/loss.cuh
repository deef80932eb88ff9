// gcpo/detail/cuda/loss.cuh - CUDA twins of gcpo_loss_forward and gcpo_loss_backward.
//
// Forward, two launches: one block per rollout runs the prefix scan of the clipped ratios (the
// dynamic weight, cub::BlockScan over tiles with a running carry), writes the per-token weight
// and kl, and reduces its rollout's masked sums (loss term, kl, clip count, weight, token count;
// double) in a fixed tree into the workspace; then one block reduces the R partials in a fixed
// order (total count first, since token_mean's Z needs it) and writes the stats. No atomics.
//
// Backward, one or two launches: when the normalisation needs mask counts (token_mean or
// sequence_mean with a mask), one block per rollout counts its mask into the workspace; then
// one block per rollout writes the direct term in a forward pass (prefix scan for w) and, unless
// the weight is detached, adds the path through w in a backward pass: a reverse inclusive scan
// (double) of m_t pg_t / (t + 1). Bytes: the [R, N] inputs read once or twice (L2), grad written.
#pragma once

#include <cub/block/block_scan.cuh>

#include "common.cuh"
#include "weight.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

/// Doubles per rollout in the loss workspace: 0 loss term, 1 kl, 2 clipped, 3 weight, 4 mask count.
constexpr int loss_partials = 8;

struct loss_args {
  const float* lp;
  const float* ref;
  const float* old;  ///< or null (on-policy)
  const float* adv;
  const std::uint8_t* mask;  ///< or null (all tokens)
  float* w_out;
  float* kl_out;
  double* part;  ///< [R][loss_partials]
  const float* grad_loss;  ///< or null (1)
  float* grad;
  std::int64_t R, N;
  loss_options opt;
};

/// 1 / z for z > 0, to about an ulp of double, without the division subroutine (whose call
/// makes ptxas spill around it): a float estimate refined by three Newton steps. z is scaled
/// by a power of two into float range first, so any positive finite double works.
__device__ __forceinline__ double reciprocal(double z) {
  int e = 0;
  const double m = frexp(z, &e);  // z = m 2^e, m in [0.5, 1)
  double r = static_cast<double>(__fdividef(1.0f, static_cast<float>(m)));
  r = fma(r, fma(-m, r, 1.0), r);
  r = fma(r, fma(-m, r, 1.0), r);
  r = fma(r, fma(-m, r, 1.0), r);
  return ldexp(r, -e);
}

/// 1 / Z_r of rollout r (host_impl::row_factor).
__device__ __forceinline__ double row_factor_dev(const loss_options& opt, std::int64_t R, std::int64_t N, double total,
                                                 double row_count) {
  double Z = 0.0;
  switch (opt.aggregation) {
    case loss_aggregation::token_mean: Z = total; break;
    case loss_aggregation::sequence_mean: Z = static_cast<double>(R) * row_count; break;
    case loss_aggregation::constant:
      Z = static_cast<double>(R) * (opt.max_tokens > 0 ? opt.max_tokens : static_cast<double>(N));
      break;
    case loss_aggregation::external: Z = opt.denominator; break;
  }
  return Z > 0.0 ? reciprocal(Z) : 0.0;
}

/// The Z reported in the stats (host_impl::reported_denominator).
__device__ __forceinline__ double reported_denominator_dev(const loss_options& opt, std::int64_t R, std::int64_t N,
                                                           double total) {
  switch (opt.aggregation) {
    case loss_aggregation::token_mean: return total;
    case loss_aggregation::sequence_mean: return static_cast<double>(R);
    case loss_aggregation::constant:
      return static_cast<double>(R) * (opt.max_tokens > 0 ? opt.max_tokens : static_cast<double>(N));
    case loss_aggregation::external: return opt.denominator;
  }
  return 0.0;
}

__global__ void __launch_bounds__(scan_block) loss_forward_rows_kernel(loss_args a) {
  using Scan = cub::BlockScan<float, scan_block>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ reduce_scratch<scan_block> sc;
  const bool gcpo = a.opt.algo == algorithm::gcpo;
  const std::int64_t N = a.N;
  for (std::int64_t r = blockIdx.x; r < a.R; r += gridDim.x) {
    const float A = a.adv[r];
    float carry = 0.0f;
    double row = 0.0, kls = 0.0, wsum = 0.0;
    long long clip = 0, cnt = 0;
    for (std::int64_t t0 = 0; t0 < N; t0 += scan_tile) {
      float e[scan_items];
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        e[i] = (gcpo && t < N) ? clipped_ratio_term(a.lp[r * N + t], a.ref[r * N + t], a.opt.weight_clip).value : 0.0f;
      }
      const float total = tile_inclusive_scan<float, Scan>(e, tmp);
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        if (t >= N) continue;
        const std::int64_t k = r * N + t;
        const float w = gcpo ? __fdiv_rn(__fadd_rn(carry, e[i]), static_cast<float>(t + 1)) : 1.0f;
        float kl, dkl;
        kl_term(a.lp[k], a.ref[k], kl, dkl);
        if (a.w_out) a.w_out[k] = w;
        if (a.kl_out) a.kl_out[k] = kl;
        if (a.mask && !a.mask[k]) continue;
        const policy_term pg = policy_term_of(a.lp[k], a.old ? a.old[k] : 0.0f, a.old != nullptr, A, a.opt);
        row += static_cast<double>(pg.value) * w + static_cast<double>(a.opt.beta) * kl;
        kls += kl;
        clip += pg.clipped ? 1 : 0;
        wsum += w;
        cnt += 1;
      }
      carry = __fadd_rn(carry, total);
      __syncthreads();  // tmp is reused by the next tile
    }
    row = block_allreduce<scan_block>(row, sum_op{}, sc.d);
    kls = block_allreduce<scan_block>(kls, sum_op{}, sc.d);
    wsum = block_allreduce<scan_block>(wsum, sum_op{}, sc.d);
    clip = block_allreduce<scan_block>(clip, sum_op{}, sc.i);
    cnt = block_allreduce<scan_block>(cnt, sum_op{}, sc.i);
    if (threadIdx.x == 0) {
      double* p = a.part + r * loss_partials;
      p[0] = row;
      p[1] = kls;
      p[2] = static_cast<double>(clip);
      p[3] = wsum;
      p[4] = static_cast<double>(cnt);
    }
  }
}

/// Total of the mask counts of all rollouts (fixed order; exact: integers below 2^53).
template <int BLOCK>
__device__ __forceinline__ double total_count(const double* part, std::int64_t R, reduce_scratch<BLOCK>& sc) {
  double c = 0.0;
  for (std::int64_t r = threadIdx.x; r < R; r += BLOCK) c += part[r * loss_partials + 4];
  return block_allreduce<BLOCK>(c, sum_op{}, sc.d);
}

__global__ void __launch_bounds__(scan_block) loss_forward_final_kernel(const double* part, float* stats, std::int64_t R,
                                                                        std::int64_t N, loss_options opt) {
  __shared__ reduce_scratch<scan_block> sc;
  const double total = total_count<scan_block>(part, R, sc);
  double loss = 0.0, kl = 0.0, clip = 0.0, w = 0.0;
  for (std::int64_t r = threadIdx.x; r < R; r += scan_block) {
    const double* p = part + r * loss_partials;
    loss += p[0] * row_factor_dev(opt, R, N, total, p[4]);
    kl += p[1];
    clip += p[2];
    w += p[3];
  }
  loss = block_allreduce<scan_block>(loss, sum_op{}, sc.d);
  kl = block_allreduce<scan_block>(kl, sum_op{}, sc.d);
  clip = block_allreduce<scan_block>(clip, sum_op{}, sc.d);
  w = block_allreduce<scan_block>(w, sum_op{}, sc.d);
  if (threadIdx.x == 0) {
    const double inv = total > 0 ? 1.0 / total : 0.0;
    stats[loss_stat_loss] = static_cast<float>(loss);
    stats[loss_stat_kl_mean] = static_cast<float>(kl * inv);
    stats[loss_stat_clip_fraction] = static_cast<float>(clip * inv);
    stats[loss_stat_weight_mean] = static_cast<float>(w * inv);
    stats[loss_stat_token_count] = static_cast<float>(total);
    stats[loss_stat_denominator] = static_cast<float>(reported_denominator_dev(opt, R, N, total));
  }
}

__global__ void __launch_bounds__(scan_block) loss_mask_count_kernel(const std::uint8_t* mask, double* part,
                                                                     std::int64_t R, std::int64_t N) {
  __shared__ reduce_scratch<scan_block> sc;
  for (std::int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    long long c = 0;
    for (std::int64_t t = threadIdx.x; t < N; t += scan_block) c += mask[r * N + t] ? 1 : 0;
    c = block_allreduce<scan_block>(c, sum_op{}, sc.i);
    if (threadIdx.x == 0) part[r * loss_partials + 4] = static_cast<double>(c);
  }
}

__global__ void __launch_bounds__(scan_block) loss_backward_kernel(loss_args a, bool have_counts) {
  using Scan = cub::BlockScan<float, scan_block>;
  using ScanD = cub::BlockScan<double, scan_block>;
  __shared__ union {
    typename Scan::TempStorage f;
    typename ScanD::TempStorage d;
  } tmp;
  __shared__ reduce_scratch<scan_block> sc;
  const loss_options& opt = a.opt;
  const bool gcpo = opt.algo == algorithm::gcpo;
  const bool through_weight = gcpo && !opt.detach_weight;
  const std::int64_t R = a.R, N = a.N;
  double total = static_cast<double>(R) * static_cast<double>(N);
  if (opt.aggregation == loss_aggregation::token_mean && a.mask) total = total_count<scan_block>(a.part, R, sc);
  const double gl = a.grad_loss ? static_cast<double>(a.grad_loss[0]) : 1.0;
  for (std::int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const double row_count = (a.mask && have_counts) ? a.part[r * loss_partials + 4] : static_cast<double>(N);
    const double f = row_factor_dev(opt, R, N, total, row_count);
    const double glf = gl * f;
    const float A = a.adv[r];
    // Forward along t: the direct term, with the prefix-mean weight.
    float carry = 0.0f;
    for (std::int64_t t0 = 0; t0 < N; t0 += scan_tile) {
      float e[scan_items];
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        e[i] = (gcpo && t < N) ? clipped_ratio_term(a.lp[r * N + t], a.ref[r * N + t], opt.weight_clip).value : 0.0f;
      }
      const float tile_total = tile_inclusive_scan<float, Scan>(e, tmp.f);
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t t = t0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        if (t >= N) continue;
        const std::int64_t k = r * N + t;
        if (a.mask && !a.mask[k]) {
          a.grad[k] = 0.0f;
          continue;
        }
        // (the weight to ~1 ulp: an IEEE division here would be a subroutine call)
        const float w = gcpo ? __fdividef(__fadd_rn(carry, e[i]), static_cast<float>(t + 1)) : 1.0f;
        float kl, dkl;
        kl_term(a.lp[k], a.ref[k], kl, dkl);
        const policy_term pg = policy_term_of(a.lp[k], a.old ? a.old[k] : 0.0f, a.old != nullptr, A, opt);
        a.grad[k] = static_cast<float>(glf * (static_cast<double>(pg.dvalue) * w + static_cast<double>(opt.beta) * dkl));
      }
      carry = __fadd_rn(carry, tile_total);
      __syncthreads();  // tmp reuse; the direct terms are visible to the whole block
    }
    if (!through_weight) continue;
    // Backward along t: the suffix sum of m_u pg_u / (u + 1) carries the path through w.
    double dcarry = 0.0;
    for (std::int64_t u0 = 0; u0 < N; u0 += scan_tile) {
      double s[scan_items];
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t u = u0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        const std::int64_t t = N - 1 - u, k = r * N + t;
        s[i] = 0.0;
        if (u < N && (!a.mask || a.mask[k])) {
          const policy_term pg = policy_term_of(a.lp[k], a.old ? a.old[k] : 0.0f, a.old != nullptr, A, opt);
          // pg / (t + 1), the reciprocal to ~1 ulp (a double division would be a subroutine call)
          s[i] = static_cast<double>(pg.value) * static_cast<double>(__fdividef(1.0f, static_cast<float>(t + 1)));
        }
      }
      const double tile_total = tile_inclusive_scan<double, ScanD>(s, tmp.d);
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t u = u0 + static_cast<std::int64_t>(threadIdx.x) * scan_items + i;
        if (u >= N) continue;
        const std::int64_t t = N - 1 - u, k = r * N + t;
        const weight_term e = clipped_ratio_term(a.lp[k], a.ref[k], opt.weight_clip);
        if (e.passes) a.grad[k] = static_cast<float>(static_cast<double>(a.grad[k]) + glf * e.value * (dcarry + s[i]));
      }
      dcarry += tile_total;
      __syncthreads();
    }
  }
}

inline status launch_loss_forward(const loss_inputs& in, const loss_outputs& out, const loss_options& opt, workspace ws,
                                  cudaStream_t stream) noexcept {
  loss_args a{};
  a.R = in.logp.shape[0];
  a.N = in.logp.shape[1];
  a.lp = in.logp.as<const float>();
  a.ref = in.ref_logp.as<const float>();
  a.old = in.old_logp.present() ? in.old_logp.as<const float>() : nullptr;
  a.adv = in.advantages.as<const float>();
  a.mask = in.mask.present() ? in.mask.as<const std::uint8_t>() : nullptr;
  a.w_out = out.weight.present() ? out.weight.as<float>() : nullptr;
  a.kl_out = out.kl.present() ? out.kl.as<float>() : nullptr;
  a.opt = opt;
  workspace_carver carve(ws);
  a.part = carve.take<double>(static_cast<std::size_t>(a.R) * loss_partials);
  if (a.R > 0) {
    GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_forward_rows_kernel)(a);
    GCPO_TRY(check_launch("loss_forward_rows_kernel"));
  }
  GCPO_LAUNCH(1, scan_block, 0, stream, loss_forward_final_kernel)(a.part, out.stats.as<float>(), a.R, a.N, opt);
  return check_launch("loss_forward_final_kernel");
}

inline status launch_loss_backward(const loss_inputs& in, const_tensor_view grad_loss, tensor_view grad_logp,
                                   const loss_options& opt, workspace ws, cudaStream_t stream) noexcept {
  loss_args a{};
  a.R = in.logp.shape[0];
  a.N = in.logp.shape[1];
  a.lp = in.logp.as<const float>();
  a.ref = in.ref_logp.as<const float>();
  a.old = in.old_logp.present() ? in.old_logp.as<const float>() : nullptr;
  a.adv = in.advantages.as<const float>();
  a.mask = in.mask.present() ? in.mask.as<const std::uint8_t>() : nullptr;
  a.grad_loss = grad_loss.present() ? grad_loss.as<const float>() : nullptr;
  a.grad = grad_logp.as<float>();
  a.opt = opt;
  workspace_carver carve(ws);
  a.part = carve.take<double>(static_cast<std::size_t>(a.R) * loss_partials);
  if (a.R == 0 || a.N == 0) return ok();
  const bool need_counts = a.mask != nullptr && (opt.aggregation == loss_aggregation::token_mean ||
                                                 opt.aggregation == loss_aggregation::sequence_mean);
  if (need_counts) {
    GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_mask_count_kernel)(a.mask, a.part, a.R, a.N);
    GCPO_TRY(check_launch("loss_mask_count_kernel"));
  }
  GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_backward_kernel)(a, need_counts);
  return check_launch("loss_backward_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
