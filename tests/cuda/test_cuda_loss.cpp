// CUDA group_advantages, advantage_weight, gcpo_loss_forward, gcpo_loss_backward and
// gcpo_loss_forward_backward against the host twins (and the loss against a float64 reference
// written here from the spec): sequence lengths either side of a scan tile (1024) and of a
// warp, groups of 2 and 16, every algorithm / clipping / aggregation / detach option, masks
// (misaligned too), grad_loss, NaN; and, simulated, how many launches each call makes.
#include "cuda_support.hpp"

namespace {

using namespace gcpo_cuda_test;

struct loss_data {
  std::int64_t R, N;
  std::vector<float> lp, ref, old, adv;
  std::vector<std::uint8_t> mask;
};

/// Host views of a loss_data's inputs (old log-probs and mask where it has them).
gcpo::loss_inputs host_inputs(const loss_data& d) {
  gcpo::loss_inputs in;
  in.logp = gcpo::make_view(d.lp.data(), {d.R, d.N});
  in.ref_logp = gcpo::make_view(d.ref.data(), {d.R, d.N});
  if (!d.old.empty()) in.old_logp = gcpo::make_view(d.old.data(), {d.R, d.N});
  in.advantages = gcpo::make_view(d.adv.data(), {d.R});
  if (!d.mask.empty()) in.mask = gcpo::make_view(d.mask.data(), {d.R, d.N});
  return in;
}

/// Device views of loss inputs held in device buffers; `old` and `mask` only when given.
gcpo::loss_inputs device_inputs(std::int64_t R, std::int64_t N, const device_buffer<float>& lp,
                                const device_buffer<float>& ref, const device_buffer<float>& adv,
                                const device_buffer<float>* old, const device_buffer<std::uint8_t>* mask) {
  gcpo::loss_inputs in;
  in.logp = gcpo::make_device_view(lp.get(), {R, N});
  in.ref_logp = gcpo::make_device_view(ref.get(), {R, N});
  if (old) in.old_logp = gcpo::make_device_view(old->get(), {R, N});
  in.advantages = gcpo::make_device_view(adv.get(), {R});
  if (mask) in.mask = gcpo::make_device_view(mask->get(), {R, N});
  return in;
}

/// Device views of the loss outputs; `weight` and `kl` only when given.
gcpo::loss_outputs device_outputs(std::int64_t R, std::int64_t N, const device_buffer<float>& stats,
                                  const device_buffer<float>* weight = nullptr, const device_buffer<float>* kl = nullptr) {
  gcpo::loss_outputs out;
  out.stats = gcpo::make_device_view(stats.get(), {gcpo::loss_stat_count});
  if (weight) out.weight = gcpo::make_device_view(weight->get(), {R, N});
  if (kl) out.kl = gcpo::make_device_view(kl->get(), {R, N});
  return out;
}

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
    // any nonzero byte selects: small values, 0x80 (no low bits) and 0xff
    for (auto& m : d.mask)
      m = g.chance(p_mask) ? static_cast<std::uint8_t>(g.chance(0.5) ? g.integer(1, 3) : (g.chance(0.5) ? 0x80 : 0xff)) : 0;
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
  const gcpo::loss_inputs hin = host_inputs(d);
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
  const gcpo::loss_inputs din =
      device_inputs(R, N, d_lp, d_ref, d_adv, d.old.empty() ? nullptr : &d_old, d.mask.empty() ? nullptr : &d_mask);
  const gcpo::loss_outputs dout = device_outputs(R, N, d_stats, &d_w, &d_kl);
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

/// The loss of the spec (sections 5 and 6) and its gradient, in double, from the inputs.
struct ref_loss {
  double loss = 0, kl_mean = 0, clip_fraction = 0, weight_mean = 0, count = 0, denominator = 0;
  std::vector<double> w, kl, grad;
};

ref_loss reference(const loss_data& d, const gcpo::loss_options& o, double gl) {
  const std::int64_t R = d.R, N = d.N;
  auto sel = [&](std::int64_t i) { return d.mask.empty() || d.mask[i] != 0; };
  ref_loss out;
  out.w.assign(R * N, 1.0);
  out.kl.assign(R * N, 0.0);
  out.grad.assign(R * N, 0.0);
  for (std::int64_t i = 0; i < R * N; ++i) out.count += sel(i) ? 1 : 0;
  const bool gcpo = o.algo == gcpo::algorithm::gcpo;
  const double c = o.weight_clip, beta = o.beta;
  double kls = 0, clips = 0, ws = 0;
  for (std::int64_t r = 0; r < R; ++r) {
    double rc = 0;
    for (std::int64_t t = 0; t < N; ++t) rc += sel(r * N + t) ? 1 : 0;
    double Z = 0;
    switch (o.aggregation) {
      case gcpo::loss_aggregation::token_mean: Z = out.count; break;
      case gcpo::loss_aggregation::sequence_mean: Z = static_cast<double>(R) * rc; break;
      case gcpo::loss_aggregation::constant: Z = static_cast<double>(R) * (o.max_tokens > 0 ? o.max_tokens : N); break;
      case gcpo::loss_aggregation::external: Z = o.denominator; break;
    }
    const double f = Z > 0 ? 1.0 / Z : 0.0;
    const double A = d.adv[r];
    std::vector<double> pg(N), e(N);
    std::vector<bool> passes(N);
    double prefix = 0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t i = r * N + t;
      const double lp = d.lp[i], ref = d.ref[i];
      const double dl = lp - ref;
      e[t] = std::exp(std::min(std::max(dl, -c), c));
      passes[t] = dl >= -c && dl <= c;
      prefix += e[t];
      const double w = gcpo ? prefix / static_cast<double>(t + 1) : 1.0;
      const double rho = d.old.empty() ? 1.0 : std::exp(lp - static_cast<double>(d.old[i]));
      double p = -rho * A, dp = -rho * A;
      bool clipped = false;
      if (o.clipping == gcpo::ratio_clipping::ppo) {
        const double lo = 1.0 - o.eps_low, hi = 1.0 + o.eps_high;
        const double a = rho * A, b = std::min(std::max(rho, lo), hi) * A;
        clipped = b < a;
        p = -std::min(a, b);
        dp = clipped ? 0.0 : -rho * A;
      }
      pg[t] = p;
      const double kl = std::exp(ref - lp) - (ref - lp) - 1.0, dkl = 1.0 - std::exp(ref - lp);
      out.w[i] = w;
      out.kl[i] = kl;
      if (!sel(i)) continue;
      out.loss += f * (p * w + beta * kl);
      kls += kl;
      clips += clipped ? 1 : 0;
      ws += w;
      out.grad[i] = gl * f * (dp * w + beta * dkl);
    }
    if (!gcpo || o.detach_weight) continue;
    double suffix = 0;  // sum over t >= u of m_t pg_t / (t + 1)
    for (std::int64_t u = N - 1; u >= 0; --u) {
      if (sel(r * N + u)) suffix += pg[u] / static_cast<double>(u + 1);
      if (passes[u]) out.grad[r * N + u] += gl * f * e[u] * suffix;
    }
  }
  const double inv = out.count > 0 ? 1.0 / out.count : 0.0;
  out.kl_mean = kls * inv;
  out.clip_fraction = clips * inv;
  out.weight_mean = ws * inv;
  return out;
}

/// gcpo_loss_forward_backward on the device against the host twin, the float64 reference (the
/// spec's tolerances) and the two separate CUDA calls (bitwise: the same sums in the same
/// order); `mask_offset` > 0 gives a misaligned mask.
void check_fused(const loss_data& d, const gcpo::loss_options& opt, bool with_grad_loss, std::size_t mask_offset = 0) {
  const std::int64_t R = d.R, N = d.N;
  INFO("fused: R=" << R << " N=" << N << " algo=" << (opt.algo == gcpo::algorithm::gcpo ? "gcpo" : "grpo")
                   << " clipping=" << (opt.clipping == gcpo::ratio_clipping::ppo ? "ppo" : "none")
                   << " aggregation=" << name(opt.aggregation) << " detach=" << opt.detach_weight
                   << " old=" << !d.old.empty() << " mask=" << !d.mask.empty() << " mask_offset=" << mask_offset
                   << " grad_loss=" << with_grad_loss);
  const float gl_value = with_grad_loss ? -1.75f : 1.0f;
  const gcpo::loss_inputs hin = host_inputs(d);
  std::vector<float> stats(gcpo::loss_stat_count), w(R * N), kl(R * N), grad(R * N);
  gcpo::loss_outputs hout;
  hout.stats = gcpo::make_view(stats.data(), {gcpo::loss_stat_count});
  hout.weight = gcpo::make_view(w.data(), {R, N});
  hout.kl = gcpo::make_view(kl.data(), {R, N});
  const gcpo::const_tensor_view h_gl =
      with_grad_loss ? gcpo::const_tensor_view(gcpo::make_view(&gl_value, {1})) : gcpo::const_tensor_view{};
  GCPO_OK(gcpo::host::gcpo_loss_forward_backward(hin, hout, h_gl, gcpo::make_view(grad.data(), {R, N}), opt));

  device_buffer<float> d_lp(d.lp), d_ref(d.ref), d_old(d.old), d_adv(d.adv), d_gl(std::vector<float>{gl_value});
  device_buffer<std::uint8_t> d_mask(d.mask, mask_offset);
  device_buffer<float> d_stats(gcpo::loss_stat_count), d_w(R * N), d_kl(R * N), d_grad(R * N);
  device_buffer<float> s_stats(gcpo::loss_stat_count), s_w(R * N), s_kl(R * N), s_grad(R * N);
  auto ws = device_workspace(gcpo::gcpo_loss_workspace_bytes(R, N));
  ws.poison(0xa5);  // its contents on entry do not matter
  const gcpo::loss_inputs din =
      device_inputs(R, N, d_lp, d_ref, d_adv, d.old.empty() ? nullptr : &d_old, d.mask.empty() ? nullptr : &d_mask);
  const gcpo::loss_outputs dout = device_outputs(R, N, d_stats, &d_w, &d_kl);
  const gcpo::const_tensor_view d_glv =
      with_grad_loss ? gcpo::const_tensor_view(gcpo::make_device_view(d_gl.get(), {1})) : gcpo::const_tensor_view{};
  auto f = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::gcpo_loss_forward_backward(din, dout, d_glv, gcpo::make_device_view(d_grad.get(), {R, N}), opt,
                                                      ws.workspace(), s);
      },
      {out(d_stats), out(d_w), out(d_kl), out(d_grad)});
  const std::vector<float> got_stats = as<float>(f[0]), got_w = as<float>(f[1]), got_kl = as<float>(f[2]),
                           got_grad = as<float>(f[3]);
  check_close(got_stats, stats, value_atol, value_rtol, "stats vs host");
  check_close(got_w, w, value_atol, value_rtol, "weight vs host");
  check_close(got_kl, kl, value_atol, value_rtol, "kl vs host");
  check_close(got_grad, grad, grad_atol, grad_rtol, "grad_logp vs host");

  const ref_loss want = reference(d, opt, gl_value);
  const std::vector<double> want_stats{want.loss,       want.kl_mean, want.clip_fraction, want.weight_mean,
                                       want.count,      0.0};
  std::vector<double> got6(got_stats.begin(), got_stats.end());
  got6[gcpo::loss_stat_denominator] = 0.0;  // (the host twin's denominator is checked above)
  check_close(got6, want_stats, value_atol, value_rtol, "stats vs float64");
  check_close(got_w, want.w, value_atol, value_rtol, "weight vs float64");
  check_close(got_kl, want.kl, value_atol, value_rtol, "kl vs float64");
  check_close(got_grad, want.grad, grad_atol, grad_rtol, "grad_logp vs float64");

  // The separate calls give the same bits: the same per-rollout sums, the same counts.
  gcpo::loss_outputs sout;
  sout.stats = gcpo::make_device_view(s_stats.get(), {gcpo::loss_stat_count});
  sout.weight = gcpo::make_device_view(s_w.get(), {R, N});
  sout.kl = gcpo::make_device_view(s_kl.get(), {R, N});
  stream s;
  GCPO_OK(gcpo::cuda::gcpo_loss_forward(din, sout, opt, ws.workspace(), s));
  ws.poison(0x5a);
  GCPO_OK(gcpo::cuda::gcpo_loss_backward(din, d_glv, gcpo::make_device_view(s_grad.get(), {R, N}), opt, ws.workspace(), s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_same_floats(s_stats.download(), got_stats, "stats: forward then backward vs forward_backward");
  check_same_floats(s_w.download(), got_w, "weight: forward then backward vs forward_backward");
  check_same_floats(s_kl.download(), got_kl, "kl: forward then backward vs forward_backward");
  check_same_floats(s_grad.download(), got_grad, "grad_logp: forward then backward vs forward_backward");
}

}  // namespace

TEST_CASE("cuda gcpo_loss_forward_backward: official Janus step and GRPO, vs host, float64 and the separate calls",
          "[cuda][loss]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  rng g(2026);
  gcpo::loss_options janus;  // official: GCPO, weight not detached, no clipping, token mean
  janus.beta = 0.01f;
  gcpo::loss_options grpo = janus;
  grpo.algo = gcpo::algorithm::grpo;
  grpo.clipping = gcpo::ratio_clipping::ppo;
  const std::int64_t R = gpu_or_sim<std::int64_t>(32, 6);
  check_fused(make_data(g, R, 576, false, 0.3), janus, false);
  check_fused(make_data(g, R, 576, false, 0.3), janus, true, 3);
  check_fused(make_data(g, R, 576, false, 0.0), janus, false);
  check_fused(make_data(g, R, 576, true, 0.3), grpo, true, 1);
  check_fused(make_data(g, 4, 1024, false, 0.3), janus, true);
}

TEST_CASE("cuda gcpo_loss_forward_backward: every option, partial and many blocks, masks counted in and before",
          "[cuda][loss][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  std::uint64_t seed = 9000;
  // N = 1 .. 1024 (one tile; 255, 1000: the last thread's items partly past N) and past it;
  // R = 70: many blocks; 33 x 1000 > loss_count_in_block_bytes: the mask counted by a launch.
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes{{1, 1},   {3, 7},    {2, 33},    {70, 17},
                                                                  {5, 255}, {3, 1000}, {33, 1000}, {2, 1031}};
  for (const auto& sh : shapes)
    for (const gcpo::loss_options& opt : option_sets()) {
      rng g(++seed);
      if (sh.first * sh.second > 20000 && seed % 4 != 0) continue;  // the large shape: a quarter of the options
      const bool with_old = opt.clipping == gcpo::ratio_clipping::ppo || seed % 3 == 0;
      const double p_mask = seed % 4 == 1 ? 0.0 : (seed % 4 == 2 ? 0.3 : 0.9);
      const loss_data d = make_data(g, sh.first, sh.second, with_old, p_mask);
      INFO("seed=" << seed);
      check_fused(d, opt, seed % 2 == 0, seed % 5);
    }
}

TEST_CASE("cuda gcpo_loss_forward_backward: empty mask, an unselected rollout, NaN", "[cuda][loss][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  rng g(77);
  loss_data d = make_data(g, 5, 300, true, 0.4);
  for (std::int64_t t = 0; t < 300; ++t) d.mask[300 + t] = 0;  // rollout 1: nothing selected
  for (const gcpo::loss_options& opt : option_sets()) check_fused(d, opt, true);
  std::fill(d.mask.begin(), d.mask.end(), 0);  // nothing at all: loss 0, gradient only through w
  gcpo::loss_options janus;
  check_fused(d, janus, false);
  // NaN: its weight from there on, its own gradient and (through w) the earlier ones of its row
  loss_data n = make_data(g, 3, 400, false, 0.5);
  n.lp[400 + 123] = std::numeric_limits<float>::quiet_NaN();
  const std::int64_t R = 3, N = 400;
  std::vector<float> stats(gcpo::loss_stat_count), grad(R * N);
  gcpo::loss_inputs in;
  in.logp = gcpo::make_view(n.lp.data(), {R, N});
  in.ref_logp = gcpo::make_view(n.ref.data(), {R, N});
  in.advantages = gcpo::make_view(n.adv.data(), {R});
  in.mask = gcpo::make_view(n.mask.data(), {R, N});
  gcpo::loss_outputs o;
  o.stats = gcpo::make_view(stats.data(), {gcpo::loss_stat_count});
  GCPO_OK(gcpo::host::gcpo_loss_forward_backward(in, o, {}, gcpo::make_view(grad.data(), {R, N}), janus));
  device_buffer<float> d_lp(n.lp), d_ref(n.ref), d_adv(n.adv), d_stats(gcpo::loss_stat_count), d_grad(R * N);
  device_buffer<std::uint8_t> d_mask(n.mask);
  auto ws = device_workspace(gcpo::gcpo_loss_workspace_bytes(R, N));
  const gcpo::loss_inputs din = device_inputs(R, N, d_lp, d_ref, d_adv, nullptr, &d_mask);
  const gcpo::loss_outputs dout = device_outputs(R, N, d_stats);
  auto got = run_checked(
      [&](cudaStream_t s) {
        return gcpo::cuda::gcpo_loss_forward_backward(din, dout, {}, gcpo::make_device_view(d_grad.get(), {R, N}), janus,
                                                      ws.workspace(), s);
      },
      {out(d_stats), out(d_grad)});
  const std::vector<float> gg = as<float>(got[1]);
  check_close(gg, grad, grad_atol, grad_rtol, "grad_logp (NaN in rollout 1)");
  // The NaN reaches the tokens before it only through w: a later token of its row stays finite
  // where it is not selected (and rollouts 0 and 2 stay finite).
  std::size_t finite_after = 0;
  for (std::int64_t t = 124; t < N; ++t)
    if (!n.mask[N + t] && std::isfinite(gg[N + t])) ++finite_after;
  CHECK(finite_after > 0);
  for (std::int64_t t = 0; t < N; ++t) {
    CHECK(std::isfinite(gg[t]));
    CHECK(std::isfinite(gg[2 * N + t]));
  }
}

TEST_CASE("cuda gcpo_loss: launches per call", "[cuda][loss][slow]") {
  GCPO_REQUIRE_CUDA_DEVICE();
#if !defined(GCPO_CUDA_SIMULATOR)
  std::printf("SKIPPED: launches are counted by the simulator: %s\n", Catch::getResultCapture().getCurrentTestName().c_str());
#else
  // {R, N, mask, aggregation} -> launches of forward, backward, forward_backward
  struct launch_case {
    std::int64_t R, N;
    bool mask;
    gcpo::loss_aggregation agg;
    unsigned long long fwd, bwd, both;
  };
  const launch_case cases[] = {
      {32, 576, true, gcpo::loss_aggregation::token_mean, 2, 1, 2},      // Janus-Pro: the mask counted in each block
      {32, 576, false, gcpo::loss_aggregation::token_mean, 2, 1, 2},
      {32, 1024, true, gcpo::loss_aggregation::sequence_mean, 2, 1, 2},  // LlamaGen 32 x 32
      {32, 1024, true, gcpo::loss_aggregation::token_mean, 2, 1, 2},     // 32768 mask bytes: still counted in block
      {33, 1000, true, gcpo::loss_aggregation::token_mean, 2, 2, 3},     // past it: one count launch first
      {33, 1000, true, gcpo::loss_aggregation::constant, 2, 1, 2},
      {2, 1025, true, gcpo::loss_aggregation::token_mean, 2, 2, 3},      // past a tile: the tiled kernels
      {2, 1025, false, gcpo::loss_aggregation::token_mean, 2, 1, 3},
  };
  for (const launch_case& c : cases) {
    const std::int64_t R = c.R, N = c.N;
    INFO("R=" << R << " N=" << N << " mask=" << c.mask << " aggregation=" << name(c.agg));
    rng g(static_cast<std::uint64_t>(R * N));
    const loss_data d = make_data(g, R, N, false, c.mask ? 0.3 : 0.0);
    device_buffer<float> d_lp(d.lp), d_ref(d.ref), d_adv(d.adv), d_stats(gcpo::loss_stat_count), d_grad(R * N);
    device_buffer<std::uint8_t> d_mask(d.mask);
    auto ws = device_workspace(gcpo::gcpo_loss_workspace_bytes(R, N));
    const gcpo::loss_inputs din = device_inputs(R, N, d_lp, d_ref, d_adv, nullptr, c.mask ? &d_mask : nullptr);
    const gcpo::loss_outputs dout = device_outputs(R, N, d_stats);
    gcpo::loss_options opt;
    opt.aggregation = c.agg;
    opt.max_tokens = 100.0;
    const auto grad = gcpo::make_device_view(d_grad.get(), {R, N});
    stream s;
    auto launches = [&](const std::function<gcpo::status()>& call) {
      GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
      gcpo_sim::reset_launch_count();
      GCPO_OK(call());
      GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
      return gcpo_sim::launch_count();
    };
    CHECK(launches([&] { return gcpo::cuda::gcpo_loss_forward(din, dout, opt, ws.workspace(), s); }) == c.fwd);
    CHECK(launches([&] { return gcpo::cuda::gcpo_loss_backward(din, {}, grad, opt, ws.workspace(), s); }) == c.bwd);
    CHECK(launches([&] {
            return gcpo::cuda::gcpo_loss_forward_backward(din, dout, {}, grad, opt, ws.workspace(), s);
          }) == c.both);
  }
#endif
}

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
  std::vector<float> grad(8);
  CHECK(gcpo::cuda::gcpo_loss_forward_backward(in, o, {}, gcpo::make_device_view(grad.data(), {2, 4}), {},
                                               gcpo::workspace{}, nullptr)
            .code() == gcpo::status_code::workspace_too_small);
  // grad_logp over the stats: refused before any launch
  std::vector<float> both(16);
  o.stats = gcpo::make_device_view(both.data(), {gcpo::loss_stat_count});
  std::vector<unsigned char> ws(gcpo::gcpo_loss_workspace_bytes(2, 4));
  CHECK(gcpo::cuda::gcpo_loss_forward_backward(in, o, {}, gcpo::make_device_view(both.data() + 4, {2, 4}), {},
                                               gcpo::workspace{ws.data(), ws.size(), gcpo::memory_space::device}, nullptr)
            .code() == gcpo::status_code::aliasing);
}
