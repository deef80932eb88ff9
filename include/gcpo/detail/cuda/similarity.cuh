// gcpo/detail/cuda/similarity.cuh - CUDA twin of group_similarity (from embeddings, or from
// tokens and an embedding table).
//
// One block per (prompt p, position t): the G rows e_g (embeddings[p*G + g, t, :] or
// table[tokens[p*G + g, t], :]) are read twice, the second time from L1/L2:
//   1. the norms |e_g|, 8 rows at a time (8 partial sums per thread, reduced in a fixed tree);
//   2. if no pair has |e_i| |e_j| < eps (the two smallest norms decide):
//        sum_d (sum_g e_gd (1 / |e_g|))^2 = |sum_g u_g|^2, so mean cos = (|sum u|^2 - G) / (G (G - 1));
//      else the pairwise formula, a warp per pair, exactly the host's clamp.
// Rows are read as 16-byte vectors when every row is 16-byte aligned. Bytes: R*N*D elements
// read (twice from the caches' point of view, once from DRAM when the group fits in L1/L2),
// R*N floats written. An out-of-range token makes its position's similarity NaN.
#pragma once

#include "common.cuh"

namespace gcpo {
namespace detail {
namespace cuda_impl {

constexpr int sim_block = 256;
constexpr int sim_batch = 8;  ///< rows whose norms are accumulated together

struct similarity_args {
  const void* base;      ///< embeddings, or the table
  std::int64_t s0, s1;   ///< embeddings: strides of r and t; table: s0 = row stride
  const void* tokens;    ///< null: from embeddings
  std::int64_t P, N, D, G, V;
  float eps;
  float inv_pairs;  ///< 1 / (G (G - 1))
  float* sim;
};

template <class T, class I, bool FROM_TOKENS>
__device__ __forceinline__ const T* similarity_row(const similarity_args& a, std::int64_t r, std::int64_t t, bool& bad) {
  const T* base = static_cast<const T*>(a.base);
  if constexpr (FROM_TOKENS) {
    const std::int64_t k = static_cast<std::int64_t>(static_cast<const I*>(a.tokens)[r * a.N + t]);
    if (k < 0 || k >= a.V) {
      bad = true;
      return base;
    }
    return base + k * a.s0;
  } else {
    return base + r * a.s0 + t * a.s1;
  }
}

template <class T, class I, bool FROM_TOKENS, bool VEC>
__global__ void __launch_bounds__(sim_block) group_similarity_kernel(similarity_args a) {
  GCPO_DYNAMIC_SHARED(unsigned char, sim_smem);
  const T** rows = reinterpret_cast<const T**>(sim_smem);
  float* norms = reinterpret_cast<float*>(sim_smem + sizeof(const T*) * static_cast<std::size_t>(a.G));
  float* inv_norms = norms + a.G;
  __shared__ float red[sim_batch][sim_block / 32];
  __shared__ reduce_scratch<sim_block> sc;
  __shared__ int small_flag;
  constexpr int NV = vec16<T>::n;
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const std::int64_t G = a.G, D = a.D;
  const std::int64_t nvec = VEC ? D / NV : 0;
  const std::int64_t tail = nvec * NV;

  for (std::int64_t grp = blockIdx.x; grp < a.P * a.N; grp += gridDim.x) {
    const std::int64_t p = grp / a.N, t = grp - p * a.N;
    __syncthreads();  // the previous group is done with rows / norms
    bool bad = false;
    for (std::int64_t g = tid; g < G; g += sim_block) rows[g] = similarity_row<T, I, FROM_TOKENS>(a, p * G + g, t, bad);
    if (__syncthreads_or(bad ? 1 : 0)) {
      for (std::int64_t g = tid; g < G; g += sim_block) a.sim[(p * G + g) * a.N + t] = __int_as_float(0x7fc00000);
      continue;
    }

    // 1. Norms, sim_batch rows at a time.
    for (std::int64_t g0 = 0; g0 < G; g0 += sim_batch) {
      const int nb = static_cast<int>(G - g0 < sim_batch ? G - g0 : sim_batch);
      float acc[sim_batch];
#pragma unroll
      for (int j = 0; j < sim_batch; ++j) acc[j] = 0.0f;
      if constexpr (VEC) {
        for (std::int64_t v = tid; v < nvec; v += sim_block) {
          uint4 buf[sim_batch];
#pragma unroll
          for (int j = 0; j < sim_batch; ++j)
            if (j < nb) buf[j] = __ldg(reinterpret_cast<const uint4*>(rows[g0 + j]) + v);
#pragma unroll
          for (int j = 0; j < sim_batch; ++j)
            if (j < nb) {
              float x[NV];
              unpack(buf[j], x, T{});
#pragma unroll
              for (int e = 0; e < NV; ++e) acc[j] = fmaf(x[e], x[e], acc[j]);
            }
        }
      }
      for (std::int64_t d = tail + tid; d < D; d += sim_block) {
#pragma unroll
        for (int j = 0; j < sim_batch; ++j)
          if (j < nb) {
            const float x = load_f(rows[g0 + j][d]);
            acc[j] = fmaf(x, x, acc[j]);
          }
      }
#pragma unroll
      for (int j = 0; j < sim_batch; ++j) acc[j] = warp_allreduce(acc[j], sum_op{});
      if (lane == 0) {
#pragma unroll
        for (int j = 0; j < sim_batch; ++j) red[j][warp] = acc[j];
      }
      __syncthreads();
      if (tid < nb) {
        float s = red[tid][0];
        for (int w = 1; w < sim_block / 32; ++w) s += red[tid][w];
        const float n = sqrtf(s);
        norms[g0 + tid] = n;
        inv_norms[g0 + tid] = 1.0f / n;
      }
      __syncthreads();
    }

    // Does some pair have |e_i| |e_j| < eps? The two smallest norms (NaN norms never pair).
    if (tid == 0) {
      float m1 = f_inf, m2 = f_inf;
      for (std::int64_t g = 0; g < G; ++g) {
        const float n = norms[g];
        if (n != n) continue;
        if (n < m1) {
          m2 = m1;
          m1 = n;
        } else if (n < m2) {
          m2 = n;
        }
      }
      small_flag = (m1 * m2 < a.eps) ? 1 : 0;
    }
    __syncthreads();

    float value;
    if (!small_flag) {
      // 2. |sum_g u_g|^2 over d: per d the host's order (g ascending, e / |e|).
      float acc = 0.0f;
      if constexpr (VEC) {
        for (std::int64_t v = tid; v < nvec; v += sim_block) {
          float s[NV];
#pragma unroll
          for (int e = 0; e < NV; ++e) s[e] = 0.0f;
          std::int64_t g = 0;
          for (; g + 4 <= G; g += 4) {
            uint4 buf[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) buf[j] = __ldg(reinterpret_cast<const uint4*>(rows[g + j]) + v);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              float x[NV];
              unpack(buf[j], x, T{});
              const float in = inv_norms[g + j];
#pragma unroll
              for (int e = 0; e < NV; ++e) s[e] = fmaf(x[e], in, s[e]);
            }
          }
          for (; g < G; ++g) {
            float x[NV];
            unpack(__ldg(reinterpret_cast<const uint4*>(rows[g]) + v), x, T{});
            const float in = inv_norms[g];
#pragma unroll
            for (int e = 0; e < NV; ++e) s[e] = fmaf(x[e], in, s[e]);
          }
#pragma unroll
          for (int e = 0; e < NV; ++e) acc = fmaf(s[e], s[e], acc);
        }
      }
      for (std::int64_t d = tail + tid; d < D; d += sim_block) {
        float s = 0.0f;
        for (std::int64_t g = 0; g < G; ++g) s = fmaf(load_f(rows[g][d]), inv_norms[g], s);
        acc = fmaf(s, s, acc);
      }
      const float total = block_allreduce<sim_block>(acc, sum_op{}, sc.f);
      value = (total - static_cast<float>(G)) * a.inv_pairs;
    } else {
      // Pairwise, a warp per pair (i < j), with the clamp max(|e_i| |e_j|, eps).
      float wsum = 0.0f;
      const std::int64_t npairs = G * (G - 1) / 2;
      for (std::int64_t q = warp; q < npairs; q += sim_block / 32) {
        // q -> (i, j): row i holds G - 1 - i pairs.
        std::int64_t i = 0, rest = q;
        while (rest >= G - 1 - i) {
          rest -= G - 1 - i;
          ++i;
        }
        const std::int64_t j = i + 1 + rest;
        float dot = 0.0f;
        for (std::int64_t d = lane; d < D; d += 32) dot = fmaf(load_f(rows[i][d]), load_f(rows[j][d]), dot);
        dot = warp_allreduce(dot, sum_op{});
        const float den = norms[i] * norms[j];
        wsum += __fdividef(dot, den > a.eps ? den : a.eps);
      }
      const float total = block_allreduce<sim_block>(lane == 0 ? wsum : 0.0f, sum_op{}, sc.f);
      value = 2.0f * total * a.inv_pairs;
    }
    for (std::int64_t g = tid; g < G; g += sim_block) a.sim[(p * G + g) * a.N + t] = value;
  }
}

template <class T, class I, bool FROM_TOKENS>
status launch_group_similarity_typed(const similarity_args& a, bool vec, cudaStream_t stream) noexcept {
  if (a.P * a.N == 0) return ok();
  const std::size_t smem = static_cast<std::size_t>(a.G) * (sizeof(const T*) + 2 * sizeof(float));
  const unsigned grid = grid_for(a.P * a.N, 1);
  if (vec) GCPO_LAUNCH(grid, sim_block, smem, stream, group_similarity_kernel<T, I, FROM_TOKENS, true>)(a);
  else GCPO_LAUNCH(grid, sim_block, smem, stream, group_similarity_kernel<T, I, FROM_TOKENS, false>)(a);
  return check_launch("group_similarity_kernel");
}

/// From embeddings `[R, N, D]`.
template <class T>
status launch_group_similarity(const_tensor_view emb, tensor_view sim, const similarity_options& opt,
                               cudaStream_t stream) noexcept {
  similarity_args a;
  a.base = emb.data;
  a.s0 = emb.strides[0];
  a.s1 = emb.strides[1];
  a.tokens = nullptr;
  a.G = opt.group;
  a.P = emb.shape[0] / opt.group;
  a.N = emb.shape[1];
  a.D = emb.shape[2];
  a.V = 0;
  a.eps = opt.eps;
  a.inv_pairs = 1.0f / (static_cast<float>(opt.group) * static_cast<float>(opt.group - 1));
  a.sim = sim.as<float>();
  const bool vec = aligned_to(emb.data, 16) && (a.s0 * static_cast<std::int64_t>(sizeof(T))) % 16 == 0 &&
                   (a.s1 * static_cast<std::int64_t>(sizeof(T))) % 16 == 0;
  return launch_group_similarity_typed<T, std::int32_t, false>(a, vec, stream);
}

/// From tokens `[R, N]` and a table `[V, D]`.
template <class T, class I>
status launch_group_similarity_from_tokens(const_tensor_view tokens, const_tensor_view table, tensor_view sim,
                                           const similarity_options& opt, cudaStream_t stream) noexcept {
  similarity_args a;
  a.base = table.data;
  a.s0 = table.strides[0];
  a.s1 = 0;
  a.tokens = tokens.data;
  a.G = opt.group;
  a.P = tokens.shape[0] / opt.group;
  a.N = tokens.shape[1];
  a.D = table.shape[1];
  a.V = table.shape[0];
  a.eps = opt.eps;
  a.inv_pairs = 1.0f / (static_cast<float>(opt.group) * static_cast<float>(opt.group - 1));
  a.sim = sim.as<float>();
  const bool vec = aligned_to(table.data, 16) && (a.s0 * static_cast<std::int64_t>(sizeof(T))) % 16 == 0;
  return launch_group_similarity_typed<T, I, true>(a, vec, stream);
}

}  // namespace cuda_impl
}  // namespace detail
}  // namespace gcpo
