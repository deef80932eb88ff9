// gcpo/detail/cuda/sampling.cuh - CUDA twin of generation_step (one kernel per step).
//
// One block of 1024 threads per row. Every quantity that decides the token is computed with the
// host twin's operations: guided_logit, gumbel_noise, repro_exp, explicitly rounded adds, and the
// canonical 256-lane + binary-tree mass sums (thread j < 256 is lane j: it adds the v = j
// (mod 256) in increasing v). So the drawn token is bitwise the host's.
//
// Without top-k / top-p (one pass): x_v, the Gumbel key x_v + g_v (one Philox call per four
// entries) and its argmax (ties to the lower index), and the online max / sum of the row for
// the log-prob and entropy. Bytes: the two logit rows read once.
//
// With top-k / top-p: the candidates' order (x descending, index ascending, NaN last) is the
// unsigned order of the 64-bit key (descending_key(x) << index bits | v). x goes to the
// workspace; a block-wide radix select finds the key of rank k - 1 (top-k), then, for top-p,
// the block bisects the key range for the smallest prefix whose canonical mass
// reaches top_p * total (the mass of a prefix is monotone in its length, so bisection finds the
// host's binary-search answer; a prefix ending in a NaN has mass 0, as on the host). The kept
// set is the keys at or below the last kept key; the draw and the statistics run over it.
#pragma once

#include "common.cuh"
#include "token_stats.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

constexpr int samp_block = 1024;
constexpr int samp_lanes = sampling_sum_lanes;
static_assert(samp_lanes == 256 && samp_block % samp_lanes == 0, "the canonical mass order has 256 lanes");

struct sampling_args {
  const void* cond;
  std::int64_t cs0;
  const void* uncond;  ///< or null
  std::int64_t us0;
  void* tokens;
  bool tokens64;
  float* logprob;  ///< or null
  float* entropy;  ///< or null
  std::int64_t R, V, k;
  float cfg, temperature, top_p;
  std::uint64_t seed, step, first_row;
  bool filter;
  float* xbuf;  ///< [R, V] workspace (filter only)
  float* ebuf;  ///< [R, V] workspace (top-p only)
  int ib;       ///< index bits of V
};

/// The running winner of the Gumbel-max draw and the first kept index (plain data, so it can
/// live in shared memory; start from draw_empty()).
struct draw_state {
  float key;  ///< best key so far (only keys > -inf and not NaN ever win)
  int idx;    ///< its index, -1: none
  float x;    ///< its logit
  int first;  ///< lowest kept index, -1: none
  float fx;   ///< its logit
};

__device__ __forceinline__ draw_state draw_empty() {
  draw_state d;
  d.key = -f_inf;
  d.idx = -1;
  d.x = 0.0f;
  d.first = -1;
  d.fx = 0.0f;
  return d;
}

__device__ __forceinline__ void draw_merge(draw_state& a, const draw_state& b) {
  if (b.idx >= 0 && (a.idx < 0 || b.key > a.key || (b.key == a.key && b.idx < a.idx))) {
    a.key = b.key;
    a.idx = b.idx;
    a.x = b.x;
  }
  if (b.first >= 0 && (a.first < 0 || b.first < a.first)) {
    a.first = b.first;
    a.fx = b.fx;
  }
}

__device__ __forceinline__ void draw_consider(draw_state& d, float x, float key, int v) {
  if (d.first < 0) {
    d.first = v;
    d.fx = x;
  }
  if (key > d.key) {  // strict: the earliest of equal keys stays (a thread sees v ascending)
    d.key = key;
    d.idx = v;
    d.x = x;
  }
}

template <class T>
__device__ __forceinline__ float guided_at(const sampling_args& a, const T* c, const T* u, std::int64_t v) {
  return guided_logit(load_f(c[v]), u ? load_f(u[v]) : 0.0f, u != nullptr, a.cfg, a.temperature);
}

__device__ __forceinline__ std::uint64_t order_key(float x, std::int64_t v, int ib) {
  return (static_cast<std::uint64_t>(descending_key(x)) << ib) | static_cast<std::uint64_t>(v);
}

template <class T>
__global__ void __launch_bounds__(samp_block) generation_step_kernel(sampling_args a) {
  __shared__ reduce_scratch<samp_block> sc;
  __shared__ float lanes[samp_lanes];
  __shared__ select_scratch ssel;
  __shared__ draw_state dsh[samp_block / 32];
  __shared__ online_state osh[samp_block / 32];
  const int tid = static_cast<int>(threadIdx.x);
  const std::int64_t V = a.V;
  const std::uint32_t seed_lo = static_cast<std::uint32_t>(a.seed), seed_hi = static_cast<std::uint32_t>(a.seed >> 32);
  const std::uint32_t step_lo = static_cast<std::uint32_t>(a.step), step_hi = static_cast<std::uint32_t>(a.step >> 32);

  for (std::int64_t r = blockIdx.x; r < a.R; r += gridDim.x) {
    const T* c = static_cast<const T*>(a.cond) + r * a.cs0;
    const T* u = a.uncond ? static_cast<const T*>(a.uncond) + r * a.us0 : nullptr;
    const std::uint32_t row = static_cast<std::uint32_t>(a.first_row + static_cast<std::uint64_t>(r));
    draw_state ds = draw_empty();
    online_state st = online_empty();
    if (!a.filter) {
      // One pass: a thread takes groups of four entries (one Philox call each).
      const std::int64_t groups = (V + 3) / 4;
      for (std::int64_t q = tid; q < groups; q += samp_block) {
        const std::int64_t v0 = q * 4;
        const int nq = static_cast<int>(V - v0 < 4 ? V - v0 : 4);
        float x[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) x[j] = j < nq ? guided_at(a, c, u, v0 + j) : 0.0f;
        const philox_out o = philox4x32_10(static_cast<std::uint32_t>(q), row, step_lo, step_hi, seed_lo, seed_hi);
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (j < nq) {
            const float g = -repro_log(-repro_log(uniform_open01(o.v[j])));
            draw_consider(ds, x[j], __fadd_rn(x[j], g), static_cast<int>(v0 + j));
            const float y[1] = {x[j]};
            online_add(st, y);
          }
      }
    } else {
      float* xr = a.xbuf + r * V;
      const int ib = a.ib;
      unsigned long long kmin = ~0ull, kmax = 0ull;
      for (std::int64_t v = tid; v < V; v += samp_block) {
        const float x = guided_at(a, c, u, v);
        xr[v] = x;
        const unsigned long long K = order_key(x, v, ib);
        kmin = K < kmin ? K : kmin;
        kmax = K > kmax ? K : kmax;
      }
      // (the reductions' barriers also publish xr to the block)
      kmin = block_allreduce<samp_block>(kmin, min_op{}, sc.u);
      kmax = block_allreduce<samp_block>(kmax, max_op{}, sc.u);
      // Top-k: the key of rank k - 1 (0-based), by radix select.
      std::uint64_t last = kmax;
      if (a.k < V)
        last = block_select_kth<samp_block>(
            0, V, a.k, kmin, kmax, [xr, ib](std::int64_t v) { return order_key(xr[v], v, ib); },
            [](std::int64_t) { return true; }, ssel);
      if (a.top_p < 1.0f) {
        float* er = a.ebuf + r * V;
        const float mx = xr[kmin & ((std::uint64_t{1} << ib) - 1)];  // x of the first in order
        for (std::int64_t v = tid; v < V; v += samp_block) er[v] = repro_exp(__fsub_rn(xr[v], mx));
        __syncthreads();  // the lanes below read entries other threads wrote
        // Canonical mass of the keys <= probe; 0 when the prefix reaches a NaN (host: its
        // threshold is NaN and nothing passes its test). Threads 0..255 are the lanes.
        auto mass = [&](std::uint64_t probe) {
          float s = 0.0f;
          int nan = 0;
          if (tid < samp_lanes)
            for (std::int64_t v = tid; v < V; v += samp_lanes) {
              const float x = xr[v];
              if (order_key(x, v, ib) <= probe) {
                if (x != x) nan = 1;
                else s = __fadd_rn(s, er[v]);
              }
            }
          __syncthreads();  // lanes[0] of the previous call has been read
          if (tid < samp_lanes) lanes[tid] = s;
          nan = __syncthreads_or(nan);
#pragma unroll
          for (int h = samp_lanes / 2; h >= 1; h /= 2) {
            if (tid < h) lanes[tid] = __fadd_rn(lanes[tid], lanes[tid + h]);
            __syncthreads();
          }
          return nan ? 0.0f : lanes[0];
        };
        const std::uint64_t kk = last;
        const float total = mass(kk);
        const float target = fmaf_(a.top_p, total, 0.0f);
        last = block_search_smallest(kmin, kk, [&](std::uint64_t probe) { return probe >= kk || mass(probe) >= target; });
      }
      // The draw and the statistics over the kept set.
      for (std::int64_t v = tid; v < V; v += samp_block) {
        const float x = xr[v];
        if (order_key(x, v, ib) > last) continue;
        const float g = gumbel_noise(a.seed, a.step, row, static_cast<std::uint32_t>(v));
        draw_consider(ds, x, __fadd_rn(x, g), static_cast<int>(v));
        const float y[1] = {x};
        online_add(st, y);
      }
    }

    // Combine the threads: a warp tree, then the warps in order.
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) {
      draw_state o;
      o.key = __shfl_down_sync(0xffffffffu, ds.key, d);
      o.idx = __shfl_down_sync(0xffffffffu, ds.idx, d);
      o.x = __shfl_down_sync(0xffffffffu, ds.x, d);
      o.first = __shfl_down_sync(0xffffffffu, ds.first, d);
      o.fx = __shfl_down_sync(0xffffffffu, ds.fx, d);
      draw_merge(ds, o);
      online_merge(st, shfl_down_state(st, d));
    }
    __syncthreads();  // the previous row's thread 0 is done with dsh / osh
    if ((tid & 31) == 0) {
      dsh[tid >> 5] = ds;
      osh[tid >> 5] = st;
    }
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < samp_block / 32; ++w) {
        draw_merge(ds, dsh[w]);
        online_merge(st, osh[w]);
      }
      const int best = ds.idx >= 0 ? ds.idx : ds.first;
      const float xb = ds.idx >= 0 ? ds.x : ds.fx;
      float lp = __int_as_float(0x7fc00000), ent = lp;
      if (!st.bad && st.m > -f_inf) {
        const float log_s = logf(st.s);
        lp = __fsub_rn(__fsub_rn(xb, st.m), log_s);
        ent = log_s - st.t / st.s;
      }
      if (a.tokens64) static_cast<std::int64_t*>(a.tokens)[r] = best;
      else static_cast<std::int32_t*>(a.tokens)[r] = best;
      if (a.logprob) a.logprob[r] = lp;
      if (a.entropy) a.entropy[r] = ent;
    }
  }
}

template <class T>
status launch_generation_step(const_tensor_view cond, const_tensor_view uncond, tensor_view tokens, tensor_view logprob,
                              tensor_view entropy, const sampling_options& opt, workspace ws,
                              cudaStream_t stream) noexcept {
  sampling_args a{};
  a.cond = cond.data;
  a.cs0 = cond.strides[0];
  a.uncond = uncond.present() ? uncond.data : nullptr;
  a.us0 = uncond.present() ? uncond.strides[0] : 0;
  a.tokens = tokens.data;
  a.tokens64 = tokens.type == dtype::int64;
  a.logprob = logprob.present() ? logprob.as<float>() : nullptr;
  a.entropy = entropy.present() ? entropy.as<float>() : nullptr;
  a.R = cond.shape[0];
  a.V = cond.shape[1];
  a.k = (opt.top_k > 0 && opt.top_k < a.V) ? opt.top_k : a.V;
  a.cfg = opt.cfg_scale;
  a.temperature = opt.temperature;
  a.top_p = opt.top_p;
  a.seed = opt.seed;
  a.first_row = opt.first_row;
  a.step = opt.step;
  a.filter = a.k < a.V || opt.top_p < 1.0f;
  workspace_carver carve(ws);
  a.xbuf = carve.take<float>(static_cast<std::size_t>(a.R * a.V));
  a.ebuf = carve.take<float>(static_cast<std::size_t>(a.R * a.V));
  a.ib = index_bits(a.V);
  if (a.R == 0) return ok();
  GCPO_LAUNCH(grid_for(a.R, 1), samp_block, 0, stream, generation_step_kernel<T>)(a);
  return check_launch("generation_step_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
