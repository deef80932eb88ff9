// CUDA generation_step against the host twin: the sampled tokens bitwise equal (same seed and
// step), log-prob and entropy within tolerance; vocabularies either side of the 256 lanes and of
// a group of four, every dtype, CFG on and off, temperatures, top-k (1, small, V - 1, V, > V),
// top-p (tiny to 1), ties, -inf, NaN and +inf logits, strided rows, misaligned pointers. Rows
// without top-k / top-p longer than 2048 entries are split over several blocks (the split
// kernel): vocabularies around multiples of 2048, 1 to 40 rows, a workspace that starts as
// garbage, known tokens across chunks (ties, +inf, all -inf, NaN), the bits of a row independent
// of the batch, and back-to-back steps on one stream and in one replayed graph.
#include "cuda_support.hpp"

namespace {

using namespace gcpo_cuda_test;

enum class logits_kind { normal, ties, special, peaked };

const char* name_of(logits_kind k) {
  switch (k) {
    case logits_kind::normal: return "normal";
    case logits_kind::ties: return "ties";
    case logits_kind::special: return "special";
    case logits_kind::peaked: return "peaked";
  }
  return "?";
}

std::vector<float> make_logits(rng& g, std::int64_t n, logits_kind kind) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    x = g.normal(0.0f, 2.0f);
    switch (kind) {
      case logits_kind::normal: break;
      case logits_kind::ties: x = std::round(x); break;
      case logits_kind::special: {
        const double p = g.uniform();
        if (p < 0.1) x = -std::numeric_limits<float>::infinity();
        else if (p < 0.12) x = std::numeric_limits<float>::quiet_NaN();
        else if (p < 0.15) x = -0.0f;
        else if (p < 0.2) x = 0.0f;
        break;
      }
      case logits_kind::peaked: x *= 8.0f; break;
    }
  }
  return v;
}

/// Host twin of the step on [R, V] rows `cond` / `uncond` (row stride s0): tokens, log-probs,
/// entropies.
template <class T, class I>
struct host_result {
  std::vector<I> tokens;
  std::vector<float> lp, ent;
};

template <class T, class I>
host_result<T, I> host_step(std::int64_t R, std::int64_t V, std::int64_t s0, const std::vector<T>& cond,
                            const std::vector<T>& uncond, bool cfg, const gcpo::sampling_options& opt) {
  host_result<T, I> h{std::vector<I>(R), std::vector<float>(R), std::vector<float>(R)};
  gcpo_test::host_workspace hws(gcpo::generation_step_workspace_bytes(R, V));
  GCPO_OK(gcpo::host::generation_step(strided(cond.data(), {R, V}, {s0, 1}, host),
                                      cfg ? strided(uncond.data(), {R, V}, {s0, 1}, host) : gcpo::const_tensor_view{},
                                      gcpo::make_view(h.tokens.data(), {R}), gcpo::make_view(h.lp.data(), {R}),
                                      gcpo::make_view(h.ent.data(), {R}), opt, hws.get()));
  return h;
}

/// The CUDA step on the same rows (run_checked: a second run with the grid capped at 2 blocks
/// when simulated, and a CUDA-graph replay, bitwise the first), against the host twin: tokens
/// bitwise, log-prob and entropy within the spec's tolerance. The workspace starts filled with
/// `ws_byte` (the operator owes nothing to its previous contents). Returns the CUDA outputs.
template <class T, class I>
host_result<T, I> check_step_on(std::int64_t R, std::int64_t V, std::int64_t s0, const std::vector<T>& cond,
                                const std::vector<T>& uncond, bool cfg, const gcpo::sampling_options& opt,
                                std::size_t offset, unsigned char ws_byte = 0) {
  const host_result<T, I> want = host_step<T, I>(R, V, s0, cond, uncond, cfg, opt);
  device_buffer<T> d_cond(cond, offset), d_uncond(uncond, offset ? 0 : 1);
  device_buffer<I> d_tok(R);
  device_buffer<float> d_lp(R), d_ent(R);
  auto ws = device_workspace(gcpo::generation_step_workspace_bytes(R, V));
  ws.poison(ws_byte);
  auto got = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::generation_step(strided(d_cond.get(), {R, V}, {s0, 1}, device),
                                           cfg ? strided(d_uncond.get(), {R, V}, {s0, 1}, device)
                                               : gcpo::const_tensor_view{},
                                           gcpo::make_device_view(d_tok.get(), {R}), gcpo::make_device_view(d_lp.get(), {R}),
                                           gcpo::make_device_view(d_ent.get(), {R}), opt, ws.workspace(), s);
      },
      {out(d_tok), out(d_lp), out(d_ent)});
  host_result<T, I> h{as<I>(got[0]), as<float>(got[1]), as<float>(got[2])};
  check_equal(h.tokens, want.tokens, "tokens");
  check_close(h.lp, want.lp, value_atol, value_rtol, "logprob");
  check_close(h.ent, want.ent, value_atol, value_rtol, "entropy");
  return h;
}

template <class T, class I>
void check_step(std::int64_t R, std::int64_t V, bool cfg, const gcpo::sampling_options& opt, logits_kind kind,
                std::int64_t pad, std::size_t offset, std::uint64_t seed, unsigned char ws_byte = 0) {
  INFO("R=" << R << " V=" << V << " dtype=" << gcpo::to_string(gcpo::dtype_of<T>::value) << " index="
            << gcpo::to_string(gcpo::dtype_of<I>::value) << " cfg=" << cfg << " s=" << opt.cfg_scale
            << " T=" << opt.temperature << " top_k=" << opt.top_k << " top_p=" << opt.top_p << " seed=" << opt.seed
            << " step=" << opt.step << " logits=" << name_of(kind) << " pad=" << pad << " offset=" << offset
            << " data seed=" << seed << " workspace byte=" << static_cast<int>(ws_byte));
  rng g(seed);
  const std::int64_t s0 = V + pad, elems = (R - 1) * s0 + V;
  const std::vector<T> cond = narrow<T>(make_logits(g, elems, kind));
  const std::vector<T> uncond = narrow<T>(make_logits(g, elems, kind == logits_kind::special ? logits_kind::normal : kind));
  (void)check_step_on<T, I>(R, V, s0, cond, uncond, cfg, opt, offset, ws_byte);
}

/// Entries of a row cut into chunks of this many by the CUDA twin without top-k / top-p (the
/// split kernel's split_chunk; the tests below choose V around its multiples).
constexpr std::int64_t chunk = 2048;

}  // namespace

TEST_CASE("cuda generation_step: smoke (no filter, top-k, top-p, both)", "[cuda][sampling]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  gcpo::sampling_options opt;
  opt.cfg_scale = 5.0f;
  opt.seed = 42;
  opt.step = 7;
  check_step<gcpo::bfloat16, std::int64_t>(3, 1000, true, opt, logits_kind::normal, 0, 0, 51);
  opt.top_k = 50;
  check_step<float, std::int32_t>(2, 257, true, opt, logits_kind::ties, 3, 1, 52);
  opt.top_k = 0;
  opt.top_p = 0.9f;
  check_step<gcpo::float16, std::int32_t>(2, 300, false, opt, logits_kind::special, 0, 0, 53);
  opt.top_k = 100;
  opt.top_p = 0.5f;
  check_step<float, std::int64_t>(2, 1031, true, opt, logits_kind::peaked, 8, 0, 54);
  // a row counter that starts elsewhere (a batch split across processes), up to its last value
  opt.first_row = 1000;
  check_step<float, std::int64_t>(3, 300, true, opt, logits_kind::normal, 0, 0, 55);
  opt.first_row = (std::uint64_t{1} << 32) - 2;
  check_step<gcpo::bfloat16, std::int32_t>(2, 257, false, opt, logits_kind::normal, 0, 0, 56);
}

TEST_CASE("cuda generation_step: tokens bitwise the host's", "[cuda][sampling][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 3;
  // Simulated (1024-thread blocks on CPU threads): fewer vocabularies, and a third of the
  // (V, top-k, top-p) combinations, each with one kind of logits, chosen so that every top-k
  // and top-p setting meets several vocabularies and every kind of logits.
  const std::vector<std::int64_t> vocabs =
      gpu_or_sim<std::vector<std::int64_t>>({1, 2, 3, 4, 5, 7, 255, 256, 257, 1000, 1031, 16384}, {1, 2, 5, 256, 257, 1031});
  for (std::size_t vi = 0; vi < vocabs.size(); ++vi) {
    const std::int64_t V = vocabs[vi];
    const std::vector<std::int64_t> ks{0, 1, 5, V - 1, V, V + 5};
    const std::vector<float> ps{1.0f, 0.9f, 0.5f, 0.01f};
    for (std::size_t ki = 0; ki < ks.size(); ++ki)
      for (std::size_t pi = 0; pi < ps.size(); ++pi) {
        const std::int64_t k = ks[ki];
        const float p = ps[pi];
        if (k < 0) continue;
        if (simulated && (vi + ki + pi) % 3 != 0) continue;
        for (const logits_kind kind : {logits_kind::normal, logits_kind::ties, logits_kind::special, logits_kind::peaked}) {
          if (simulated && static_cast<std::size_t>(kind) != (vi + ki / 3 + pi) % 4) continue;
          ++seed;
          gcpo::sampling_options opt;
          opt.top_k = k;
          opt.top_p = p;
          opt.seed = 0x9e3779b97f4a7c15ull * seed;
          opt.step = seed % 5 == 0 ? (std::uint64_t{1} << 33) + seed : seed % 600;
          opt.temperature = seed % 3 == 0 ? 0.7f : 1.0f;
          opt.cfg_scale = seed % 2 == 0 ? 5.0f : 1.5f;
          const bool cfg = seed % 4 != 1;
          const std::int64_t R = V >= 16384 ? 4 : (seed % 2 ? 3 : gpu_or_sim<std::int64_t>(16, 2));
          switch (seed % 3) {
            case 0: check_step<float, std::int32_t>(R, V, cfg, opt, kind, 0, 0, seed); break;
            case 1: check_step<gcpo::bfloat16, std::int64_t>(R, V, cfg, opt, kind, 3, 1, seed); break;
            default: check_step<gcpo::float16, std::int32_t>(R, V, cfg, opt, kind, 8, 0, seed); break;
          }
        }
      }
  }
}

TEST_CASE("cuda generation_step: the real shape (16 rows, V = 16384, CFG), many steps", "[cuda][sampling][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const std::uint64_t steps = gpu_or_sim<std::uint64_t>(24, 4);  // simulated: 4 steps of 2 rows
  for (std::uint64_t step = 0; step < steps; ++step) {
    gcpo::sampling_options opt;
    opt.cfg_scale = 5.0f;
    opt.seed = 1234;
    opt.step = step;
    opt.top_k = step % 3 == 1 ? 4096 : 0;
    opt.top_p = step % 3 == 2 ? 0.95f : 1.0f;
    check_step<gcpo::bfloat16, std::int64_t>(gpu_or_sim<std::int64_t>(16, 2), 16384, true, opt, logits_kind::normal, 0,
                                             0, 100 + step);
  }
}

TEST_CASE("cuda generation_step: workspace and validation", "[cuda][sampling]") {
  std::vector<float> cond(2 * 10);
  std::vector<std::int32_t> tok(2);
  gcpo::sampling_options opt;
  CHECK(gcpo::cuda::generation_step(gcpo::make_device_view(cond.data(), {2, 10}), {},
                                    gcpo::make_device_view(tok.data(), {2}), {}, {}, opt, gcpo::workspace{}, nullptr)
            .code() == gcpo::status_code::workspace_too_small);
  CHECK(gcpo::generation_step_workspace_bytes(2, 10) >= 2 * 2 * 10 * sizeof(float));
}

// --- rows split over several blocks (no top-k / top-p: 2048-entry chunks, merged by the block
// that counts a row's last chunk) --------------------------------------------------------------

TEST_CASE("cuda generation_step: rows split over several blocks, tokens bitwise the host's", "[cuda][sampling][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  // V either side of the chunk multiples (the last chunk one entry, a partial Philox group, a
  // whole chunk), every kind of logits, each dtype, CFG on and off, aligned (vector loads) and
  // misaligned or strided rows (scalar loads), 1, 3, 16 rows, and many rows (more blocks than a
  // GPU holds at once), each with the workspace starting as garbage or as zeros.
  const std::vector<std::int64_t> vocabs{chunk + 1, 2 * chunk + 3, 3 * chunk, 3 * chunk - 2, 5 * chunk + 7};
  std::uint64_t seed = 700;
  for (std::size_t vi = 0; vi < vocabs.size(); ++vi) {
    const std::int64_t V = vocabs[vi];
    for (const logits_kind kind : {logits_kind::normal, logits_kind::ties, logits_kind::special, logits_kind::peaked}) {
      ++seed;
      gcpo::sampling_options opt;
      opt.seed = 0x9e3779b97f4a7c15ull * seed;
      opt.step = seed % 3 == 0 ? (std::uint64_t{1} << 33) + seed : seed % 600;
      opt.temperature = seed % 3 == 1 ? 0.7f : 1.0f;
      opt.cfg_scale = seed % 2 == 0 ? 5.0f : 1.5f;
      const bool cfg = seed % 4 != 1;
      const std::int64_t rows[4] = {1, 3, 16, gpu_or_sim<std::int64_t>(300, 40)};
      const std::int64_t R = rows[(vi + static_cast<std::size_t>(kind)) % 4];
      const unsigned char ws_byte = seed % 2 ? 0xff : 0x00;
      switch ((vi + static_cast<std::size_t>(kind)) % 3) {
        case 0: check_step<float, std::int32_t>(R, V, cfg, opt, kind, 0, 0, seed, ws_byte); break;
        case 1: check_step<gcpo::bfloat16, std::int64_t>(R, V, cfg, opt, kind, 3, 1, seed, ws_byte); break;
        default: check_step<gcpo::float16, std::int32_t>(R, V, cfg, opt, kind, 8, 0, seed, ws_byte); break;
      }
    }
  }
}

TEST_CASE("cuda generation_step: wide rows with top-k or top-p (one block per row) and without", "[cuda][sampling][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const std::int64_t V = 2 * chunk + 5;
  std::uint64_t seed = 800;
  for (const std::int64_t k : {std::int64_t{0}, std::int64_t{7}, V - 1})
    for (const float p : {1.0f, 0.8f}) {
      ++seed;
      gcpo::sampling_options opt;
      opt.top_k = k;
      opt.top_p = p;
      opt.cfg_scale = 5.0f;
      opt.seed = seed;
      opt.step = seed;
      check_step<gcpo::bfloat16, std::int64_t>(3, V, true, opt, seed % 2 ? logits_kind::special : logits_kind::normal, 0,
                                               0, seed, 0xff);
    }
}

namespace {

/// Rows with a known answer, each spanning several chunks (V = 3 * chunk + 5), one per row:
/// 0: every entry -inf: the lowest index, 0; NaN log-prob and entropy (as the host).
/// 1: 1e8 at three entries in three chunks, moderate logits elsewhere: 1e8 + g rounds to 1e8
///    (g < 17 < ulp), so the three keys tie and the lowest of the three wins.
/// 2: +inf at two entries (chunks 1 and 2): key +inf, the lower one.
/// 3: NaN in chunk 0 and normal logits: a NaN never wins; log-prob and entropy NaN.
/// 4: one entry far above the others in the last (short) chunk: it wins.
/// 5: normal logits (the host twin decides).
template <class T>
std::vector<float> known_rows(std::int64_t V, std::vector<std::int64_t>& want) {
  const float inf = std::numeric_limits<float>::infinity();
  rng g(4242);
  std::vector<float> x(static_cast<std::size_t>(6 * V));
  for (auto& v : x) v = g.normal(0.0f, 2.0f);
  auto row = [&](std::int64_t r) { return x.data() + r * V; };
  std::fill(row(0), row(0) + V, -inf);
  row(1)[chunk + 17] = 1e8f;
  row(1)[2 * chunk + 3] = 1e8f;
  row(1)[3 * chunk + 1] = 1e8f;
  row(2)[2 * chunk + 100] = inf;
  row(2)[chunk + 999] = inf;
  row(3)[5] = std::numeric_limits<float>::quiet_NaN();
  row(4)[V - 2] = 200.0f;
  want = {0, chunk + 17, chunk + 999, -1, V - 2, -1};
  return x;
}

}  // namespace

TEST_CASE("cuda generation_step: split rows with known tokens (-inf, ties across chunks, +inf, NaN)", "[cuda][sampling]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const std::int64_t V = 3 * chunk + 5, R = 6;
  std::vector<std::int64_t> want;
  const std::vector<float> x = known_rows<float>(V, want);
  const std::vector<float> zeros(x.size(), 0.0f);
  gcpo::sampling_options opt;
  opt.seed = 99;
  opt.step = 3;
  for (const bool cfg : {false, true}) {
    INFO("cfg=" << cfg);
    opt.cfg_scale = 1.0f;  // with uncond = 0: x = fma(1, cond - 0, 0) = cond, the same rows
    const auto got = check_step_on<float, std::int64_t>(R, V, V, x, zeros, cfg, opt, 0, 0xff);
    for (std::int64_t r = 0; r < R; ++r)
      if (want[static_cast<std::size_t>(r)] >= 0) {
        INFO("row " << r);
        CHECK(got.tokens[static_cast<std::size_t>(r)] == want[static_cast<std::size_t>(r)]);
      }
    CHECK(got.tokens[3] != 5);
    CHECK(std::isnan(got.lp[0]));
    CHECK(std::isnan(got.ent[0]));
    CHECK(std::isnan(got.lp[3]));
    CHECK(std::isnan(got.ent[3]));
    CHECK(std::isfinite(got.ent[5]));
  }
}

TEST_CASE("cuda generation_step: a split row's bits do not depend on the other rows", "[cuda][sampling][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  // Row r of a batch of 5 against the same row drawn alone with first_row = r (the same Philox
  // counter): the chunks and their merge order depend on V only, so the log-prob and entropy
  // are the same bits, not only the token.
  const std::int64_t V = 4 * chunk + 3, R = 5;
  rng g(31);
  const std::vector<gcpo::bfloat16> cond = narrow<gcpo::bfloat16>(make_logits(g, R * V, logits_kind::normal));
  const std::vector<gcpo::bfloat16> uncond = narrow<gcpo::bfloat16>(make_logits(g, R * V, logits_kind::normal));
  gcpo::sampling_options opt;
  opt.cfg_scale = 5.0f;
  opt.seed = 5;
  opt.step = 77;
  const auto all = check_step_on<gcpo::bfloat16, std::int32_t>(R, V, V, cond, uncond, true, opt, 0);
  for (std::int64_t r = 0; r < R; ++r) {
    INFO("row " << r);
    const std::vector<gcpo::bfloat16> c1(cond.begin() + r * V, cond.begin() + (r + 1) * V);
    const std::vector<gcpo::bfloat16> u1(uncond.begin() + r * V, uncond.begin() + (r + 1) * V);
    gcpo::sampling_options o1 = opt;
    o1.first_row = static_cast<std::uint64_t>(r);
    const auto one = check_step_on<gcpo::bfloat16, std::int32_t>(1, V, V, c1, u1, true, o1, 0, 0xff);
    const std::size_t i = static_cast<std::size_t>(r);
    CHECK(one.tokens[0] == all.tokens[i]);
    check_same_floats({one.lp[0]}, {all.lp[i]}, "logprob");
    check_same_floats({one.ent[0]}, {all.ent[i]}, "entropy");
  }
}

TEST_CASE("cuda generation_step: back-to-back split steps on one stream and in one graph", "[cuda][sampling]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  // Several steps enqueued with nothing in between (the counters of one step must not leak into
  // the next), one workspace for all, starting as garbage; then the same steps captured in one
  // graph and replayed twice. Every step's outputs against the host twin.
  const std::int64_t R = 3, V = 2 * chunk + 1, steps = 4;
  rng g(57);
  const std::vector<float> cond = make_logits(g, R * V, logits_kind::normal);
  const std::vector<float> uncond = make_logits(g, R * V, logits_kind::normal);
  device_buffer<float> d_cond(cond), d_uncond(uncond);
  auto ws = device_workspace(gcpo::generation_step_workspace_bytes(R, V));
  ws.poison(0xff);
  std::vector<device_buffer<std::int64_t>> d_tok;
  std::vector<device_buffer<float>> d_lp, d_ent;
  std::vector<gcpo::sampling_options> opts(steps);
  for (std::int64_t k = 0; k < steps; ++k) {
    d_tok.emplace_back(R);
    d_lp.emplace_back(R);
    d_ent.emplace_back(R);
    opts[static_cast<std::size_t>(k)].cfg_scale = 5.0f;
    opts[static_cast<std::size_t>(k)].seed = 11;
    opts[static_cast<std::size_t>(k)].step = static_cast<std::uint64_t>(k);
  }
  stream s;
  auto enqueue = [&] {
    for (std::int64_t k = 0; k < steps; ++k) {
      const std::size_t i = static_cast<std::size_t>(k);
      GCPO_OK(gcpo::cuda::generation_step(gcpo::make_device_view(d_cond.get(), {R, V}),
                                          gcpo::make_device_view(d_uncond.get(), {R, V}),
                                          gcpo::make_device_view(d_tok[i].get(), {R}),
                                          gcpo::make_device_view(d_lp[i].get(), {R}),
                                          gcpo::make_device_view(d_ent[i].get(), {R}), opts[i], ws.workspace(), s));
    }
  };
  auto check_all = [&](const char* what) {
    INFO(what);
    for (std::int64_t k = 0; k < steps; ++k) {
      INFO("step " << k);
      const std::size_t i = static_cast<std::size_t>(k);
      const auto want = host_step<float, std::int64_t>(R, V, V, cond, uncond, true, opts[i]);
      check_equal(d_tok[i].download(), want.tokens, "tokens");
      check_close(d_lp[i].download(), want.lp, value_atol, value_rtol, "logprob");
      check_close(d_ent[i].download(), want.ent, value_atol, value_rtol, "entropy");
    }
  };
  auto poison_all = [&] {
    for (std::int64_t k = 0; k < steps; ++k) {
      const std::size_t i = static_cast<std::size_t>(k);
      d_tok[i].poison();
      d_lp[i].poison();
      d_ent[i].poison();
    }
  };
  poison_all();
  enqueue();
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_all("direct calls");

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  GCPO_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  enqueue();
  GCPO_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  GCPO_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 2; ++replay) {
    poison_all();
    ws.poison(static_cast<unsigned char>(replay ? 0x01 : 0xff));
    GCPO_CUDA_CHECK(cudaGraphLaunch(exec, s));
    GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
    check_all(replay ? "second graph replay" : "first graph replay");
  }
  (void)cudaGraphExecDestroy(exec);
  (void)cudaGraphDestroy(graph);
}

TEST_CASE("generation_step noise: every Gumbel noise lies above the floor the split kernel assumes", "[cuda][sampling]") {
  // The split kernel passes over an entry whose fl(x + 17) stays below fl(xm - 3), xm the chunk's
  // largest logit: sound only if no noise reaches -3 or below (and none 17 or above, which
  // tests/test_sampling.cpp checks). All 2^23 uniforms, on the host (the same repro_log).
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (std::uint32_t k = 0; k < (1u << 23); ++k) {
    const float g = gcpo::detail::gumbel_of_bits(k << 9);
    lo = std::min(lo, g);
    hi = std::max(hi, g);
  }
  INFO("noise in [" << lo << ", " << hi << "]");
  CHECK(lo > -3.0f);
  CHECK(lo < -2.8f);  // the smallest is -log(-log(2^-24)) = -2.8116: the bound is not vacuous
  CHECK(hi < 17.0f);
}
