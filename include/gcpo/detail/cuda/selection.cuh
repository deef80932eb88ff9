// gcpo/detail/cuda/selection.cuh - CUDA twins of the selection operators.
//
// The whole selection is one kernel (plus the similarity kernel when the similarity is not
// given): one block per rollout. The causal local mean and the gradient are computed with the
// host twin's operations in the host twin's order (explicitly rounded adds, multiplies,
// divisions and square roots, so no contraction changes a bit) into shared memory (global
// scratch when N > select_smem_tokens). Each top-k is a threshold search on a 64-bit key
// (order key of the value << index bits | index) whose unsigned order is exactly the host's
// topk_order (better value first, ties to the lower index, NaN last, -0 == +0): a block-wide
// radix select (8-bit digits, shared-memory histograms of integer counts) finds the key of rank
// k; the selected positions are the eligible ones whose key is at or below it. So masks are bitwise identical to the host's for identical maps.
// Bytes: entropy and similarity read once, the requested maps and masks written once.
#pragma once

#include "common.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

constexpr int sel_block = 256;
/// Rows up to this many tokens keep their maps in shared memory (2 * 4 bytes per token).
constexpr std::int64_t select_smem_tokens = 4096;

/// Causal 5-point local mean at (i, j) of the map E (host_impl::smooth_map, bit for bit).
__device__ __forceinline__ float smooth_at(const float* E, std::int64_t i, std::int64_t j, std::int64_t W) {
  const std::int64_t c = i * W + j;
  float sum = E[c];
  float cnt = 1.0f;
  if (j > 0) {
    sum = __fadd_rn(sum, E[c - 1]);
    cnt = __fadd_rn(cnt, 1.0f);
  }
  if (i > 0) {
    if (j > 0) {
      sum = __fadd_rn(sum, E[c - W - 1]);
      cnt = __fadd_rn(cnt, 1.0f);
    }
    sum = __fadd_rn(sum, E[c - W]);
    cnt = __fadd_rn(cnt, 1.0f);
    if (j + 1 < W) {
      sum = __fadd_rn(sum, E[c - W + 1]);
      cnt = __fadd_rn(cnt, 1.0f);
    }
  }
  return __fdiv_rn(sum, cnt);
}

/// Central-difference gradient magnitude at (i, j) of M (host_impl::gradient_map, bit for bit).
__device__ __forceinline__ float gradient_at(const float* M, std::int64_t i, std::int64_t j, std::int64_t H,
                                             std::int64_t W) {
  float dx = 0.0f, dy = 0.0f;
  const std::int64_t c = i * W + j;
  if (W > 1) {
    if (j == 0) dx = __fsub_rn(M[c + 1], M[c]);
    else if (j == W - 1) dx = __fsub_rn(M[c], M[c - 1]);
    else dx = __fmul_rn(__fsub_rn(M[c + 1], M[c - 1]), 0.5f);
  }
  if (H > 1) {
    if (i == 0) dy = __fsub_rn(M[W + j], M[j]);
    else if (i == H - 1) dy = __fsub_rn(M[c], M[c - W]);
    else dy = __fmul_rn(__fsub_rn(M[c + W], M[c - W]), 0.5f);
  }
  return __fsqrt_rn(__fadd_rn(__fmul_rn(dx, dx), __fmul_rn(dy, dy)));
}

/// Result of a block top-k: the eligible positions with key <= tau are selected.
struct topk_threshold {
  bool any;           ///< false: nothing selected
  std::uint64_t tau;  ///< selected: eligible and key <= tau
};

/// The k first eligible positions of [lo, lo + n) in the order of `key` (a 64-bit key that is
/// unique per position), as a threshold. Collective: every thread of the block calls it with
/// the same arguments and gets the same result.
template <int BLOCK, class Key, class Eligible>
__device__ topk_threshold block_topk(std::int64_t lo, std::int64_t n, std::int64_t k, Key key, Eligible eligible,
                                     reduce_scratch<BLOCK>& sc, select_scratch& ss) {
  unsigned long long mn = ~0ull, mx = 0ull;
  long long cnt = 0;
  for (std::int64_t t = lo + threadIdx.x; t < lo + n; t += BLOCK)
    if (eligible(t)) {
      const unsigned long long K = key(t);
      mn = K < mn ? K : mn;
      mx = K > mx ? K : mx;
      ++cnt;
    }
  cnt = block_allreduce<BLOCK>(cnt, sum_op{}, sc.i);
  if (k <= 0 || cnt == 0) return topk_threshold{false, 0};
  mx = block_allreduce<BLOCK>(mx, max_op{}, sc.u);
  if (k >= cnt) return topk_threshold{true, mx};
  mn = block_allreduce<BLOCK>(mn, min_op{}, sc.u);
  return topk_threshold{true, block_select_kth<BLOCK>(lo, n, k, mn, mx, key, eligible, ss)};
}

/// Key of the gradient top-k (largest first) and of the similarity selection (smallest first).
__device__ __forceinline__ std::uint64_t largest_first_key(float v, std::int64_t t, int ib) {
  return (static_cast<std::uint64_t>(descending_key(v)) << ib) | static_cast<std::uint64_t>(t);
}
__device__ __forceinline__ std::uint64_t smallest_first_key(float v, std::int64_t t, int ib) {
  return (static_cast<std::uint64_t>(ascending_key(v)) << ib) | static_cast<std::uint64_t>(t);
}

/// Counts of a selection, as the kernels see them.
struct selection_geometry {
  std::int64_t R, N, H, W;
  std::int64_t initial, gradient, similarity, window_start, window;
  int ib;  ///< index bits of N
};

inline selection_geometry make_geometry(std::int64_t R, std::int64_t N, grid_shape g, const selection_counts& c) noexcept {
  selection_geometry s;
  s.R = R;
  s.N = N;
  s.H = g.height;
  s.W = g.width;
  s.initial = c.initial;
  s.gradient = c.gradient;
  s.similarity = c.similarity;
  s.window_start = c.window_start;
  s.window = c.window;
  s.ib = index_bits(N);
  return s;
}

// --- the fused selection -------------------------------------------------------------------

struct select_args {
  selection_geometry geo;
  const float* entropy;
  const float* sim;
  float* smooth_out;     ///< or null
  float* grad_out;       ///< or null
  float* sim_copy;       ///< or null: copy of a given similarity
  float* smooth_ws;      ///< global scratch [R, N] when N > select_smem_tokens
  float* grad_ws;
  std::uint8_t* initial_out;
  std::uint8_t* gradient_out;
  std::uint8_t* lowsim_out;
  std::uint8_t* critical;
  std::int32_t* counts;
  bool use_smem;
};

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) select_critical_kernel(select_args a) {
  GCPO_DYNAMIC_SHARED(float, sel_smem);
  __shared__ reduce_scratch<BLOCK> sc;
  __shared__ select_scratch ss;
  const selection_geometry& g = a.geo;
  const std::int64_t N = g.N;
  const int ib = g.ib;
  for (std::int64_t r = blockIdx.x; r < g.R; r += gridDim.x) {
    const std::int64_t o = r * N;
    __syncthreads();  // the previous rollout is done with the shared maps
    float* M = a.use_smem ? sel_smem : (a.smooth_out ? a.smooth_out : a.smooth_ws) + o;
    float* Gm = a.use_smem ? sel_smem + N : (a.grad_out ? a.grad_out : a.grad_ws) + o;
    const float* E = a.entropy + o;
    for (std::int64_t t = threadIdx.x; t < N; t += BLOCK) {
      const float v = smooth_at(E, t / g.W, t % g.W, g.W);
      M[t] = v;
      if (a.use_smem && a.smooth_out) a.smooth_out[o + t] = v;
    }
    __syncthreads();
    for (std::int64_t t = threadIdx.x; t < N; t += BLOCK) {
      const float v = gradient_at(M, t / g.W, t % g.W, g.H, g.W);
      Gm[t] = v;
      if (a.use_smem && a.grad_out) a.grad_out[o + t] = v;
    }
    __syncthreads();

    // Entropy-gradient tokens: top-k of the window.
    const float* Gc = Gm;
    auto gkey = [Gc, ib](std::int64_t t) { return largest_first_key(Gc[t], t, ib); };
    const topk_threshold tg = block_topk<BLOCK>(g.window_start, g.window, g.gradient, gkey,
                                                [](std::int64_t) { return true; }, sc, ss);
    const std::int64_t wlo = g.window_start, whi = g.window_start + g.window;
    auto gsel = [=](std::int64_t t) { return tg.any && t >= wlo && t < whi && gkey(t) <= tg.tau; };

    // Low-similarity tokens among the rest.
    const float* S = a.sim + o;
    if (a.use_smem) {  // M is free now: stage the similarity row there
      for (std::int64_t t = threadIdx.x; t < N; t += BLOCK) M[t] = S[t];
      __syncthreads();
      S = M;
    }
    if (a.sim_copy)
      for (std::int64_t t = threadIdx.x; t < N; t += BLOCK) a.sim_copy[o + t] = S[t];
    const std::int64_t n_init = g.initial;
    auto skey = [S, ib](std::int64_t t) { return smallest_first_key(S[t], t, ib); };
    auto selig = [=](std::int64_t t) { return t >= n_init && !gsel(t); };
    const topk_threshold ts = block_topk<BLOCK>(0, N, g.similarity, skey, selig, sc, ss);

    int count = 0;
    for (std::int64_t t = threadIdx.x; t < N; t += BLOCK) {
      const std::uint8_t mi = t < n_init ? 1 : 0;
      const std::uint8_t mg = gsel(t) ? 1 : 0;
      const std::uint8_t ms = (ts.any && selig(t) && skey(t) <= ts.tau) ? 1 : 0;
      const std::uint8_t mc = (mi | mg | ms) ? 1 : 0;
      if (a.initial_out) a.initial_out[o + t] = mi;
      if (a.gradient_out) a.gradient_out[o + t] = mg;
      if (a.lowsim_out) a.lowsim_out[o + t] = ms;
      a.critical[o + t] = mc;
      count += mc;
    }
    count = block_allreduce<BLOCK>(count, sum_op{}, sc.n);
    if (a.counts && threadIdx.x == 0) a.counts[r] = count;
  }
}

inline status launch_select_critical(const select_args& a, cudaStream_t stream) noexcept {
  if (a.geo.R == 0) return ok();
  const std::size_t smem = a.use_smem ? static_cast<std::size_t>(2 * a.geo.N) * sizeof(float) : 0;
  GCPO_LAUNCH(grid_for(a.geo.R, 1), sel_block, smem, stream, select_critical_kernel<sel_block>)(a);
  return check_launch("select_critical_kernel");
}

// --- the single steps ----------------------------------------------------------------------

__global__ void initial_mask_kernel(std::uint8_t* mask, std::int64_t total, std::int64_t N, std::int64_t n_init) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    mask[i] = (i % N) < n_init ? 1 : 0;
}

__global__ void smoothed_entropy_kernel(const float* E, float* M, std::int64_t total, std::int64_t N, std::int64_t W) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / N, t = i - r * N;
    M[i] = smooth_at(E + r * N, t / W, t % W, W);
  }
}

__global__ void entropy_gradient_kernel(const float* M, float* Gm, std::int64_t total, std::int64_t N, std::int64_t H,
                                        std::int64_t W) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / N, t = i - r * N;
    Gm[i] = gradient_at(M + r * N, t / W, t % W, H, W);
  }
}

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) gradient_topk_kernel(const float* grad, std::uint8_t* mask, selection_geometry g) {
  __shared__ reduce_scratch<BLOCK> sc;
  __shared__ select_scratch ss;
  const int ib = g.ib;
  for (std::int64_t r = blockIdx.x; r < g.R; r += gridDim.x) {
    const float* Gr = grad + r * g.N;
    auto key = [Gr, ib](std::int64_t t) { return largest_first_key(Gr[t], t, ib); };
    const topk_threshold th = block_topk<BLOCK>(g.window_start, g.window, g.gradient, key,
                                                [](std::int64_t) { return true; }, sc, ss);
    const std::int64_t wlo = g.window_start, whi = g.window_start + g.window;
    for (std::int64_t t = threadIdx.x; t < g.N; t += BLOCK)
      mask[r * g.N + t] = (th.any && t >= wlo && t < whi && key(t) <= th.tau) ? 1 : 0;
  }
}

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) low_similarity_kernel(const float* sim, const std::uint8_t* exclude,
                                                               std::uint8_t* mask, selection_geometry g) {
  __shared__ reduce_scratch<BLOCK> sc;
  __shared__ select_scratch ss;
  const int ib = g.ib;
  for (std::int64_t r = blockIdx.x; r < g.R; r += gridDim.x) {
    const float* Sr = sim + r * g.N;
    const std::uint8_t* Xr = exclude ? exclude + r * g.N : nullptr;
    auto key = [Sr, ib](std::int64_t t) { return smallest_first_key(Sr[t], t, ib); };
    auto elig = [Xr](std::int64_t t) { return Xr == nullptr || Xr[t] == 0; };
    const topk_threshold th = block_topk<BLOCK>(0, g.N, g.similarity, key, elig, sc, ss);
    for (std::int64_t t = threadIdx.x; t < g.N; t += BLOCK)
      mask[r * g.N + t] = (th.any && elig(t) && key(t) <= th.tau) ? 1 : 0;
  }
}

template <int BLOCK>
__global__ void __launch_bounds__(BLOCK) union_mask_kernel(const std::uint8_t* a, const std::uint8_t* b,
                                                           const std::uint8_t* c, std::uint8_t* out,
                                                           std::int32_t* counts, std::int64_t R, std::int64_t N) {
  __shared__ reduce_scratch<BLOCK> sc;
  for (std::int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    int cnt = 0;
    for (std::int64_t t = threadIdx.x; t < N; t += BLOCK) {
      const std::int64_t i = r * N + t;
      const std::uint8_t v = (a[i] | b[i] | (c ? c[i] : 0)) ? 1 : 0;
      out[i] = v;
      cnt += v;
    }
    cnt = block_allreduce<BLOCK>(cnt, sum_op{}, sc.n);
    if (counts && threadIdx.x == 0) counts[r] = cnt;
  }
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
