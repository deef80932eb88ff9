// CUDA group_similarity and group_similarity_from_tokens against the host twins: groups of 2
// to 16, odd and vector-boundary embedding sizes, every dtype and index type, strided and
// misaligned embeddings, zero and tiny vectors (the pairwise fallback), NaN, out-of-range tokens.
#include "cuda_support.hpp"

namespace {

using namespace gcpo_cuda_test;

struct case_t {
  std::int64_t P, G, N, D;
};

const std::vector<case_t>& cases() {
  static const std::vector<case_t> c = gpu_or_sim<std::vector<case_t>>(
      {{1, 2, 1, 1},    {1, 2, 5, 3},   {2, 3, 7, 8},    {1, 4, 9, 31},    {3, 4, 11, 64},
       {2, 16, 5, 100}, {1, 8, 3, 257}, {2, 4, 6, 2048}, {1, 16, 4, 1031}, {1, 2, 37, 16}},
      {{1, 2, 1, 1},    {1, 2, 5, 3},   {2, 3, 7, 8},    {1, 4, 9, 31},    {2, 4, 5, 64},
       {1, 16, 3, 100}, {1, 8, 3, 257}, {1, 4, 2, 2048}, {1, 16, 2, 1031}, {1, 2, 37, 16}});
  return c;
}

/// Random embeddings in a strided [R, N, D] layout; `special` adds zero / tiny vectors.
template <class T>
std::vector<T> random_embeddings(rng& g, std::int64_t elems, bool correlated) {
  std::vector<float> f(static_cast<std::size_t>(elems));
  const float shift = correlated ? 0.7f : 0.0f;
  for (auto& x : f) x = g.normal(shift, 1.0f);
  return narrow<T>(f);
}

template <class T>
void check_embeddings(const case_t& c, std::int64_t pad_d, std::int64_t pad_n, std::size_t offset, bool special,
                      std::uint64_t seed) {
  INFO("P=" << c.P << " G=" << c.G << " N=" << c.N << " D=" << c.D << " dtype="
            << gcpo::to_string(gcpo::dtype_of<T>::value) << " pad_d=" << pad_d << " pad_n=" << pad_n
            << " offset=" << offset << " special=" << special << " seed=" << seed);
  rng g(seed);
  const std::int64_t R = c.P * c.G, N = c.N, D = c.D;
  const std::int64_t s1 = D + pad_d, s0 = N * s1 + pad_n;
  const std::int64_t elems = (R - 1) * s0 + (N - 1) * s1 + D;
  std::vector<T> emb = random_embeddings<T>(g, elems, seed % 2 == 0);
  if (special) {
    // position 0: one zero vector; position N-1: every vector tiny (pairwise fallback).
    for (std::int64_t d = 0; d < D; ++d) emb[static_cast<std::size_t>(d)] = gcpo::from_float<T>(0.0f);
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t d = 0; d < D; ++d) {
        T& x = emb[static_cast<std::size_t>(r * s0 + (N - 1) * s1 + d)];
        x = gcpo::from_float<T>(gcpo::to_float(x) * 1e-5f);
      }
  }
  gcpo::similarity_options opt;
  opt.group = c.G;
  std::vector<float> want(R * N);
  GCPO_OK(gcpo::host::group_similarity(strided(emb.data(), {R, N, D}, {s0, s1, 1}, host),
                                       gcpo::make_view(want.data(), {R, N}), opt));
  device_buffer<T> d_emb(emb, offset);
  device_buffer<float> d_sim(R * N);
  auto outs = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::group_similarity(strided(d_emb.get(), {R, N, D}, {s0, s1, 1}, device),
                                            gcpo::make_device_view(d_sim.get(), {R, N}), opt, s);
      },
      {out(d_sim)});
  check_close(as<float>(outs[0]), want, value_atol, value_rtol, "similarity");
}

template <class T, class I>
void check_tokens(const case_t& c, std::int64_t V, std::int64_t pad_d, std::size_t offset, std::uint64_t seed) {
  INFO("P=" << c.P << " G=" << c.G << " N=" << c.N << " D=" << c.D << " V=" << V << " dtype="
            << gcpo::to_string(gcpo::dtype_of<T>::value) << " index=" << gcpo::to_string(gcpo::dtype_of<I>::value)
            << " pad_d=" << pad_d << " offset=" << offset << " seed=" << seed);
  rng g(seed);
  const std::int64_t R = c.P * c.G, N = c.N, D = c.D;
  const std::int64_t s0 = D + pad_d;
  std::vector<T> table = random_embeddings<T>(g, (V - 1) * s0 + D, true);
  for (std::int64_t d = 0; d < D; ++d) table[static_cast<std::size_t>(d)] = gcpo::from_float<T>(0.0f);  // token 0: zero
  std::vector<I> tokens(R * N);
  for (auto& t : tokens) t = static_cast<I>(g.integer(0, V - 1));
  gcpo::similarity_options opt;
  opt.group = c.G;
  std::vector<float> want(R * N);
  GCPO_OK(gcpo::host::group_similarity_from_tokens(gcpo::make_view(tokens.data(), {R, N}),
                                                   strided(table.data(), {V, D}, {s0, 1}, host),
                                                   gcpo::make_view(want.data(), {R, N}), opt));
  device_buffer<T> d_table(table, offset);
  device_buffer<I> d_tok(tokens);
  device_buffer<float> d_sim(R * N);
  auto outs = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::group_similarity_from_tokens(gcpo::make_device_view(d_tok.get(), {R, N}),
                                                        strided(d_table.get(), {V, D}, {s0, 1}, device),
                                                        gcpo::make_device_view(d_sim.get(), {R, N}), opt, s);
      },
      {out(d_sim)});
  check_close(as<float>(outs[0]), want, value_atol, value_rtol, "similarity (tokens)");
}

}  // namespace

TEST_CASE("cuda group_similarity: smoke (vector and scalar rows, the pairwise fallback)", "[cuda][similarity]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  check_embeddings<float>({2, 4, 5, 64}, 0, 0, 0, true, 21);
  check_embeddings<gcpo::bfloat16>({1, 3, 4, 31}, 1, 0, 1, false, 22);
  check_tokens<gcpo::float16, std::int64_t>({2, 2, 3, 40}, 17, 0, 0, 23);
}

TEST_CASE("cuda group_similarity: random groups, dtypes, strides, offsets", "[cuda][similarity][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 300;
  for (const case_t& c : cases()) {
    check_embeddings<float>(c, 0, 0, 0, false, ++seed);
    check_embeddings<float>(c, 3, 1, 1, true, ++seed);
    check_embeddings<gcpo::bfloat16>(c, 0, 8, 0, false, ++seed);
    check_embeddings<gcpo::bfloat16>(c, 1, 0, 3, true, ++seed);
    check_embeddings<gcpo::float16>(c, 8, 0, 0, true, ++seed);
    check_embeddings<gcpo::float16>(c, 0, 0, 2, false, ++seed);
  }
}

TEST_CASE("cuda group_similarity_from_tokens: random groups, dtypes, index types", "[cuda][similarity][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 900;
  for (const case_t& c : cases()) {
    check_tokens<float, std::int32_t>(c, 7, 0, 0, ++seed);
    check_tokens<float, std::int64_t>(c, 300, 5, 1, ++seed);
    check_tokens<gcpo::bfloat16, std::int32_t>(c, 64, 0, 0, ++seed);
    check_tokens<gcpo::float16, std::int64_t>(c, 33, 8, 0, ++seed);
  }
}

TEST_CASE("cuda group_similarity: NaN propagates, and out-of-range tokens give NaN", "[cuda][similarity]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const std::int64_t G = 4, N = 3, D = 16, V = 10;
  std::vector<float> emb(G * N * D, 1.0f);
  emb[D + 3] = std::numeric_limits<float>::quiet_NaN();  // rollout 0, position 1
  gcpo::similarity_options opt;
  opt.group = G;
  device_buffer<float> d_emb(emb), d_sim(G * N);
  stream s;
  GCPO_OK(gcpo::cuda::group_similarity(gcpo::make_device_view(d_emb.get(), {G, N, D}),
                                       gcpo::make_device_view(d_sim.get(), {G, N}), opt, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<float> sim = d_sim.download();
  for (std::int64_t g = 0; g < G; ++g) {
    CHECK(std::fabs(sim[g * N + 0] - 1.0f) < 1e-6f);
    CHECK(std::isnan(sim[g * N + 1]));
  }
  std::vector<float> table(V * D);
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<float>(i % 7) - 3.0f;
  std::vector<std::int32_t> tokens{1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3};
  tokens[5] = 10;  // rollout 1, position 2: out of range
  device_buffer<float> d_table(table);
  device_buffer<std::int32_t> d_tok(tokens);
  d_sim.poison();
  GCPO_OK(gcpo::cuda::group_similarity_from_tokens(gcpo::make_device_view(d_tok.get(), {G, N}),
                                                   gcpo::make_device_view(d_table.get(), {V, D}),
                                                   gcpo::make_device_view(d_sim.get(), {G, N}), opt, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  sim = d_sim.download();
  for (std::int64_t g = 0; g < G; ++g) {
    CHECK(!std::isnan(sim[g * N + 0]));
    CHECK(!std::isnan(sim[g * N + 1]));
    CHECK(std::isnan(sim[g * N + 2]));
  }
}
