// gcpo/detail/cuda/sampling.cuh - CUDA twin of generation_step (one kernel per step).
//
// Every quantity that decides the token is computed with the host twin's operations:
// guided_logit, gumbel_noise, repro_exp, explicitly rounded adds, and the canonical 256-lane +
// binary-tree mass sums (thread j < 256 is lane j: it adds the v = j (mod 256) in increasing v).
// The draw is an argmax of (key, lower index), which any merge order gives exactly. So the drawn
// token is bitwise the host's. The log-prob and entropy come from the online (max, sum) state of
// token_stats, merged in a fixed tree that depends on V only (not on R, the grid or the GPU), so
// they are bitwise identical run to run and within the spec's tolerance of the host twin.
//
// Without top-k / top-p (the split kernel, one pass): a row is cut into fixed chunks of
// split_chunk = 2048 entries (the last one shorter), and each chunk is a block of 256 threads;
// the grid holds R * chunks blocks (16 rows of V = 16384: 128 blocks, one per SM of an H100 /
// H200, where one block per row used 16 of them). Thread t of a chunk takes its groups of four
// entries t and t + 256: x_v and the online max / sum over them; then the Gumbel keys
// x_v + g_v and their argmax (ties to the lower index), with the noise only for the entries that
// can still win: those within gumbel_noise_bound - gumbel_noise_floor = 20 of the chunk's largest
// logit (the host twin's argument, with a bound known before any noise is drawn). A warp with at
// most 64 such entries lists them in shared memory and each lane takes one (a Philox call and two
// repro_logs each); otherwise each thread draws its own groups (one Philox call per four entries).
// The block merges its threads in a fixed tree (a warp tree, then warp 0 over the warps). A row of one chunk writes its outputs there;
// otherwise lane 0 stores the chunk's partial in the workspace, fences (__threadfence) and
// counts the chunk on the row's counter (atomicAdd); the block that counts the last chunk fences
// again and merges the row's partials in chunk order (lane l takes chunks l, l + 32, ..., then a
// warp tree) and writes the row's outputs. The counters are zeroed by a cudaMemsetAsync before
// the launch (R * 4 bytes, part of the same stream: graph-capturable, no host sync); partials
// and counters live in the generation_step workspace (its two [R, V] float arrays are unused by
// this path). Bytes: the two logit rows read once, 36 bytes per chunk written and read back.
//
// With top-k / top-p (one block of 1024 threads per row): the candidates' order (x descending,
// index ascending, NaN last) is the unsigned order of the 64-bit key (descending_key(x) <<
// index bits | v). x goes to the workspace; a block-wide radix select finds the key of rank
// k - 1 (top-k), then, for top-p, the block bisects the key range for the smallest prefix whose
// canonical mass reaches top_p * total (the mass of a prefix is monotone in its length, so
// bisection finds the host's binary-search answer; a prefix ending in a NaN has mass 0, as on
// the host). The kept set is the keys at or below the last kept key; the draw and the
// statistics run over it.
#pragma once

#include "common.cuh"
#include "token_stats.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

constexpr int samp_block = 1024;
constexpr int samp_lanes = sampling_sum_lanes;
static_assert(samp_lanes == 256 && samp_block % samp_lanes == 0, "the canonical mass order has 256 lanes");

/// The split kernel (no top-k / top-p): threads per block, groups of four entries per thread,
/// entries per chunk.
constexpr int split_block = 256;
constexpr int split_groups = 2;
constexpr std::int64_t split_chunk = 4 * split_block * split_groups;
static_assert(split_chunk % 4 == 0, "a chunk holds whole Philox groups");
/// A warp lists its entries that need their Gumbel noise when there are at most this many (two
/// rounds of its lanes, against 2 Philox blocks and 8 noises per lane without the list).
constexpr int split_list = 64;
/// A strict lower bound of every value gumbel_of_bits() can return: the smallest u is 2^-24,
/// whose noise is -log(-log(2^-24)) = -log(16.636) = -2.8116 (repro_log is within 2e-7 of log;
/// tests/cuda/test_cuda_sampling.cpp checks the bound against all 2^23 values of u).
constexpr float gumbel_noise_floor = -3.0f;

/// What a chunk leaves for the row's merge: its draw_state and online_state (36 bytes; 32-bit
/// fields only, so a volatile load of each is one instruction). A row of V entries has
/// ceil(V / 2048) chunks, so R rows need at most 36 * R * (V / 2048 + 1) <= 4 * R * V bytes
/// when V > 2048: inside the workspace's first [R, V] float array.
struct chunk_partial {
  float key;
  int idx;
  float x;
  int first;
  float fx;
  float m, s, t;
  int bad;
};
static_assert(sizeof(chunk_partial) == 36, "chunk_partial: nine 32-bit fields");

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
  std::int64_t chunks;            ///< chunks per row (split kernel)
  chunk_partial* partial;  ///< [R, chunks] (split kernel, chunks > 1; in xbuf's bytes)
  unsigned* counter;              ///< [R] chunks counted so far (split kernel, chunks > 1; in ebuf's bytes)
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

/// The draw state `delta` lanes down (every lane of the warp calls it).
__device__ __forceinline__ draw_state shfl_down_draw(const draw_state& ds, int delta) {
  draw_state o;
  o.key = __shfl_down_sync(0xffffffffu, ds.key, delta);
  o.idx = __shfl_down_sync(0xffffffffu, ds.idx, delta);
  o.x = __shfl_down_sync(0xffffffffu, ds.x, delta);
  o.first = __shfl_down_sync(0xffffffffu, ds.first, delta);
  o.fx = __shfl_down_sync(0xffffffffu, ds.fx, delta);
  return o;
}

/// Lane 0 ends with the merge of the lanes' states, in a fixed tree (lane l takes lane l + d for
/// d = 16, 8, ..., 1). `lanes_used`: lanes at or above it hold empty states (the identity of
/// both merges), so the levels that would only add those are skipped: the same bits.
__device__ __forceinline__ void warp_merge_states(draw_state& ds, online_state& st, std::int64_t lanes_used) {
#pragma unroll
  for (int d = 16; d >= 1; d /= 2)
    if (d < lanes_used) {
      draw_merge(ds, shfl_down_draw(ds, d));
      online_merge(st, shfl_down_state(st, d));
    }
}

/// Writes row r's token, log-prob and entropy from its merged states (one thread).
__device__ __forceinline__ void finish_row(const sampling_args& a, std::int64_t r, const draw_state& ds,
                                           const online_state& st) {
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

template <class T>
__device__ __forceinline__ float guided_at(const sampling_args& a, const T* c, const T* u, std::int64_t v) {
  return guided_logit(load_f(c[v]), u ? load_f(u[v]) : 0.0f, u != nullptr, a.cfg, a.temperature);
}

/// guided_logit, without the division when T = 1: x / 1 is x exactly in IEEE arithmetic, so the
/// bits are the same (a uniform branch; the division is about ten instructions per entry).
__device__ __forceinline__ float guided_split(float c, float u, bool has_u, const sampling_args& a, bool t_one) {
  if (t_one) return has_u ? fmaf_(a.cfg, c - u, u) : c;
  return guided_logit(c, u, has_u, a.cfg, a.temperature);
}

__device__ __forceinline__ std::uint64_t order_key(float x, std::int64_t v, int ib) {
  return (static_cast<std::uint64_t>(descending_key(x)) << ib) | static_cast<std::uint64_t>(v);
}

template <class T>
__global__ void __launch_bounds__(samp_block) generation_step_filter_kernel(sampling_args a) {
  __shared__ reduce_scratch<samp_block> sc;
  __shared__ float lanes[samp_lanes];
  __shared__ select_scratch ssel;
  __shared__ draw_state dsh[samp_block / 32];
  __shared__ online_state osh[samp_block / 32];
  const int tid = static_cast<int>(threadIdx.x);
  const std::int64_t V = a.V;

  for (std::int64_t r = blockIdx.x; r < a.R; r += gridDim.x) {
    const T* c = static_cast<const T*>(a.cond) + r * a.cs0;
    const T* u = a.uncond ? static_cast<const T*>(a.uncond) + r * a.us0 : nullptr;
    const std::uint32_t row = static_cast<std::uint32_t>(a.first_row + static_cast<std::uint64_t>(r));
    draw_state ds = draw_empty();
    online_state st = online_empty();
    {  // top-k / top-p only (the split kernel draws without them)
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
    warp_merge_states(ds, st, 32);
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
      finish_row(a, r, ds, st);
    }
  }
}

/// Loads the four entries v0 .. v0 + 3 of a row (nq < 4: the first nq; the rest 0) as floats:
/// one 8- or 16-byte load when `vec` (the row pointer aligned to 4 * sizeof(T) bytes; v0 is a
/// multiple of 4).
template <class T>
__device__ __forceinline__ void load_group(const T* p, std::int64_t v0, int nq, bool vec, float (&x)[4]) {
  if (vec && nq == 4) {
    if constexpr (sizeof(T) == 4) {
      const uint4 w = __ldg(reinterpret_cast<const uint4*>(p + v0));
      unpack(w, x, 0.0f);
    } else {
      const uint2 w = __ldg(reinterpret_cast<const uint2*>(p + v0));
      unpack_word(w.x, x[0], x[1], T{});
      unpack_word(w.y, x[2], x[3], T{});
    }
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) x[j] = j < nq ? load_f(p[v0 + j]) : 0.0f;
  }
}

/// Without top-k / top-p: block (r, c) of the grid-stride loop over the R * chunks items draws
/// over chunk c of row r (see the file comment). The bits depend on V and the data only: the
/// chunks, each block's tree and the row's merge order are fixed; which block takes an item, and
/// which block arrives last, do not matter.
template <class T>
__global__ void __launch_bounds__(split_block) generation_step_split_kernel(sampling_args a) {
  constexpr int warps = split_block / 32;
  __shared__ draw_state dsh[warps];
  __shared__ online_state osh[warps];
  __shared__ float msh[warps];
  __shared__ int list[warps][split_list];
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const std::int64_t V = a.V, groups = (V + 3) / 4, C = a.chunks;
  const std::uint32_t seed_lo = static_cast<std::uint32_t>(a.seed), seed_hi = static_cast<std::uint32_t>(a.seed >> 32);
  const std::uint32_t step_lo = static_cast<std::uint32_t>(a.step), step_hi = static_cast<std::uint32_t>(a.step >> 32);
  const bool has_u = a.uncond != nullptr, t_one = a.temperature == 1.0f;

  for (std::int64_t item = blockIdx.x; item < a.R * C; item += gridDim.x) {
    const std::int64_t r = item / C, chunk = item - r * C;
    const T* c = static_cast<const T*>(a.cond) + r * a.cs0;
    const T* u = has_u ? static_cast<const T*>(a.uncond) + r * a.us0 : nullptr;
    const bool vec = reinterpret_cast<std::uintptr_t>(c) % (4 * sizeof(T)) == 0 &&
                     (!has_u || reinterpret_cast<std::uintptr_t>(u) % (4 * sizeof(T)) == 0);
    const std::uint32_t row = static_cast<std::uint32_t>(a.first_row + static_cast<std::uint64_t>(r));
    draw_state ds = draw_empty();
    online_state st = online_empty();
    // The logits of the thread's groups, and the online statistics over them.
    float x[split_groups][4];
    int nq[split_groups];
#pragma unroll
    for (int j = 0; j < split_groups; ++j) {
      const std::int64_t q = chunk * (split_chunk / 4) + j * split_block + tid;  // ascending in j
      nq[j] = q < groups ? static_cast<int>(V - 4 * q < 4 ? V - 4 * q : 4) : 0;
      float xu[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (nq[j] > 0) {
        load_group(c, 4 * q, nq[j], vec, x[j]);
        if (has_u) load_group(u, 4 * q, nq[j], vec, xu);
      }
#pragma unroll
      for (int k = 0; k < 4; ++k) x[j][k] = guided_split(x[j][k], xu[k], has_u, a, t_one);
      if (nq[j] == 4) {
        online_add(st, x[j]);
      } else {
#pragma unroll
        for (int k = 0; k < 4; ++k)
          if (k < nq[j]) {
            const float y[1] = {x[j][k]};
            online_add(st, y);
          }
      }
    }
    // Which entries can win: with xm the chunk's largest logit, the chunk's best key is at least
    // fl(xm + gumbel_noise_floor) =: L (every noise is above the floor; rounding is monotone),
    // and an entry with fl(x + gumbel_noise_bound) < L has a key below L: it neither wins nor
    // ties, so its noise is not needed (the host twin passes over the same kind of entries). The
    // chunk's best (key, index) is the same bits as with every noise computed.
    float m = -f_inf;
#pragma unroll
    for (int j = 0; j < split_groups; ++j)
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (k < nq[j]) m = fmaxf(m, x[j][k]);
#pragma unroll
    for (int d = 16; d >= 1; d /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, d));
    __syncthreads();  // the previous item is done with msh, list, dsh and osh
    if (lane == 0) msh[warp] = m;
    __syncthreads();
    float xm = msh[0];
#pragma unroll
    for (int w = 1; w < warps; ++w) xm = fmaxf(xm, msh[w]);
    const float floor_key = __fadd_rn(xm, gumbel_noise_floor);
    unsigned need = 0;
#pragma unroll
    for (int j = 0; j < split_groups; ++j)
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (k < nq[j] && !(__fadd_rn(x[j][k], gumbel_noise_bound) < floor_key)) need |= 1u << (j * 4 + k);
    // The warp's entries that need their noise: few (spread logits, as with CFG): listed, one per
    // lane, with the Philox block of each; many: each thread takes its own groups.
    const int cnt = __popc(need);
    int incl = cnt;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int o = __shfl_up_sync(0xffffffffu, incl, d);
      if (lane >= d) incl += o;
    }
    const int total = __shfl_sync(0xffffffffu, incl, 31);
    if (total <= split_list) {
      int pos = incl - cnt;
#pragma unroll
      for (int j = 0; j < split_groups; ++j)
#pragma unroll
        for (int k = 0; k < 4; ++k)
          if (need & (1u << (j * 4 + k)))
            list[warp][pos++] = static_cast<int>(4 * (chunk * (split_chunk / 4) + j * split_block + tid) + k);
      if (nq[0] > 0) {  // the lowest index of the thread (taken when no key wins)
        ds.first = static_cast<int>(4 * (chunk * (split_chunk / 4) + tid));
        ds.fx = x[0][0];
      }
      __syncwarp();
      for (int i = lane; i < total; i += 32) {
        const int v = list[warp][i];
        const float xv = guided_split(load_f(c[v]), has_u ? load_f(u[v]) : 0.0f, has_u, a, t_one);
        const philox_out o =
            philox4x32_10(static_cast<std::uint32_t>(v >> 2), row, step_lo, step_hi, seed_lo, seed_hi);
        const std::uint32_t bits = (v & 2) ? ((v & 1) ? o.v[3] : o.v[2]) : ((v & 1) ? o.v[1] : o.v[0]);  // in registers
        const float key = __fadd_rn(xv, -repro_log(-repro_log(uniform_open01(bits))));
        if (key > ds.key || (key == ds.key && ds.idx >= 0 && v < ds.idx)) {  // not ascending here
          ds.key = key;
          ds.idx = v;
          ds.x = xv;
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < split_groups; ++j) {
        const std::int64_t q = chunk * (split_chunk / 4) + j * split_block + tid;
        if (nq[j] == 0) continue;
        const philox_out o = philox4x32_10(static_cast<std::uint32_t>(q), row, step_lo, step_hi, seed_lo, seed_hi);
#pragma unroll
        for (int k = 0; k < 4; ++k)
          if (k < nq[j]) {
            const float g = (need & (1u << (j * 4 + k))) ? -repro_log(-repro_log(uniform_open01(o.v[k]))) : -f_inf;
            draw_consider(ds, x[j][k], __fadd_rn(x[j][k], g), static_cast<int>(4 * q + k));
          }
      }
    }

    // The block's tree: each warp, then warp 0 over the warps.
    warp_merge_states(ds, st, 32);
    if (lane == 0) {
      dsh[warp] = ds;
      osh[warp] = st;
    }
    __syncthreads();
    if (warp != 0) continue;
    ds = lane < warps ? dsh[lane] : draw_empty();
    st = lane < warps ? osh[lane] : online_empty();
    warp_merge_states(ds, st, warps);
    if (C == 1) {
      if (lane == 0) finish_row(a, r, ds, st);
      continue;
    }
    // Publish the chunk; the block that counts the row's last chunk merges them all.
    chunk_partial* part = a.partial + r * C;
    unsigned last = 0;
    if (lane == 0) {
      chunk_partial& p = part[chunk];
      p.key = ds.key;
      p.idx = ds.idx;
      p.x = ds.x;
      p.first = ds.first;
      p.fx = ds.fx;
      p.m = st.m;
      p.s = st.s;
      p.t = st.t;
      p.bad = st.bad ? 1 : 0;
      __threadfence();  // the partial is visible before the count that announces it
      last = atomicAdd(a.counter + r, 1u) == static_cast<unsigned>(C - 1) ? 1u : 0u;
      if (last) __threadfence();  // and the other blocks' partials are seen after it
    }
    last = __shfl_sync(0xffffffffu, last, 0);
    if (!last) continue;
    __syncwarp();  // lane 0's fence before the other lanes' loads
    draw_state md = draw_empty();
    online_state ms = online_empty();
    for (std::int64_t k = lane; k < C; k += 32) {  // lane l: chunks l, l + 32, ... in order
      const volatile chunk_partial* p = part + k;
      draw_state d;
      d.key = p->key;
      d.idx = p->idx;
      d.x = p->x;
      d.first = p->first;
      d.fx = p->fx;
      online_state o;
      o.m = p->m;
      o.s = p->s;
      o.t = p->t;
      o.bad = p->bad != 0;
      draw_merge(md, d);
      online_merge(ms, o);
    }
    warp_merge_states(md, ms, C);
    if (lane == 0) finish_row(a, r, md, ms);
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
  if (a.filter) {
    GCPO_LAUNCH(grid_for(a.R, 1), samp_block, 0, stream, generation_step_filter_kernel<T>)(a);
    return check_launch("generation_step_filter_kernel");
  }
  a.chunks = ceil_div(a.V, split_chunk);
  if (a.chunks > 1) {
    // 36 * R * chunks <= 4 * R * V and 4 * R <= 4 * R * V bytes (V > 2048): see chunk_partial.
    a.partial = reinterpret_cast<chunk_partial*>(a.xbuf);
    a.counter = reinterpret_cast<unsigned*>(a.ebuf);
    GCPO_TRY(check_call(cudaMemsetAsync(a.counter, 0, static_cast<std::size_t>(a.R) * sizeof(unsigned), stream),
                        "cudaMemsetAsync(generation_step counters)"));
  }
  GCPO_LAUNCH(grid_for(a.R * a.chunks, 1), split_block, 0, stream, generation_step_split_kernel<T>)(a);
  return check_launch("generation_step_split_kernel");
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
