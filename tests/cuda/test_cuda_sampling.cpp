// CUDA generation_step against the host twin: the sampled tokens bitwise equal (same seed and
// step), log-prob and entropy within tolerance; vocabularies either side of the 256 lanes and of
// a group of four, every dtype, CFG on and off, temperatures, top-k (1, small, V - 1, V, > V),
// top-p (tiny to 1), ties, -inf, NaN and +inf logits, strided rows, misaligned pointers.
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

template <class T, class I>
void check_step(std::int64_t R, std::int64_t V, bool cfg, const gcpo::sampling_options& opt, logits_kind kind,
                std::int64_t pad, std::size_t offset, std::uint64_t seed) {
  INFO("R=" << R << " V=" << V << " dtype=" << gcpo::to_string(gcpo::dtype_of<T>::value) << " index="
            << gcpo::to_string(gcpo::dtype_of<I>::value) << " cfg=" << cfg << " s=" << opt.cfg_scale
            << " T=" << opt.temperature << " top_k=" << opt.top_k << " top_p=" << opt.top_p << " seed=" << opt.seed
            << " step=" << opt.step << " logits=" << name_of(kind) << " pad=" << pad << " offset=" << offset
            << " data seed=" << seed);
  rng g(seed);
  const std::int64_t s0 = V + pad, elems = (R - 1) * s0 + V;
  const std::vector<T> cond = narrow<T>(make_logits(g, elems, kind));
  const std::vector<T> uncond = narrow<T>(make_logits(g, elems, kind == logits_kind::special ? logits_kind::normal : kind));
  std::vector<I> tokens(R);
  std::vector<float> lp(R), ent(R);
  gcpo_test::host_workspace hws(gcpo::generation_step_workspace_bytes(R, V));
  GCPO_OK(gcpo::host::generation_step(strided(cond.data(), {R, V}, {s0, 1}, host),
                                      cfg ? strided(uncond.data(), {R, V}, {s0, 1}, host) : gcpo::const_tensor_view{},
                                      gcpo::make_view(tokens.data(), {R}), gcpo::make_view(lp.data(), {R}),
                                      gcpo::make_view(ent.data(), {R}), opt, hws.get()));
  device_buffer<T> d_cond(cond, offset), d_uncond(uncond, offset ? 0 : 1);
  device_buffer<I> d_tok(R);
  device_buffer<float> d_lp(R), d_ent(R);
  auto ws = device_workspace(gcpo::generation_step_workspace_bytes(R, V));
  auto got = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::generation_step(strided(d_cond.get(), {R, V}, {s0, 1}, device),
                                           cfg ? strided(d_uncond.get(), {R, V}, {s0, 1}, device)
                                               : gcpo::const_tensor_view{},
                                           gcpo::make_device_view(d_tok.get(), {R}), gcpo::make_device_view(d_lp.get(), {R}),
                                           gcpo::make_device_view(d_ent.get(), {R}), opt, ws.workspace(), s);
      },
      {out(d_tok), out(d_lp), out(d_ent)});
  check_equal(as<I>(got[0]), tokens, "tokens");
  check_close(as<float>(got[1]), lp, value_atol, value_rtol, "logprob");
  check_close(as<float>(got[2]), ent, value_atol, value_rtol, "entropy");
}

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
