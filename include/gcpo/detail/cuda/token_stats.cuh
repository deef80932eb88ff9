// gcpo/detail/cuda/token_stats.cuh - CUDA twin of token_stats and token_stats_backward.
//
// Forward: one pass over each row of V logits, in the log2 domain. With c = log2(e) / T, each
// element costs one FMA for its scaled logit d = x c - m c (m: the running maximum of the raw
// logits, m c rounded once when m grows), one flushing ex2.approx.ftz, and two accumulations:
// s = sum 2^d, t = sum 2^d max(d, -127) (below -126, 2^d flushes to +0, so the clamp only keeps a
// -inf logit from giving 0 * -inf). Nothing is checked per element: a NaN logit makes s NaN
// (ex2 passes it through), a +inf logit makes the row's maximum +inf (and its own term
// 2^(inf - inf) NaN), and a row of only -inf keeps the maximum at -inf with s = 0 (s = NaN if a
// NaN is among them); the row's final (max, s) then give exactly the host twin's results (all
// three NaN; all three NaN; lse = -inf with NaN entropy and log-prob). Rescaling exponents are
// floored at -127 as well, so -inf - -inf and inf - inf scale by +0 instead of NaN.
// The maximum of a chunk of 8 vectors is taken on the raw elements (max.bf16x2 / max.f16x2 on
// packed 16-bit pairs), so the running maximum is compared once per chunk.
// Threads are merged in a fixed tree: warp maximum, each lane rescaled to it, then sums
// (butterflies, so every lane holds the same bits); across the warps of a block, warp 0 does
// the same with their results. With M = m c of the row and S, Tt its sums:
//   lse = ln2 M + ln S,  entropy = ln S - ln2 Tt / S,  logprob = ln2 (x_k c - M) - ln S.
// A row is one warp (short rows) or one block of 256 threads (rows of 16 KB or more, or fewer
// than 4096 rows of 1024 or more): a block per row gives 8.7 and 34.9 waves of 528 resident
// blocks (4 per SM, 132 SMs) at the Janus shapes R = 8 / 32, N = 576, V = 16384 (15.5 and 62 at
// N = 1024), where a warp per row gave 1.09 waves at R = 8, N = 576. Each thread keeps eight
// 16-byte loads in flight (32 KB per block). Rows are read as 16-byte vectors from the first
// 16-byte boundary of the row (scalar head and tail, so any row stride and offset works).
// Bytes: the logits once, 12 bytes per row out, plus one gathered logit per row.
//
// Backward: one pass, grad[v] = (g / T) (onehot(token)_v - 2^(x_v c - lse log2(e))), the same
// ex2.approx.ftz (a probability below 2^-126 is 0), the 16-bit gradients rounded two at a time by
// cvt.rn.bf16x2.f32 / cvt.rn.f16x2.f32 (round to nearest even, as the host twin; NaN gives the
// canonical NaN). Logits are read (four 16-byte loads in flight per thread) and the gradient
// written as vectors when both rows share their alignment. In place is allowed: each element is
// read, then written, by the same thread, and the token's logit, which every thread of the row
// reads first (its g (1 - p_k) replaces the token's element in registers), before a
// __syncwarp / __syncthreads that precedes any write. Bytes: logits read once, gradient
// written once.
//
// Limit: a row whose largest logit m has |m| / T above FLT_MAX / log2(e) (2.4e38) overflows m c
// and gives NaN (or lse = -inf) where the host twin, which scales by 1 / T only, is finite up
// to FLT_MAX.
//
// The PTX instructions are written as inline assembly; under the test-only SIMT simulator
// (GCPO_CUDA_SIMULATOR) the same functions call its models of them (tests/sim/include/gcpo_sim/ptx.hpp).
#pragma once

#include "common.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

/// Threads of a token_stats block; a row is a warp or the whole block.
constexpr int ts_block = 256;
/// Resident blocks per SM the kernels are compiled for (at most 64 registers a thread).
constexpr int ts_min_blocks = 4;
/// 16-byte vectors in flight per thread: forward, backward (which also has its stores in flight).
constexpr int ts_unroll = 8;
constexpr int ts_bwd_unroll = 4;
/// A block per row: rows of at least ts_block_row_bytes, or fewer than ts_block_rows_below rows
/// of at least ts_long_row elements.
constexpr std::int64_t ts_block_row_bytes = 16384;
constexpr std::int64_t ts_block_rows_below = 4096;
constexpr std::int64_t ts_long_row = 1024;
/// Floor of a scaled logit in the t sum and of a rescaling exponent (2^-127 flushes to +0).
constexpr float ts_d_min = -127.0f;
constexpr float ts_ln2 = 0.693147180559945309f;
constexpr double ts_log2e = 1.44269504088896340736;

// --- PTX ------------------------------------------------------------------------------------

/// ex2.approx.ftz.f32: 2^x within 2 ulp; subnormal results flush to +0, 2^-inf = +0, NaN stays NaN.
__device__ __forceinline__ float ex2_approx_ftz(float x) {
#if defined(GCPO_CUDA_SIMULATOR)
  return ::gcpo_sim::ptx::ex2_approx_ftz_f32(x);
#else
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#endif
}

/// Two floats rounded to nearest even into one 32-bit word of 16-bit floats: `lo` in bits
/// 15..0, `hi` in bits 31..16 (cvt.rn.bf16x2.f32 / cvt.rn.f16x2.f32, sm_80+).
__device__ __forceinline__ std::uint32_t cvt_rn_x2(float lo, float hi, bfloat16) {
#if defined(GCPO_CUDA_SIMULATOR)
  return ::gcpo_sim::ptx::cvt_rn_bf16x2_f32(hi, lo);
#else
  std::uint32_t d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
#endif
}
__device__ __forceinline__ std::uint32_t cvt_rn_x2(float lo, float hi, float16) {
#if defined(GCPO_CUDA_SIMULATOR)
  return ::gcpo_sim::ptx::cvt_rn_f16x2_f32(hi, lo);
#else
  std::uint32_t d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
#endif
}

/// Lane-wise maximum of two pairs of 16-bit floats (max.bf16x2 / max.f16x2: NaN loses to a number).
__device__ __forceinline__ std::uint32_t max_x2(std::uint32_t a, std::uint32_t b, bfloat16) {
#if defined(GCPO_CUDA_SIMULATOR)
  return ::gcpo_sim::ptx::max_bf16x2(a, b);
#else
  std::uint32_t d;
  asm("max.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
#endif
}
__device__ __forceinline__ std::uint32_t max_x2(std::uint32_t a, std::uint32_t b, float16) {
#if defined(GCPO_CUDA_SIMULATOR)
  return ::gcpo_sim::ptx::max_f16x2(a, b);
#else
  std::uint32_t d;
  asm("max.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
  return d;
#endif
}

// --- natural-log online state (generation_step, sampling.cuh) ---------------------------------

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


// --- forward: per-thread state --------------------------------------------------------------

/// What a thread has seen of a row: m = the largest raw logit (-inf: none finite yet; NaN is
/// never taken), nm = -(m c) rounded (0 while m = -inf), and the sums of 2^d, d = x c + nm.
struct ts_state {
  float m, nm, s, t;
};

__device__ __forceinline__ ts_state ts_empty() {
  ts_state st;
  st.m = -f_inf;
  st.nm = 0.0f;
  st.s = 0.0f;
  st.t = 0.0f;
  return st;
}

/// The running maximum grows to cm (> st.m): the sums move to the new offset.
__device__ __forceinline__ void ts_raise(ts_state& st, float cm, float c) {
  const float nm = -(cm * c);
  if (st.m > -f_inf) {  // else s and t hold only zeros (or a NaN): nothing to rescale
    const float da = fmaxf(nm - st.nm, ts_d_min);  // <= 0; -inf (cm = +inf) -> the floor
    const float k = ex2_approx_ftz(da);
    st.t = fmaf(st.s, da, st.t) * k;
    st.s *= k;
  }
  st.m = cm;
  st.nm = nm;
}

/// One element, the running maximum already at least x (or x NaN).
__device__ __forceinline__ void ts_accumulate(ts_state& st, float x, float c) {
  const float d = fmaf(x, c, st.nm);
  const float e = ex2_approx_ftz(d);
  st.s += e;
  st.t = fmaf(e, fmaxf(d, ts_d_min), st.t);
}

__device__ __forceinline__ void ts_add_scalar(ts_state& st, float x, float c) {
  if (x > st.m) ts_raise(st, x, c);
  ts_accumulate(st, x, c);
}

/// Largest element of U 16-byte vectors (NaN skipped; NaN if all are NaN).
template <int U>
__device__ __forceinline__ float chunk_max(const uint4 (&b)[U], float) {
  float m = fmaxf(fmaxf(__uint_as_float(b[0].x), __uint_as_float(b[0].y)),
                  fmaxf(__uint_as_float(b[0].z), __uint_as_float(b[0].w)));
#pragma unroll
  for (int u = 1; u < U; ++u)
    m = fmaxf(m, fmaxf(fmaxf(__uint_as_float(b[u].x), __uint_as_float(b[u].y)),
                       fmaxf(__uint_as_float(b[u].z), __uint_as_float(b[u].w))));
  return m;
}
template <int U, class H>
__device__ __forceinline__ float chunk_max(const uint4 (&b)[U], H tag) {
  std::uint32_t w = max_x2(max_x2(b[0].x, b[0].y, tag), max_x2(b[0].z, b[0].w, tag), tag);
#pragma unroll
  for (int u = 1; u < U; ++u)
    w = max_x2(w, max_x2(max_x2(b[u].x, b[u].y, tag), max_x2(b[u].z, b[u].w, tag), tag), tag);
  float lo, hi;
  unpack_word(w, lo, hi, tag);
  return fmaxf(lo, hi);
}

/// U 16-byte vectors of T: one maximum test, then every element.
template <class T, int U>
__device__ __forceinline__ void ts_add_vectors(ts_state& st, const uint4 (&b)[U], float c) {
  constexpr int VEC = vec16<T>::n;
  const float cm = chunk_max(b, T{});
  if (cm > st.m) ts_raise(st, cm, c);
#pragma unroll
  for (int u = 0; u < U; ++u) {
    float x[VEC];
    unpack(b[u], x, T{});
#pragma unroll
    for (int q = 0; q < VEC; ++q) ts_accumulate(st, x[q], c);
  }
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

/// Accumulates the row `p[0, V)` into `st`; the row's threads are `lane` of NT (a warp or the
/// block: a compile-time stride, so the loads of a chunk are one address plus constant offsets).
template <class T, int NT>
__device__ __forceinline__ void row_stats(const T* __restrict__ p, std::int64_t V, float c, int lane, ts_state& st) {
  constexpr int VEC = vec16<T>::n;
  std::int64_t head = vector_head(p, V);
  if (head < 0) head = V;
  const std::int64_t nvec = (V - head) / VEC;
  const std::int64_t tail = head + nvec * VEC;
  for (std::int64_t j = lane; j < head; j += NT) ts_add_scalar(st, load_f(p[j]), c);
  const uint4* vp = reinterpret_cast<const uint4*>(p + head) + lane;
  std::int64_t left = nvec - lane;  // vectors from this thread's next one to the end of the row
  // Whole chunks: ts_unroll loads issued before any is used.
  for (; left > (ts_unroll - 1) * NT; left -= ts_unroll * NT, vp += ts_unroll * NT) {
    uint4 b[ts_unroll];
#pragma unroll
    for (int u = 0; u < ts_unroll; ++u) b[u] = __ldg(vp + u * NT);
    ts_add_vectors<T>(st, b, c);
  }
  for (; left > 0; left -= NT, vp += NT) {
    const uint4 b[1] = {__ldg(vp)};
    ts_add_vectors<T>(st, b, c);
  }
  for (std::int64_t k = tail + lane; k < V; k += NT) ts_add_scalar(st, load_f(p[k]), c);
}

/// m c of a thread's state (-inf when it saw no finite maximum): the offset of its sums.
__device__ __forceinline__ float ts_offset(const ts_state& st) { return st.m > -f_inf ? -st.nm : -f_inf; }

/// Merges (M, s, t) over the 32 lanes of a warp; every lane ends with the same bits. Lanes
/// with M = -inf carry s, t in {0, NaN}; a lane's exponent M_lane - M is floored at -127, so
/// -inf - M, -inf - -inf and inf - inf all scale by 2^-127 = +0 (a NaN stays NaN).
__device__ __forceinline__ void ts_warp_merge(float& m2, float& s, float& t) {
  float M = m2;
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
  const float da = fmaxf(m2 - M, ts_d_min);
  const float k = ex2_approx_ftz(da);
  t = fmaf(s, da, t) * k;
  s *= k;
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) {
    s += __shfl_xor_sync(0xffffffffu, s, o);
    t += __shfl_xor_sync(0xffffffffu, t, o);
  }
  m2 = M;
}

struct token_stats_args {
  const void* logits;
  std::int64_t s0, s1;  ///< strides of logits (elements)
  std::int64_t N, V, rows;
  const void* tokens;   ///< null: no logprob
  float* entropy;
  float* logprob;
  float* lse;
  float c;  ///< log2(e) / T
};

/// Writes a row's outputs from its merged (M = m c, S, Tt) (one thread).
template <class T, class I>
__device__ __forceinline__ void write_row_stats(const token_stats_args& a, std::int64_t row, float M, float S,
                                                float Tt, float x_tok, bool tok_ok) {
  const float qnan = __int_as_float(0x7fc00000);
  float lse, ent, lp;
  if (!(S == S) || M == f_inf) {  // a NaN logit (the sum) or a +inf one (the maximum)
    lse = ent = lp = qnan;
  } else if (M == -f_inf) {  // only -inf: as the host twin, no maximum and no log-prob
    lse = -f_inf;
    ent = qnan;
    lp = qnan;
  } else {
    const float ln_s = logf(S);
    lse = fmaf(M, ts_ln2, ln_s);
    ent = fmaf(-ts_ln2, Tt / S, ln_s);
    lp = fmaf(fmaf(x_tok, a.c, -M), ts_ln2, -ln_s);  // not x - lse: lse is rounded at the magnitude of M
  }
  if (a.entropy) a.entropy[row] = ent;
  if (a.lse) a.lse[row] = lse;
  if (a.logprob) a.logprob[row] = tok_ok ? lp : qnan;
}

/// The token's raw logit and whether the token is in [0, V).
template <class T, class I>
__device__ __forceinline__ float token_logit(const token_stats_args& a, const T* p, std::int64_t row, bool& ok) {
  ok = false;
  if (a.tokens == nullptr || a.logprob == nullptr) return 0.0f;
  const std::int64_t k = static_cast<std::int64_t>(static_cast<const I*>(a.tokens)[row]);
  if (k < 0 || k >= a.V) return 0.0f;
  ok = true;
  return load_f(p[k]);
}

/// A warp per row.
template <class T, class I>
__global__ void __launch_bounds__(ts_block, ts_min_blocks) token_stats_warp_kernel(token_stats_args a) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (ts_block / 32);
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * (ts_block / 32) + (threadIdx.x >> 5); row < a.rows;
       row += warps) {
    const std::int64_t r = row / a.N, n = row - r * a.N;
    const T* p = static_cast<const T*>(a.logits) + r * a.s0 + n * a.s1;
    bool tok_ok = false;
    const float x_tok = lane == 0 ? token_logit<T, I>(a, p, row, tok_ok) : 0.0f;  // issued early
    ts_state st = ts_empty();
    row_stats<T, 32>(p, a.V, a.c, lane, st);
    float M = ts_offset(st), S = st.s, Tt = st.t;
    ts_warp_merge(M, S, Tt);
    if (lane == 0) write_row_stats<T, I>(a, row, M, S, Tt, x_tok, tok_ok);
  }
}

/// A block per row.
template <class T, class I>
__global__ void __launch_bounds__(ts_block, ts_min_blocks) token_stats_block_kernel(token_stats_args a) {
  constexpr int warps = ts_block / 32;
  __shared__ float sm[warps], ss[warps], st_[warps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (std::int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const std::int64_t r = row / a.N, n = row - r * a.N;
    const T* p = static_cast<const T*>(a.logits) + r * a.s0 + n * a.s1;
    bool tok_ok = false;
    const float x_tok = threadIdx.x == 0 ? token_logit<T, I>(a, p, row, tok_ok) : 0.0f;
    ts_state st = ts_empty();
    row_stats<T, ts_block>(p, a.V, a.c, static_cast<int>(threadIdx.x), st);
    float M = ts_offset(st), S = st.s, Tt = st.t;
    ts_warp_merge(M, S, Tt);
    __syncthreads();  // the previous row's reads of the scratch are done
    if (lane == 0) {
      sm[warp] = M;
      ss[warp] = S;
      st_[warp] = Tt;
    }
    __syncthreads();
    if (warp == 0) {
      M = lane < warps ? sm[lane] : -f_inf;
      S = lane < warps ? ss[lane] : 0.0f;
      Tt = lane < warps ? st_[lane] : 0.0f;
      ts_warp_merge(M, S, Tt);
      if (lane == 0) write_row_stats<T, I>(a, row, M, S, Tt, x_tok, tok_ok);
    }
  }
}

/// Whether rows of V elements of T go one per block (else one per warp).
template <class T>
inline bool ts_block_per_row(std::int64_t rows, std::int64_t V) noexcept {
  return V * static_cast<std::int64_t>(sizeof(T)) >= ts_block_row_bytes || (rows < ts_block_rows_below && V >= ts_long_row);
}

/// log2(e) / T from 1 / T.
inline float ts_scale(float inv_t) noexcept { return static_cast<float>(ts_log2e * static_cast<double>(inv_t)); }

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
  a.c = ts_scale(inv_t);
  if (a.rows == 0) return ok();
  if (ts_block_per_row<T>(a.rows, a.V)) {
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
  float c;  ///< log2(e) / T
};

/// One gradient element as G (16-bit: the packed conversion's rounding, as the vectors).
template <class G>
__device__ __forceinline__ G ts_store1(float x) {
  if constexpr (sizeof(G) == 4) {
    return x;
  } else {
    return G{static_cast<std::uint16_t>(cvt_rn_x2(x, 0.0f, G{}) & 0xffffu)};
  }
}

/// Stores n = 4 or 8 gradients at p (aligned to n * sizeof(G) bytes, 16 at most).
template <class G, int n>
__device__ __forceinline__ void ts_store_vec(G* p, const float (&v)[n]) {
  if constexpr (sizeof(G) == 4) {
    store_vec<G, n>(p, v);
  } else if constexpr (n == 8) {
    *reinterpret_cast<uint4*>(p) = make_uint4(cvt_rn_x2(v[0], v[1], G{}), cvt_rn_x2(v[2], v[3], G{}),
                                              cvt_rn_x2(v[4], v[5], G{}), cvt_rn_x2(v[6], v[7], G{}));
  } else {
    *reinterpret_cast<uint2*>(p) = make_uint2(cvt_rn_x2(v[0], v[1], G{}), cvt_rn_x2(v[2], v[3], G{}));
  }
}

/// The gradient of one 16-byte vector `b` of logits, stored at q; `hit`: whether it holds the
/// token, at element ke, whose gradient is gk = g (1 - p_k).
template <class T, class G>
__device__ __forceinline__ void backward_vector(const uint4& b, G* q, bool hit, int ke, float gk, float ng, float nl2,
                                                float c) {
  constexpr int VEC = vec16<T>::n;
  float y[VEC];
  unpack(b, y, T{});
#pragma unroll
  for (int e = 0; e < VEC; ++e) y[e] = __fmul_rn(ng, ex2_approx_ftz(fmaf(y[e], c, nl2)));  // -(g p)
  if (hit) {
#pragma unroll
    for (int e = 0; e < VEC; ++e)
      if (e == ke) y[e] = gk;
  }
  ts_store_vec<G, VEC>(q, y);
}

/// Writes the gradient of one row; the row's threads are `lane` of NT; gk = g (1 - p_k).
template <class T, class G, int NT>
__device__ __forceinline__ void backward_row(const T* p, G* q, std::int64_t V, std::int64_t k, float g, float gk,
                                             float nl2, float c, int lane) {
  constexpr int VEC = vec16<T>::n;
  constexpr int U = ts_bwd_unroll;
  const float ng = -g;
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
    return v == k ? gk : __fmul_rn(ng, ex2_approx_ftz(fmaf(x, c, nl2)));
  };
  for (std::int64_t j = lane; j < head; j += NT) q[j] = ts_store1<G>(one(j, load_f(p[j])));
  // The token's vector (kj; -1 when the token is in the head or the tail) and element.
  const std::int64_t kv = k - head;
  const std::int64_t kj = kv >= 0 && kv < nvec * VEC ? kv / VEC : -1;
  const int ke = static_cast<int>(kv - (kv / VEC) * VEC);
  const uint4* vp = reinterpret_cast<const uint4*>(p + head) + lane;
  G* qp = q + head + static_cast<std::int64_t>(lane) * VEC;
  std::int64_t left = nvec - lane;  // vectors from this thread's next one to the end of the row
  std::int64_t dk = kj - lane;      // from this thread's next vector to the token's
  for (; left > (U - 1) * NT; left -= U * NT, dk -= U * NT, vp += U * NT, qp += U * NT * VEC) {
    uint4 b[U];
#pragma unroll
    for (int u = 0; u < U; ++u) b[u] = vp[u * NT];  // plain loads: the gradient may overwrite the logits
    const int hit = static_cast<std::uint64_t>(dk) < static_cast<std::uint64_t>(U * NT) ? static_cast<int>(dk) : -1;
#pragma unroll
    for (int u = 0; u < U; ++u) backward_vector<T, G>(b[u], qp + u * NT * VEC, hit == u * NT, ke, gk, ng, nl2, c);
  }
  for (; left > 0; left -= NT, dk -= NT, vp += NT, qp += NT * VEC) backward_vector<T, G>(*vp, qp, dk == 0, ke, gk, ng, nl2, c);
  for (std::int64_t v = tail + lane; v < V; v += NT) q[v] = ts_store1<G>(one(v, load_f(p[v])));
}

/// One row. Every thread of the row reads the token's logit, then the row's threads wait for
/// each other (`sync`) before any of them writes: in place, the token's element is overwritten.
template <class T, class G, class I, int NT, class Sync>
__device__ __forceinline__ void backward_one_row(const token_stats_backward_args& a, std::int64_t row, int lane,
                                                 Sync sync) {
  const std::int64_t r = row / a.N, n = row - r * a.N;
  const T* p = static_cast<const T*>(a.logits) + r * a.ls0 + n * a.ls1;
  G* q = static_cast<G*>(a.grad) + r * a.gs0 + n * a.gs1;
  const std::int64_t k = static_cast<std::int64_t>(static_cast<const I*>(a.tokens)[row]);
  if (k < 0 || k >= a.V) {  // out-of-range token (the same for the whole row): zero gradient row (see gcpo/cuda.hpp)
    for (std::int64_t j = lane; j < a.V; j += NT) q[j] = ts_store1<G>(0.0f);
    return;
  }
  const float g = __fmul_rn(a.grad_logprob[row], a.inv_t);
  const float nl2 = -__fmul_rn(a.lse[row], static_cast<float>(ts_log2e));
  const float gk = __fmul_rn(g, __fsub_rn(1.0f, ex2_approx_ftz(fmaf(load_f(p[k]), a.c, nl2))));
  sync();
  backward_row<T, G, NT>(p, q, a.V, k, g, gk, nl2, a.c, lane);
}

template <class T, class G, class I>
__global__ void __launch_bounds__(ts_block, ts_min_blocks) token_stats_backward_warp_kernel(token_stats_backward_args a) {
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (ts_block / 32);
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * (ts_block / 32) + (threadIdx.x >> 5); row < a.rows;
       row += warps)
    backward_one_row<T, G, I, 32>(a, row, static_cast<int>(threadIdx.x & 31), [] { __syncwarp(); });
}

template <class T, class G, class I>
__global__ void __launch_bounds__(ts_block, ts_min_blocks) token_stats_backward_block_kernel(token_stats_backward_args a) {
  for (std::int64_t row = blockIdx.x; row < a.rows; row += gridDim.x)
    backward_one_row<T, G, I, ts_block>(a, row, static_cast<int>(threadIdx.x), [] { __syncthreads(); });
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
  a.c = ts_scale(inv_t);
  if (a.rows == 0) return ok();
  if (ts_block_per_row<T>(a.rows, a.V)) {
    GCPO_LAUNCH(grid_for(a.rows, 1), ts_block, 0, stream, token_stats_backward_block_kernel<T, G, I>)(a);
    return check_launch("token_stats_backward_block_kernel");
  }
  GCPO_LAUNCH(grid_for(a.rows, ts_block / 32), ts_block, 0, stream, token_stats_backward_warp_kernel<T, G, I>)(a);
  return check_launch("token_stats_backward_warp_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
