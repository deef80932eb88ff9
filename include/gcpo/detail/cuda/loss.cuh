// gcpo/detail/cuda/loss.cuh - CUDA twins of gcpo_loss_forward, gcpo_loss_backward and
// gcpo_loss_forward_backward.
//
// N <= scan_tile (1024: every Janus-Pro and LlamaGen shape), loss_tile_kernel, one block per
// rollout (grid stride): the row is read once into registers (scan_items tokens per thread), the
// dynamic weight is the block's prefix scan of the clipped ratios, and from the same registers
// the block writes the per-token weight and kl, its rollout's masked sums (loss term, kl, clip
// count, weight, token count; double, a fixed tree) into the workspace, and the gradient: the
// direct term plus, unless the weight is detached, the path through w, e_u * sum_{t >= u}
// m_t pg_t / (t + 1), from a suffix scan (in each thread, then shuffles in each warp, then the
// later warps' totals: a value reaches only earlier tokens, as in the host's backward loop).
// token_mean's Z of the gradient (the mask count of the whole batch) is counted by every block
// itself (the mask, R*N bytes from L2, when it has at most loss_count_in_block_bytes; else one
// loss_mask_count_kernel launch before). Launches per call:
//   forward:  loss_tile_kernel, loss_forward_final_kernel (one block: the R partials in a
//             fixed order, total count first, since token_mean's Z needs it, then the stats);
//   backward: loss_tile_kernel (gradient only);
//   forward_backward: loss_tile_kernel (sums and gradient in one pass), loss_forward_final_kernel.
// No atomics anywhere: every sum has a fixed order that depends on R and N only, not on the
// grid size or on which block runs first, so results are bitwise identical run to run. The
// stats take a second launch because combining the R sums in the same launch (the last block
// to finish reduces them, found with an atomic ticket) needs a counter that is zero on entry,
// and a workspace's contents on entry are arbitrary (callers allocate it per call or share it):
// zeroing it would be a memset, a stream operation of its own.
//
// N > scan_tile, the rows do not fit in registers: loss_forward_rows_kernel (tiles with a
// running carry) writes the sums, including the mask counts; the backward counts the masks
// (loss_mask_count_kernel; forward_backward reuses the forward's counts instead), then
// loss_backward_kernel writes the direct term in a forward pass over the tiles and adds the
// path through w in a backward pass (a reverse inclusive scan, double); the final kernel as above.
#pragma once

#include <cub/block/block_scan.cuh>

#include "common.cuh"
#include "weight.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

/// Doubles per rollout in the loss workspace: 0 loss term, 1 kl, 2 clipped, 3 weight, 4 mask count.
constexpr int loss_partials = 8;

/// The one-tile kernel's blocks count a mask of up to this many bytes themselves (each reads it
/// whole) for token_mean's gradient; a larger mask is counted by a launch before.
constexpr std::int64_t loss_count_in_block_bytes = 32768;

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
  float* grad;             ///< or null (no gradient)
  std::int64_t R, N;
  loss_options opt;
  bool stats;           ///< loss_tile_kernel: write the rollouts' sums into `part`
  bool count_in_block;  ///< loss_tile_kernel, token_mean gradient with a mask: count it in each
                        ///< block (else the counts are in `part`, written by a launch before)
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

/// A rollout's five partial sums reduced over the block (fixed order) and stored by thread 0 in
/// its row of the partials (loss, kl, clipped count, weight, token count). Every thread calls it.
/// `cnt` is returned reduced (the backward's sequence mean needs it).
__device__ __forceinline__ long long store_row_partials(double row, double kls, double wsum, long long clip,
                                                        long long cnt, reduce_scratch<scan_block>& sc, double* p) {
  row = block_allreduce<scan_block>(row, sum_op{}, sc.d);
  kls = block_allreduce<scan_block>(kls, sum_op{}, sc.d);
  wsum = block_allreduce<scan_block>(wsum, sum_op{}, sc.d);
  clip = block_allreduce<scan_block>(clip, sum_op{}, sc.i);
  cnt = block_allreduce<scan_block>(cnt, sum_op{}, sc.i);
  if (threadIdx.x == 0) {
    p[0] = row;
    p[1] = kls;
    p[2] = static_cast<double>(clip);
    p[3] = wsum;
    p[4] = static_cast<double>(cnt);
  }
  return cnt;
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
    store_row_partials(row, kls, wsum, clip, cnt, sc, a.part + r * loss_partials);
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

/// Nonzero bytes of a 32-bit word: a byte's high bit of ((byte & 0x7f) + 0x7f) | byte is set
/// exactly when the byte is nonzero, and no sum carries into the next byte.
__device__ __forceinline__ int nonzero_bytes(std::uint32_t v) {
  return __popc((((v & 0x7f7f7f7fu) + 0x7f7f7f7fu) | v) & 0x80808080u);
}

/// Nonzero bytes of m[0, n), counted by the whole block (16-byte loads after the unaligned
/// head); every thread gets the count (exact).
template <int BLOCK>
__device__ __forceinline__ long long block_count_nonzero(const std::uint8_t* m, std::int64_t n,
                                                         reduce_scratch<BLOCK>& sc) {
  long long c = 0;
  std::int64_t head = static_cast<std::int64_t>((16u - (reinterpret_cast<std::uintptr_t>(m) & 15u)) & 15u);
  if (head > n) head = n;
  const std::int64_t nv = (n - head) / 16;
  for (std::int64_t i = threadIdx.x; i < head; i += BLOCK) c += m[i] != 0 ? 1 : 0;
  const uint4* v = reinterpret_cast<const uint4*>(m + head);
#pragma unroll 4
  for (std::int64_t i = threadIdx.x; i < nv; i += BLOCK) {
    const uint4 x = __ldg(v + i);
    c += nonzero_bytes(x.x) + nonzero_bytes(x.y) + nonzero_bytes(x.z) + nonzero_bytes(x.w);
  }
  for (std::int64_t i = head + nv * 16 + threadIdx.x; i < n; i += BLOCK) c += m[i] != 0 ? 1 : 0;
  return block_allreduce<BLOCK>(c, sum_op{}, sc.i);
}

/// Sum of `v` over the threads after this one (threadIdx.x + 1 .. BLOCK - 1) in a fixed order:
/// a shuffle suffix scan in each warp, then the later warps' totals from the last one down. A
/// value reaches only the threads before it (a NaN does not leak to later tokens). `sh` holds
/// BLOCK / 32 doubles; the leading barrier protects it from its previous use.
template <int BLOCK>
__device__ __forceinline__ double block_exclusive_suffix(double v, double* sh) {
  const unsigned lane = threadIdx.x & 31u;
  const int warp = static_cast<int>(threadIdx.x >> 5);
  double incl = v;
#pragma unroll
  for (unsigned d = 1; d < 32; d *= 2) {
    const double x = __shfl_down_sync(0xffffffffu, incl, d);
    if (lane + d < 32) incl += x;
  }
  double excl = __shfl_down_sync(0xffffffffu, incl, 1);
  if (lane == 31) excl = 0.0;
  __syncthreads();
  if (lane == 0) sh[warp] = incl;
  __syncthreads();
  double later = 0.0;
  for (int w = BLOCK / 32 - 1; w > warp; --w) later += sh[w];
  return later + excl;
}

/// What the loss and its gradient need of one token.
struct loss_token {
  float w;       ///< dynamic weight (1 for GRPO)
  float e;       ///< exp(clip(lp - ref, -c, c)) (NaN for NaN)
  float kl, dkl;
  float pg, dpg;
  bool sel;      ///< selected by the mask
  bool passes;   ///< the clamp passes the gradient
  bool clipped;  ///< the PPO clip is active
};

/// The loss of rollouts of N <= scan_tile tokens (see the file comment): the forward's sums
/// when a.stats, the per-token weight and kl when asked, the gradient when a.grad.
__global__ void __launch_bounds__(scan_block) loss_tile_kernel(loss_args a) {
  using Scan = cub::BlockScan<float, scan_block>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ reduce_scratch<scan_block> sc;
  const loss_options& opt = a.opt;
  const bool gcpo = opt.algo == algorithm::gcpo;
  const bool grad = a.grad != nullptr;
  const bool through_weight = grad && gcpo && !opt.detach_weight;
  const std::int64_t R = a.R, N = a.N;
  double total = static_cast<double>(R) * static_cast<double>(N);
  if (grad && a.mask && opt.aggregation == loss_aggregation::token_mean)
    total = a.count_in_block ? static_cast<double>(block_count_nonzero<scan_block>(a.mask, R * N, sc))
                             : total_count<scan_block>(a.part, R, sc);
  const double gl = (grad && a.grad_loss) ? static_cast<double>(a.grad_loss[0]) : 1.0;
  for (std::int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const float A = a.adv[r];
    const std::int64_t t0 = static_cast<std::int64_t>(threadIdx.x) * scan_items;
    loss_token tk[scan_items];
    float e[scan_items];
#pragma unroll
    for (int i = 0; i < scan_items; ++i) {
      const std::int64_t t = t0 + i;
      loss_token& k = tk[i];
      k = loss_token{1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, false, false, false};
      e[i] = 0.0f;
      if (t >= N) continue;
      const std::int64_t j = r * N + t;
      const float lp = a.lp[j], rf = a.ref[j];
      const weight_term we = clipped_ratio_term(lp, rf, opt.weight_clip);
      k.e = we.value;
      k.passes = we.passes;
      if (gcpo) e[i] = we.value;
      kl_term(lp, rf, k.kl, k.dkl);
      const policy_term pg = policy_term_of(lp, a.old ? a.old[j] : 0.0f, a.old != nullptr, A, opt);
      k.pg = pg.value;
      k.dpg = pg.dvalue;
      k.clipped = pg.clipped;
      k.sel = !a.mask || a.mask[j] != 0;
    }
    (void)tile_inclusive_scan<float, Scan>(e, tmp);
    double row = 0.0, kls = 0.0, wsum = 0.0;
    long long clip = 0, cnt = 0;
#pragma unroll
    for (int i = 0; i < scan_items; ++i) {
      const std::int64_t t = t0 + i;
      if (t >= N) continue;
      const std::int64_t j = r * N + t;
      loss_token& k = tk[i];
      if (gcpo) k.w = __fdiv_rn(e[i], static_cast<float>(t + 1));
      if (a.w_out) a.w_out[j] = k.w;
      if (a.kl_out) a.kl_out[j] = k.kl;
      if (!k.sel) continue;
      row += static_cast<double>(k.pg) * k.w + static_cast<double>(opt.beta) * k.kl;
      kls += k.kl;
      clip += k.clipped ? 1 : 0;
      wsum += k.w;
      cnt += 1;
    }
    if (a.stats) {
      cnt = store_row_partials(row, kls, wsum, clip, cnt, sc, a.part + r * loss_partials);
    } else if (grad && a.mask && opt.aggregation == loss_aggregation::sequence_mean) {
      cnt = block_allreduce<scan_block>(cnt, sum_op{}, sc.i);
    }
    if (grad) {
      const double f = row_factor_dev(opt, R, N, total, a.mask ? static_cast<double>(cnt) : static_cast<double>(N));
      const double glf = gl * f;
      // suffix[i] = sum over this thread's tokens from i on of m_t pg_t / (t + 1); later = the
      // same over the tokens of the threads after this one.
      double suffix[scan_items] = {};
      double later = 0.0;
      if (through_weight) {
        double run = 0.0;
#pragma unroll
        for (int i = scan_items - 1; i >= 0; --i) {
          const std::int64_t t = t0 + i;
          // pg / (t + 1), the reciprocal to ~1 ulp (a double division would be a subroutine call)
          if (t < N && tk[i].sel)
            run += static_cast<double>(tk[i].pg) * static_cast<double>(__fdividef(1.0f, static_cast<float>(t + 1)));
          suffix[i] = run;
        }
        later = block_exclusive_suffix<scan_block>(run, sc.d);
      }
#pragma unroll
      for (int i = 0; i < scan_items; ++i) {
        const std::int64_t t = t0 + i;
        if (t >= N) continue;
        const loss_token& k = tk[i];
        float g = 0.0f;
        if (k.sel)
          g = static_cast<float>(glf * (static_cast<double>(k.dpg) * k.w + static_cast<double>(opt.beta) * k.dkl));
        if (through_weight && k.passes)
          g = static_cast<float>(static_cast<double>(g) + glf * k.e * (later + suffix[i]));
        a.grad[r * N + t] = g;
      }
    }
    __syncthreads();  // tmp and sc are reused by the next rollout
  }
}

/// The launches of one call: the forward (`out` not null), the backward (`grad` not null) or
/// both (see the file comment).
inline status launch_loss(const loss_inputs& in, const loss_outputs* out, const_tensor_view grad_loss, float* grad,
                          const loss_options& opt, workspace ws, cudaStream_t stream) noexcept {
  loss_args a{};
  a.R = in.logp.shape[0];
  a.N = in.logp.shape[1];
  a.lp = in.logp.as<const float>();
  a.ref = in.ref_logp.as<const float>();
  a.old = in.old_logp.present() ? in.old_logp.as<const float>() : nullptr;
  a.adv = in.advantages.as<const float>();
  a.mask = in.mask.present() ? in.mask.as<const std::uint8_t>() : nullptr;
  a.w_out = (out && out->weight.present()) ? out->weight.as<float>() : nullptr;
  a.kl_out = (out && out->kl.present()) ? out->kl.as<float>() : nullptr;
  a.grad_loss = grad_loss.present() ? grad_loss.as<const float>() : nullptr;
  a.grad = grad;
  a.opt = opt;
  workspace_carver carve(ws);
  a.part = carve.take<double>(static_cast<std::size_t>(a.R) * loss_partials);
  const bool forward = out != nullptr;
  const bool backward = grad != nullptr && a.N > 0;
  if (a.R > 0 && (forward || backward)) {
    if (a.N <= scan_tile) {
      const bool total_needed = backward && a.mask && opt.aggregation == loss_aggregation::token_mean;
      a.count_in_block = total_needed && a.R * a.N <= loss_count_in_block_bytes;
      if (total_needed && !a.count_in_block) {
        GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_mask_count_kernel)(a.mask, a.part, a.R, a.N);
        GCPO_TRY(check_launch("loss_mask_count_kernel"));
      }
      a.stats = forward;
      GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_tile_kernel)(a);
      GCPO_TRY(check_launch("loss_tile_kernel"));
    } else {
      if (forward) {
        GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_forward_rows_kernel)(a);
        GCPO_TRY(check_launch("loss_forward_rows_kernel"));
      }
      if (backward) {
        // the forward's sums hold every rollout's mask count: counted once
        const bool need_counts = a.mask != nullptr && (opt.aggregation == loss_aggregation::token_mean ||
                                                       opt.aggregation == loss_aggregation::sequence_mean);
        if (need_counts && !forward) {
          GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_mask_count_kernel)(a.mask, a.part, a.R, a.N);
          GCPO_TRY(check_launch("loss_mask_count_kernel"));
        }
        GCPO_LAUNCH(grid_for(a.R, 1), scan_block, 0, stream, loss_backward_kernel)(a, need_counts);
        GCPO_TRY(check_launch("loss_backward_kernel"));
      }
    }
  }
  if (!forward) return ok();
  GCPO_LAUNCH(1, scan_block, 0, stream, loss_forward_final_kernel)(a.part, out->stats.as<float>(), a.R, a.N, opt);
  return check_launch("loss_forward_final_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
