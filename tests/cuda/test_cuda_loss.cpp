// CUDA group_advantages, advantage_weight, gcpo_loss_forward and gcpo_loss_backward against
// the host twins: sequence lengths either side of a scan tile (1024) and of a warp, groups of 2
// and 16, every algorithm / clipping / aggregation / detach option, masks, grad_loss, NaN.
#include "cuda_support.hpp"

namespace {

using namespace gcpo_cuda_test;

struct loss_data {
  std::int64_t R, N;
  std::vector<float> lp, ref, old, adv;
  std::vector<std::uint8_t> mask;
};

loss_data make_data(rng& g, std::int64_t R, std::int64_t N, bool with_old, double p_mask) {
  loss_data d;
  d.R = R;
  d.N = N;
  d.lp.resize(R * N);
  d.ref.resize(R * N);
  d.adv.resize(R);
  for (std::int64_t i = 0; i < R * N; ++i) {
    d.lp[i] = g.uniform(-6.0f, -0.01f);
    d.ref[i] = d.lp[i] + g.normal(0.0f, 0.4f);  // some beyond the weight clip
  }
  if (with_old) {
    d.old.resize(R * N);
    for (std::int64_t i = 0; i < R * N; ++i) d.old[i] = d.lp[i] + g.normal(0.0f, 0.15f);  // some beyond the PPO clip
  }
  for (auto& a : d.adv) a = g.normal(0.0f, 1.0f);
  if (p_mask > 0.0) {
    d.mask.resize(R * N);
    for (auto& m : d.mask) m = g.chance(p_mask) ? static_cast<std::uint8_t>(g.integer(1, 3)) : 0;
  }
  return d;
}

std::vector<gcpo::loss_options> option_sets() {
  std::vector<gcpo::loss_options> v;
  for (const gcpo::algorithm algo : {gcpo::algorithm::gcpo, gcpo::algorithm::grpo})
    for (const gcpo::ratio_clipping clip : {gcpo::ratio_clipping::none, gcpo::ratio_clipping::ppo})
      for (const gcpo::loss_aggregation agg :
           {gcpo::loss_aggregation::token_mean, gcpo::loss_aggregation::sequence_mean, gcpo::loss_aggregation::constant,
            gcpo::loss_aggregation::external})
        for (const bool detach : {false, true}) {
          gcpo::loss_options o;
          o.algo = algo;
          o.clipping = clip;
          o.aggregation = agg;
          o.detach_weight = detach;
          o.beta = 0.04f;
          o.weight_clip = 0.5f;
          o.max_tokens = agg == gcpo::loss_aggregation::constant ? 700.0 : 0.0;
          o.denominator = agg == gcpo::loss_aggregation::external ? 1234.0 : 0.0;
          v.push_back(o);
        }
  return v;
}

const char* name(gcpo::loss_aggregation a) {
  switch (a) {
    case gcpo::loss_aggregation::token_mean: return "token_mean";
    case gcpo::loss_aggregation::sequence_mean: return "sequence_mean";
    case gcpo::loss_aggregation::constant: return "constant";
    case gcpo::loss_aggregation::external: return "external";
  }
  return "?";
}

void check_loss(const loss_data& d, const gcpo::loss_options& opt, bool with_grad_loss) {
  const std::int64_t R = d.R, N = d.N;
  INFO("R=" << R << " N=" << N << " algo=" << (opt.algo == gcpo::algorithm::gcpo ? "gcpo" : "grpo") << " clipping="
            << (opt.clipping == gcpo::ratio_clipping::ppo ? "ppo" : "none") << " aggregation=" << name(opt.aggregation)
            << " detach=" << opt.detach_weight << " old=" << !d.old.empty() << " mask=" << !d.mask.empty()
            << " grad_loss=" << with_grad_loss);
  gcpo::loss_inputs hin;
  hin.logp = gcpo::make_view(d.lp.data(), {R, N});
  hin.ref_logp = gcpo::make_view(d.ref.data(), {R, N});
  if (!d.old.empty()) hin.old_logp = gcpo::make_view(d.old.data(), {R, N});
  hin.advantages = gcpo::make_view(d.adv.data(), {R});
  if (!d.mask.empty()) hin.mask = gcpo::make_view(d.mask.data(), {R, N});
  std::vector<float> stats(gcpo::loss_stat_count), w(R * N), kl(R * N), grad(R * N);
  const float gl_value = 0.37f;
  gcpo::loss_outputs hout;
  hout.stats = gcpo::make_view(stats.data(), {gcpo::loss_stat_count});
  hout.weight = gcpo::make_view(w.data(), {R, N});
  hout.kl = gcpo::make_view(kl.data(), {R, N});
  GCPO_OK(gcpo::host::gcpo_loss_forward(hin, hout, opt));
  GCPO_OK(gcpo::host::gcpo_loss_backward(hin, with_grad_loss ? gcpo::make_view(&gl_value, {1}) : gcpo::const_tensor_view{},
                                         gcpo::make_view(grad.data(), {R, N}), opt));

  device_buffer<float> d_lp(d.lp), d_ref(d.ref), d_old(d.old), d_adv(d.adv), d_gl(std::vector<float>{gl_value});
  device_buffer<std::uint8_t> d_mask(d.mask);
  device_buffer<float> d_stats(gcpo::loss_stat_count), d_w(R * N), d_kl(R * N), d_grad(R * N);
  auto ws = device_workspace(gcpo::gcpo_loss_workspace_bytes(R, N));
  gcpo::loss_inputs din;
  din.logp = gcpo::make_device_view(d_lp.get(), {R, N});
  din.ref_logp = gcpo::make_device_view(d_ref.get(), {R, N});
  if (!d.old.empty()) din.old_logp = gcpo::make_device_view(d_old.get(), {R, N});
  din.advantages = gcpo::make_device_view(d_adv.get(), {R});
  if (!d.mask.empty()) din.mask = gcpo::make_device_view(d_mask.get(), {R, N});
  gcpo::loss_outputs dout;
  dout.stats = gcpo::make_device_view(d_stats.get(), {gcpo::loss_stat_count});
  dout.weight = gcpo::make_device_view(d_w.get(), {R, N});
  dout.kl = gcpo::make_device_view(d_kl.get(), {R, N});
  auto f = run_checked([&](cudaStream_t s) { return gcpo::cuda::gcpo_loss_forward(din, dout, opt, ws.workspace(), s); },
                       {out(d_stats), out(d_w), out(d_kl)});
  check_close(as<float>(f[0]), stats, value_atol, value_rtol, "stats");
  check_close(as<float>(f[1]), w, value_atol, value_rtol, "weight");
  check_close(as<float>(f[2]), kl, value_atol, value_rtol, "kl");
  auto b = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::gcpo_loss_backward(
            din, with_grad_loss ? gcpo::const_tensor_view(gcpo::make_device_view(d_gl.get(), {1})) : gcpo::const_tensor_view{},
            gcpo::make_device_view(d_grad.get(), {R, N}), opt, ws.workspace(), s);
      },
      {out(d_grad)});
  check_close(as<float>(b[0]), grad, grad_atol, grad_rtol, "grad_logp");
}

}  // namespace

TEST_CASE("cuda gcpo_loss: smoke (official Janus and LlamaGen settings, two tiles)", "[cuda][loss]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  rng g(31);
  gcpo::loss_options janus;
  janus.beta = 0.04f;
  check_loss(make_data(g, 4, 1030, false, 0.3), janus, false);
  gcpo::loss_options llamagen = janus;
  llamagen.clipping = gcpo::ratio_clipping::ppo;
  llamagen.aggregation = gcpo::loss_aggregation::sequence_mean;
  check_loss(make_data(g, 3, 57, true, 0.5), llamagen, true);
}

TEST_CASE("cuda gcpo_loss_forward / backward: every option, lengths either side of a tile", "[cuda][loss][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 77;
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes{{1, 1}, {2, 7}, {3, 31}, {4, 33}, {2, 255},
                                                                  {5, 576}, {2, 1023}, {3, 1025}, {1, 4099}, {32, 256}};
  for (const auto& sh : shapes)
    for (const gcpo::loss_options& opt : option_sets()) {
      rng g(++seed);
      const bool with_old = opt.clipping == gcpo::ratio_clipping::ppo || seed % 3 == 0;
      const double p_mask = seed % 4 == 0 ? 0.0 : (seed % 4 == 1 ? 0.3 : 0.9);
      const loss_data d = make_data(g, sh.first, sh.second, with_old, p_mask);
      INFO("seed=" << seed);
      check_loss(d, opt, seed % 2 == 0);
    }
}

TEST_CASE("cuda gcpo_loss: empty mask, all-masked rows, NaN", "[cuda][loss][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  rng g(5);
  loss_data d = make_data(g, 4, 37, false, 0.5);
  for (std::int64_t t = 0; t < 37; ++t) d.mask[37 + t] = 0;  // rollout 1: nothing selected
  for (const gcpo::loss_options& opt : option_sets()) check_loss(d, opt, false);
  std::fill(d.mask.begin(), d.mask.end(), 0);  // nothing at all: loss 0
  for (const gcpo::loss_options& opt : option_sets()) check_loss(d, opt, true);
  loss_data n = make_data(g, 3, 50, true, 0.5);
  n.lp[60] = std::numeric_limits<float>::quiet_NaN();
  gcpo::loss_options opt;
  check_loss(n, opt, false);
}

TEST_CASE("cuda group_advantages: bitwise the host's", "[cuda][loss][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 11;
  for (const std::int64_t G : {1, 2, 3, 4, 16})
    for (const std::int64_t P : {1, 5, 300})
      for (const gcpo::advantage_std sd : {gcpo::advantage_std::unbiased, gcpo::advantage_std::biased,
                                           gcpo::advantage_std::none})
        for (const float eps : {1e-4f, 0.0f}) {
          if (G == 1 && sd == gcpo::advantage_std::unbiased) continue;
          rng g(++seed);
          const std::int64_t R = P * G;
          INFO("G=" << G << " P=" << P << " std=" << static_cast<int>(sd) << " eps=" << eps << " seed=" << seed);
          std::vector<float> rewards(R);
          for (auto& r : rewards) r = g.chance(0.5) ? 1.0f : static_cast<float>(g.integer(0, 3)) * 0.25f;
          if (P > 1)
            for (std::int64_t k = 0; k < G; ++k) rewards[k] = 0.5f;  // a group of equal rewards
          gcpo::advantage_options opt;
          opt.group = G;
          opt.std = sd;
          opt.eps = eps;
          std::vector<float> want(R);
          GCPO_OK(gcpo::host::group_advantages(gcpo::make_view(rewards.data(), {R}), gcpo::make_view(want.data(), {R}), opt));
          device_buffer<float> d_r(rewards), d_a(R);
          auto got = run_checked(
              [&](cudaStream_t s) {
                return gcpo::cuda::group_advantages(gcpo::make_device_view(d_r.get(), {R}),
                                                    gcpo::make_device_view(d_a.get(), {R}), opt, s);
              },
              {out(d_a)});
          check_same_floats(as<float>(got[0]), want, "advantages");
          // In place.
          stream s;
          GCPO_OK(gcpo::cuda::group_advantages(gcpo::make_device_view(d_r.get(), {R}),
                                               gcpo::make_device_view(d_r.get(), {R}), opt, s));
          GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
          check_same_floats(d_r.download(), want, "advantages (in place)");
        }
}

TEST_CASE("cuda advantage_weight: lengths either side of a tile, clips, NaN", "[cuda][loss][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 500;
  for (const std::int64_t N : {1, 2, 31, 32, 33, 255, 576, 1023, 1024, 1025, 3000})
    for (const std::int64_t R : {1, 3, 16})
      for (const float clip : {0.0f, 0.5f, 2.0f}) {
        rng g(++seed);
        INFO("R=" << R << " N=" << N << " clip=" << clip << " seed=" << seed);
        loss_data d = make_data(g, R, N, false, 0.0);
        if (N > 10 && R > 1) d.lp[N + N / 2] = std::numeric_limits<float>::quiet_NaN();
        gcpo::weight_options opt;
        opt.clip = clip;
        std::vector<float> want(R * N);
        GCPO_OK(gcpo::host::advantage_weight(gcpo::make_view(d.lp.data(), {R, N}), gcpo::make_view(d.ref.data(), {R, N}),
                                             gcpo::make_view(want.data(), {R, N}), opt));
        device_buffer<float> d_lp(d.lp), d_ref(d.ref), d_w(R * N);
        auto got = run_checked(
            [&](cudaStream_t s) {
              return gcpo::cuda::advantage_weight(gcpo::make_device_view(d_lp.get(), {R, N}),
                                                  gcpo::make_device_view(d_ref.get(), {R, N}),
                                                  gcpo::make_device_view(d_w.get(), {R, N}), opt, s);
            },
            {out(d_w)});
        check_close(as<float>(got[0]), want, value_atol, value_rtol, "weight");
      }
}

TEST_CASE("cuda loss: workspace too small is reported", "[cuda][loss]") {
  std::vector<float> lp(8), ref(8), adv(2), stats(gcpo::loss_stat_count);
  gcpo::loss_inputs in;
  in.logp = gcpo::make_device_view(lp.data(), {2, 4});
  in.ref_logp = gcpo::make_device_view(ref.data(), {2, 4});
  in.advantages = gcpo::make_device_view(adv.data(), {2});
  gcpo::loss_outputs o;
  o.stats = gcpo::make_device_view(stats.data(), {gcpo::loss_stat_count});
  CHECK(gcpo::cuda::gcpo_loss_forward(in, o, {}, gcpo::workspace{}, nullptr).code() ==
        gcpo::status_code::workspace_too_small);
}
