// gcpo/detail/cuda/token_stats.cuh - CUDA twin of token_stats and token_stats_backward.
//
// Forward: one pass over each row of V logits. A row belongs to one warp (many rows) or one
// block of 256 threads (few rows, long V). Each thread keeps the online state of the host twin
// (m = max so far; s = sum exp(x - m); t = sum exp(x - m) (x - m), rescaled when m grows) over
// its elements, read as 16-byte vectors from the first 16-byte boundary of the row (scalar
// head and tail, so any row stride and offset works); the states are merged in a fixed tree.
// entropy = log s - t / s, lse = m + log s, logprob = (x[token] / T - m) - log s. Bytes: the logits once,
// 12 bytes per row out, plus one gathered logit per row.
//
// Backward: one pass, grad[v] = (g / T) (onehot(token)_v - exp(x_v / T - lse)), reading the
// logits and writing the gradient as vectors when both rows share their alignment (in place
// allowed: each element is read, then written, by the same thread). Bytes: logits read once,
// gradient written once.
#pragma once

#include "common.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

/// Threads of a token_stats block; a row is a warp or the whole block.
constexpr int ts_block = 256;
/// Vectors in flight per thread.
constexpr int ts_unroll = 4;
/// Fewer rows than this (with V >= ts_long_row) go one row per block.
constexpr std::int64_t ts_block_rows_below = 4096;
constexpr std::int64_t ts_long_row = 1024;

/// Online softmax statistics of the elements a thread has seen.
/// (Plain data, so it can live in shared memory; start from online_empty().)
struct online_state {
  float m;   ///< max so far (-inf: nothing finite yet)
  float s;   ///< sum exp(y - m)
  float t;   ///< sum exp(y - m) (y - m)
  bool bad;  ///< a NaN or +inf was seen: the row's results are NaN
};

__device__ __forceinline__ online_state online_empty() {
  online_state st;
  st.m = -f_inf;
  st.s = 0.0f;
  st.t = 0.0f;
  st.bad = false;
  return st;
}

/// Adds n values (already divided by T) to the state.
template <int n>
__device__ __forceinline__ void online_add(online_state& st, const float (&y)[n]) {
  float cm = y[0];
  bool bad = !(y[0] < f_inf);
#pragma unroll
  for (int j = 1; j < n; ++j) {
    cm = fmaxf(cm, y[j]);
    bad |= !(y[j] < f_inf);
  }
  st.bad |= bad;
  if (cm > st.m) {
    if (st.m > -f_inf) {
      const float delta = st.m - cm;
      const float scale = __expf(delta);
      st.t = (st.t + st.s * delta) * scale;
      st.s *= scale;
    }
    st.m = cm;
  }
  if (st.m == -f_inf) return;  // only -inf so far: probability 0
#pragma unroll
  for (int j = 0; j < n; ++j) {
    const float d = fmaxf(y[j] - st.m, -87.0f);
    const float e = __expf(d);
    st.s += e;
    st.t = fmaf(e, d, st.t);
  }
}

/// Merges state b into a.
__device__ __forceinline__ void online_merge(online_state& a, const online_state& b) {
  a.bad |= b.bad;
  if (b.m == -f_inf) return;
  if (a.m == -f_inf) {
    a.m = b.m;
    a.s = b.s;
    a.t = b.t;
    return;
  }
  const float M = fmaxf(a.m, b.m);
  const float da = a.m - M, db = b.m - M;
  const float ca = __expf(da), cb = __expf(db);
  a.t = (a.t + a.s * da) * ca + (b.t + b.s * db) * cb;
  a.s = a.s * ca + b.s * cb;
  a.m = M;
}

__device__ __forceinline__ online_state shfl_down_state(const online_state& st, int delta) {
  online_state o;
  o.m = __shfl_down_sync(0xffffffffu, st.m, delta);
  o.s = __shfl_down_sync(0xffffffffu, st.s, delta);
  o.t = __shfl_down_sync(0xffffffffu, st.t, delta);
  o.bad = __shfl_down_sync(0xffffffffu, st.bad ? 1 : 0, delta) != 0;
  return o;
}

/// Where a row's vector body starts: `head` scalar elements bring `p` to a 16-byte boundary.
/// Returns -1 when `p` is not even aligned to its element size (then: scalar row).
template <class T>
__device__ __forceinline__ std::int64_t vector_head(const T* p, std::int64_t V) {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  if (a % sizeof(T) != 0) return -1;
  std::int64_t head = static_cast<std::int64_t>(((16u - a % 16u) % 16u) / sizeof(T));
  return head < V ? head : V;
}

/// Accumulates the row `p[0, V)` (times inv_t) into `st`; the row's threads are `lane` of `nthreads`.
template <class T>
__device__ __forceinline__ void row_stats(const T* __restrict__ p, std::int64_t V, float inv_t, int lane, int nthreads,
                                          online_state& st) {
  constexpr int VEC = vec16<T>::n;
  std::int64_t head = vector_head(p, V);
  if (head < 0) head = V;
  const std::int64_t nvec = (V - head) / VEC;
  const std::int64_t tail = head + nvec * VEC;
  for (std::int64_t j = lane; j < head; j += nthreads) {
    const float y[1] = {__fmul_rn(load_f(p[j]), inv_t)};
    online_add(st, y);
  }
  const uint4* vp = reinterpret_cast<const uint4*>(p + head);
  for (std::int64_t j0 = lane; j0 < nvec; j0 += static_cast<std::int64_t>(nthreads) * ts_unroll) {
    uint4 buf[ts_unroll];
#pragma unroll
    for (int u = 0; u < ts_unroll; ++u) {
      const std::int64_t j = j0 + static_cast<std::int64_t>(u) * nthreads;
      if (j < nvec) buf[u] = __ldg(vp + j);
    }
#pragma unroll
    for (int u = 0; u < ts_unroll; ++u) {
      const std::int64_t j = j0 + static_cast<std::int64_t>(u) * nthreads;
      if (j < nvec) {
        float y[VEC];
        unpack(buf[u], y, T{});
#pragma unroll
        for (int q = 0; q < VEC; ++q) y[q] = __fmul_rn(y[q], inv_t);
        online_add(st, y);
      }
    }
  }
  for (std::int64_t j = tail + lane; j < V; j += nthreads) {
    const float y[1] = {__fmul_rn(load_f(p[j]), inv_t)};
    online_add(st, y);
  }
}

struct token_stats_args {
  const void* logits;
  std::int64_t s0, s1;  ///< strides of logits (elements)
  std::int64_t N, V, rows;
  const void* tokens;   ///< null: no logprob
  float* entropy;
  float* logprob;
  float* lse;
  float inv_t;
};

/// Writes a row's outputs from its merged state (one thread).
template <class T, class I>
__device__ __forceinline__ void write_row_stats(const token_stats_args& a, std::int64_t row, const online_state& st,
                                                float x_tok, bool tok_ok) {
  const float qnan = __int_as_float(0x7fc00000);
  float lse, ent, lp;
  if (st.bad) {
    lse = ent = lp = qnan;
  } else if (st.m == -f_inf) {
    lse = -f_inf;
    ent = qnan;
    lp = qnan;  // as the host twin: no max, no log-prob
  } else {
    const float log_s = logf(st.s);
    lse = st.m + log_s;
    ent = log_s - st.t / st.s;
    lp = (x_tok - st.m) - log_s;  // not x - lse: lse is rounded at the magnitude of m
  }
  if (a.entropy) a.entropy[row] = ent;
  if (a.lse) a.lse[row] = lse;
  if (a.logprob) a.logprob[row] = tok_ok ? lp : qnan;
}

/// The token's logit (divided by T) and whether the token is in [0, V).
template <class T, class I>
__device__ __forceinline__ float token_logit(const token_stats_args& a, const T* p, std::int64_t row, bool& ok) {
  ok = false;
  if (a.tokens == nullptr || a.logprob == nullptr) return 0.0f;
  const std::int64_t k = static_cast<std::int64_t>(static_cast<const I*>(a.tokens)[row]);
  if (k < 0 || k >= a.V) return 0.0f;
  ok = true;
  return __fmul_rn(load_f(p[k]), a.inv_t);
}

/// A warp per row (at most 64 registers: 4 blocks, 32 warps per SM).
template <class T, class I>
__global__ void __launch_bounds__(ts_block, 4) token_stats_warp_kernel(token_stats_args a) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (ts_block / 32);
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * (ts_block / 32) + (threadIdx.x >> 5); row < a.rows;
       row += warps) {
    const std::int64_t r = row / a.N, n = row - r * a.N;
    const T* p = static_cast<const T*>(a.logits) + r * a.s0 + n * a.s1;
    bool tok_ok = false;
    const float x_tok = lane == 0 ? token_logit<T, I>(a, p, row, tok_ok) : 0.0f;  // issued early
    online_state st = online_empty();
    row_stats(p, a.V, a.inv_t, lane, 32, st);
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) {
      const online_state o = shfl_down_state(st, d);
      online_merge(st, o);
    }
    if (lane == 0) write_row_stats<T, I>(a, row, st, x_tok, tok_ok);
  }
}

/// A block per row.
template <class T, class I>
__global__ void __launch_bounds__(ts_block) token_stats_block_kernel(token_stats_args a) {
  __shared__ float sm[ts_block / 32], ss[ts_block / 32], st_[ts_block / 32];
  __shared__ int sb[ts_block / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (std::int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const std::int64_t r = row / a.N, n = row - r * a.N;
    const T* p = static_cast<const T*>(a.logits) + r * a.s0 + n * a.s1;
    bool tok_ok = false;
    const float x_tok = threadIdx.x == 0 ? token_logit<T, I>(a, p, row, tok_ok) : 0.0f;
    online_state st = online_empty();
    row_stats(p, a.V, a.inv_t, static_cast<int>(threadIdx.x), ts_block, st);
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) {
      const online_state o = shfl_down_state(st, d);
      online_merge(st, o);
    }
    __syncthreads();  // the previous row's reads of the scratch are done
    if (lane == 0) {
      sm[warp] = st.m;
      ss[warp] = st.s;
      st_[warp] = st.t;
      sb[warp] = st.bad ? 1 : 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < ts_block / 32; ++w) {
        online_state o;
        o.m = sm[w];
        o.s = ss[w];
        o.t = st_[w];
        o.bad = sb[w] != 0;
        online_merge(st, o);
      }
      write_row_stats<T, I>(a, row, st, x_tok, tok_ok);
    }
  }
}

template <class T, class I>
status launch_token_stats(const_tensor_view logits, const_tensor_view tokens, tensor_view entropy, tensor_view logprob,
                          tensor_view lse, float inv_t, cudaStream_t stream) noexcept {
  token_stats_args a;
  a.logits = logits.data;
  a.s0 = logits.strides[0];
  a.s1 = logits.strides[1];
  a.N = logits.shape[1];
  a.V = logits.shape[2];
  a.rows = logits.shape[0] * logits.shape[1];
  a.tokens = tokens.present() ? tokens.data : nullptr;
  a.entropy = entropy.present() ? entropy.as<float>() : nullptr;
  a.logprob = logprob.present() ? logprob.as<float>() : nullptr;
  a.lse = lse.present() ? lse.as<float>() : nullptr;
  a.inv_t = inv_t;
  if (a.rows == 0) return ok();
  if (a.rows < ts_block_rows_below && a.V >= ts_long_row) {
    GCPO_LAUNCH(grid_for(a.rows, 1), ts_block, 0, stream, token_stats_block_kernel<T, I>)(a);
    return check_launch("token_stats_block_kernel");
  }
  GCPO_LAUNCH(grid_for(a.rows, ts_block / 32), ts_block, 0, stream, token_stats_warp_kernel<T, I>)(a);
  return check_launch("token_stats_warp_kernel");
}

// --- backward ------------------------------------------------------------------------------

struct token_stats_backward_args {
  const void* logits;
  std::int64_t ls0, ls1;
  void* grad;
  std::int64_t gs0, gs1;
  const void* tokens;
  const float* lse;
  const float* grad_logprob;
  std::int64_t N, V, rows;
  float inv_t;
};

/// Writes the gradient of one row; the row's threads are `lane` of `nthreads`.
template <class T, class G>
__device__ __forceinline__ void backward_row(const T* p, G* q, std::int64_t V, std::int64_t k, float g, float l,
                                             float inv_t, int lane, int nthreads) {
  constexpr int VEC = vec16<T>::n;
  // Logits and gradient go by vectors when their rows reach the vector boundary together.
  std::int64_t head = vector_head(p, V);
  const std::uintptr_t qa = reinterpret_cast<std::uintptr_t>(q);
  const bool same_phase = head >= 0 && qa % sizeof(G) == 0 &&
                          static_cast<std::int64_t>((qa / sizeof(G)) % VEC) ==
                              static_cast<std::int64_t>((reinterpret_cast<std::uintptr_t>(p) / sizeof(T)) % VEC);
  if (!same_phase) head = V;
  const std::int64_t nvec = (V - head) / VEC;
  const std::int64_t tail = head + nvec * VEC;
  auto one = [&](std::int64_t v, float x) {
    const float pv = expf(__fsub_rn(__fmul_rn(x, inv_t), l));
    return __fmul_rn(g, __fsub_rn(v == k ? 1.0f : 0.0f, pv));
  };
  for (std::int64_t j = lane; j < head; j += nthreads) q[j] = store_f<G>(one(j, load_f(p[j])));
  const uint4* vp = reinterpret_cast<const uint4*>(p + head);
  for (std::int64_t j0 = lane; j0 < nvec; j0 += static_cast<std::int64_t>(nthreads) * ts_unroll) {
    uint4 buf[ts_unroll];
#pragma unroll
    for (int u = 0; u < ts_unroll; ++u) {
      const std::int64_t j = j0 + static_cast<std::int64_t>(u) * nthreads;
      if (j < nvec) buf[u] = vp[j];  // plain load: the gradient may overwrite the logits
    }
#pragma unroll
    for (int u = 0; u < ts_unroll; ++u) {
      const std::int64_t j = j0 + static_cast<std::int64_t>(u) * nthreads;
      if (j < nvec) {
        float x[VEC];
        unpack(buf[u], x, T{});
        const std::int64_t v0 = head + j * VEC;
#pragma unroll
        for (int e = 0; e < VEC; ++e) x[e] = one(v0 + e, x[e]);
        store_vec<G, VEC>(q + v0, x);
      }
    }
  }
  for (std::int64_t j = tail + lane; j < V; j += nthreads) q[j] = store_f<G>(one(j, load_f(p[j])));
}

template <class T, class G, class I>
__device__ __forceinline__ void backward_one_row(const token_stats_backward_args& a, std::int64_t row, int lane,
                                                 int nthreads) {
  const std::int64_t r = row / a.N, n = row - r * a.N;
  const T* p = static_cast<const T*>(a.logits) + r * a.ls0 + n * a.ls1;
  G* q = static_cast<G*>(a.grad) + r * a.gs0 + n * a.gs1;
  const std::int64_t k = static_cast<std::int64_t>(static_cast<const I*>(a.tokens)[row]);
  if (k < 0 || k >= a.V) {  // out-of-range token: zero gradient row (see gcpo/cuda.hpp)
    for (std::int64_t j = lane; j < a.V; j += nthreads) q[j] = store_f<G>(0.0f);
    return;
  }
  const float g = __fmul_rn(a.grad_logprob[row], a.inv_t);
  backward_row<T, G>(p, q, a.V, k, g, a.lse[row], a.inv_t, lane, nthreads);
}

template <class T, class G, class I>
__global__ void __launch_bounds__(ts_block) token_stats_backward_warp_kernel(token_stats_backward_args a) {
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (ts_block / 32);
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * (ts_block / 32) + (threadIdx.x >> 5); row < a.rows;
       row += warps)
    backward_one_row<T, G, I>(a, row, static_cast<int>(threadIdx.x & 31), 32);
}

template <class T, class G, class I>
__global__ void __launch_bounds__(ts_block) token_stats_backward_block_kernel(token_stats_backward_args a) {
  for (std::int64_t row = blockIdx.x; row < a.rows; row += gridDim.x)
    backward_one_row<T, G, I>(a, row, static_cast<int>(threadIdx.x), ts_block);
}

template <class T, class G, class I>
status launch_token_stats_backward(const_tensor_view logits, const_tensor_view tokens, const_tensor_view lse,
                                   const_tensor_view grad_logprob, tensor_view grad_logits, float inv_t,
                                   cudaStream_t stream) noexcept {
  token_stats_backward_args a;
  a.logits = logits.data;
  a.ls0 = logits.strides[0];
  a.ls1 = logits.strides[1];
  a.grad = grad_logits.data;
  a.gs0 = grad_logits.strides[0];
  a.gs1 = grad_logits.strides[1];
  a.tokens = tokens.data;
  a.lse = lse.as<const float>();
  a.grad_logprob = grad_logprob.as<const float>();
  a.N = logits.shape[1];
  a.V = logits.shape[2];
  a.rows = logits.shape[0] * logits.shape[1];
  a.inv_t = inv_t;
  if (a.rows == 0) return ok();
  if (a.rows < ts_block_rows_below && a.V >= ts_long_row) {
    GCPO_LAUNCH(grid_for(a.rows, 1), ts_block, 0, stream, token_stats_backward_block_kernel<T, G, I>)(a);
    return check_launch("token_stats_backward_block_kernel");
  }
  GCPO_LAUNCH(grid_for(a.rows, ts_block / 32), ts_block, 0, stream, token_stats_backward_warp_kernel<T, G, I>)(a);
  return check_launch("token_stats_backward_warp_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
