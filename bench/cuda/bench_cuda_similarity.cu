// bench/cuda/bench_cuda_similarity.cu - group_similarity from [R, N, D] embeddings and
// group_similarity_from_tokens from [R, N] tokens + a [V, D] table, at R = 8 / 32,
// N = 576 / 1024, D = 2048, G = 4 / 8, bf16 and fp32. Memory-bound: L2 flushed.
//
// Bytes each call must move (s = bytes per element):
//   group_similarity              R*N*D*s + R*N*4
//   group_similarity_from_tokens  U*D*s + R*N*8 + R*N*4, U = the distinct tokens of the batch
//                                 (each table row needed is read once; repeats can hit L2)
#include "bench_cuda_common.hpp"

namespace gcpo_cuda_bench {
namespace {

double embedding_bytes(gcpo::dtype t, std::int64_t R, std::int64_t N) {
  return static_cast<double>(R * N) * (static_cast<double>(D) * gcpo::dtype_size(t) + 4.0);
}
double table_bytes(gcpo::dtype t, std::int64_t R, std::int64_t N) {
  return static_cast<double>(distinct_tokens(R * N, V, 2)) * static_cast<double>(D) * gcpo::dtype_size(t) +
         static_cast<double>(R * N) * 12.0;
}

void bm_group_similarity(benchmark::State& st, gcpo::dtype t, std::int64_t R, std::int64_t N, std::int64_t G) {
  const std::size_t elem = static_cast<std::size_t>(gcpo::dtype_size(t));
  const slot_ref emb = device_slot("embeddings", static_cast<std::size_t>(R * N * D) * elem, input_key("emb", t, {R, N, D}, 4));
  if (emb.fresh) fill_normal(emb.data, t, R * N * D, 0.01f, 0.02f, 4);
  float* sim = output_as<float>("out_a", R * N);
  poison(sim, static_cast<std::size_t>(R * N) * 4);
  gcpo::const_tensor_view ev = gcpo::make_device_view(static_cast<const float*>(emb.data), {R, N, D});
  ev.type = t;
  const auto sv = gcpo::make_device_view(sim, {R, N});
  gcpo::similarity_options opt;
  opt.group = G;
  time_calls(
      st, l2::flush, [&] { return gcpo::cuda::group_similarity(ev, sv, opt, stream()); },
      [&] { return expect_finite(st, sim, R * N, "similarity"); });
  set_bytes(st, embedding_bytes(t, R, N));
}

void bm_group_similarity_from_tokens(benchmark::State& st, gcpo::dtype t, std::int64_t R, std::int64_t N, std::int64_t G) {
  const std::size_t elem = static_cast<std::size_t>(gcpo::dtype_size(t));
  const slot_ref table = device_slot("table", static_cast<std::size_t>(V * D) * elem, input_key("table", t, {V, D}, 5));
  if (table.fresh) fill_normal(table.data, t, V * D, 0.01f, 0.02f, 5);
  const slot_ref tok = device_slot("tokens", static_cast<std::size_t>(R * N) * 8, input_key("tokens", gcpo::dtype::int64, {R, N, V}, 2));
  if (tok.fresh) upload_tokens(static_cast<std::int64_t*>(tok.data), R * N, V, 2);
  float* sim = output_as<float>("out_a", R * N);
  poison(sim, static_cast<std::size_t>(R * N) * 4);
  const auto tv = gcpo::make_device_view(static_cast<const std::int64_t*>(tok.data), {R, N});
  gcpo::const_tensor_view wv = gcpo::make_device_view(static_cast<const float*>(table.data), {V, D});
  wv.type = t;
  const auto sv = gcpo::make_device_view(sim, {R, N});
  gcpo::similarity_options opt;
  opt.group = G;
  time_calls(
      st, l2::flush, [&] { return gcpo::cuda::group_similarity_from_tokens(tv, wv, sv, opt, stream()); },
      [&] { return expect_finite(st, sim, R * N, "similarity"); });
  st.counters["distinct_tokens"] = benchmark::Counter(static_cast<double>(distinct_tokens(R * N, V, 2)));
  set_bytes(st, table_bytes(t, R, N));
}

}  // namespace

void register_similarity() {
  for (gcpo::dtype t : float_types())
    for (std::int64_t R : rollout_counts())
      for (std::int64_t N : token_counts())
        for (std::int64_t G : group_sizes())
          add(bench_name("group_similarity", dtype_tag(t), {{"R", R}, {"N", N}, {"D", D}, {"G", G}}), bound::memory,
              [=](benchmark::State& st) { bm_group_similarity(st, t, R, N, G); }, embedding_bytes(t, R, N));
  for (gcpo::dtype t : float_types())
    for (std::int64_t R : rollout_counts())
      for (std::int64_t N : token_counts())
        for (std::int64_t G : group_sizes())
          add(bench_name("group_similarity_from_tokens", dtype_tag(t), {{"R", R}, {"N", N}, {"V", V}, {"D", D}, {"G", G}}),
              bound::memory, [=](benchmark::State& st) { bm_group_similarity_from_tokens(st, t, R, N, G); },
              table_bytes(t, R, N));
}

}  // namespace gcpo_cuda_bench
