// examples/gcpo_demo.cpp - one GCPO step's operators on synthetic data at Janus-Pro shapes.
//
// What a trainer does between sampling and the optimizer, with the host twins of gcpo:
//   1. token_stats on the CFG-guided sampling logits: the entropy of each sampled position;
//   2. token_stats on the policy's teacher-forced logits: log-probs of the sampled tokens + lse;
//   3. group_similarity_from_tokens: mean cosine of each position's embedding across the group;
//   4. select_critical_tokens: initial + entropy-gradient + low-similarity tokens (~30%);
//   5. group_advantages from {0, 1} rewards;
//   6. gcpo_loss_forward and gcpo_loss_backward: the loss, its metrics and dL/dlogp;
//   7. token_stats_backward: dL/dlogits, the gradient the model's head receives.
//
// The data are synthetic but shaped like the real thing: P = 2 prompts x G = 4 samples, each
// image 24 x 24 tokens over a 16384-entry codebook. Every image shows one object (an ellipse,
// placed a little differently in each sample of a group) on a background: the model is sure
// of the background tokens and unsure inside the object, so the entropy map has a smooth
// plateau with an edge, which the entropy-gradient selection picks; the samples of a group
// agree on the background tokens and disagree inside the object, which the low-similarity
// selection picks. Logits are bfloat16, as in the official bf16 trainer.
//
// Usage: gcpo_demo   (a few seconds, about 0.8 GB of memory; prints what it selected, the loss,
//                     the gradient norms and the time of each stage)
#include <gcpo/gcpo.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// ---- shapes (Janus-Pro 1B at 384 px) ---------------------------------------------------------
constexpr std::int64_t P = 2, G = 4, R = P * G;
constexpr std::int64_t H = 24, W = 24, N = H * W;
constexpr std::int64_t V = 16384, D = 2048;
constexpr float cfg_scale = 5.0f;

using bf16 = gcpo::bfloat16;
using clock_type = std::chrono::steady_clock;

/// Prints the status's message and exits when an operator fails.
void check(const gcpo::status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "gcpo_demo: %s failed: %s (%s)\n", what, s.message(), gcpo::to_string(s.code()));
  std::exit(1);
}

/// Wall time of `f()` in milliseconds.
template <class F>
double time_ms(F&& f) {
  const auto t0 = clock_type::now();
  f();
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

/// SplitMix64, with normal draws four at a time from one 64-bit draw (16 bits each index a
/// table of 65536 Box-Muller samples: plenty for synthetic logits, and fast).
struct rng {
  std::uint64_t s;
  std::vector<float> table;
  explicit rng(std::uint64_t seed) : s(seed), table(65536) {
    for (std::size_t i = 0; i < table.size(); i += 2) {
      const double u1 = (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53, u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
      const double rad = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
      table[i] = static_cast<float>(rad * std::cos(a));
      table[i + 1] = static_cast<float>(rad * std::sin(a));
    }
  }
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) * 5.9604644775390625e-8f; }
  float normal() { return table[next() & 0xffff]; }
  void normal4(float* out) {
    const std::uint64_t z = next();
    for (int i = 0; i < 4; ++i) out[i] = table[(z >> (16 * i)) & 0xffff];
  }
};

// ---- the synthetic scene ---------------------------------------------------------------------

/// The object of rollout r: an ellipse per prompt, shifted by up to about 1.5 tokens per sample.
struct ellipse {
  float cy, cx, ry, rx;
};

ellipse object_of(std::int64_t r) {
  const std::int64_t p = r / G, g = r % G;
  const ellipse base = p == 0 ? ellipse{11.0f, 9.5f, 6.0f, 5.0f} : ellipse{13.0f, 14.0f, 5.0f, 7.0f};
  const float dy[G] = {0.0f, 1.5f, -1.0f, 0.5f}, dx[G] = {0.0f, -1.0f, 1.5f, 1.0f};
  return ellipse{base.cy + dy[g], base.cx + dx[g], base.ry, base.rx};
}

/// Soft membership of token t in rollout r's object: 1 inside, 0 outside, a 1-2 token edge.
float inside(std::int64_t r, std::int64_t t) {
  const ellipse e = object_of(r);
  const float i = static_cast<float>(t / W), j = static_cast<float>(t % W);
  const float d = std::sqrt(((i - e.cy) / e.ry) * ((i - e.cy) / e.ry) + ((j - e.cx) / e.rx) * ((j - e.cx) / e.rx));
  return 1.0f / (1.0f + std::exp((d - 1.0f) * 6.0f));
}

/// Sampled tokens [R, N]: background codes shared by a prompt's samples (a striped texture, 10%
/// noise), object codes that differ between samples (a texture plus 60% sample-specific codes).
std::vector<std::int64_t> make_tokens(rng& g) {
  std::vector<std::int64_t> tok(R * N);
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int64_t p = r / G;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t i = t / W, j = t % W;
      const std::int64_t background = 1000 + 97 * p + (i / 4) % 6;
      const std::int64_t object = 5000 + 131 * p + ((i / 3) * 5 + j / 3) % 16;
      std::int64_t k = inside(r, t) > 0.5f ? object : background;
      const float noise = inside(r, t) > 0.5f ? 0.6f : 0.1f;
      if (g.uniform() < noise) k = static_cast<std::int64_t>(g.next() % V);
      tok[r * N + t] = k;
    }
  }
  return tok;
}

/// The generation aligner's output for every code, [V, D]: 64 clusters of related codes (a
/// shared centroid plus noise), so that different codes have cosines between about 0 and 0.6.
std::vector<bf16> make_table(rng& g) {
  std::vector<float> centroid(64 * D);
  for (auto& c : centroid) c = g.normal();
  std::vector<bf16> table(V * D);
  for (std::int64_t v = 0; v < V; ++v)
    for (std::int64_t d = 0; d < D; ++d)
      table[v * D + d] = gcpo::from_float<bf16>(0.02f * (0.8f * centroid[(v % 64) * D + d] + 0.7f * g.normal()));
  return table;
}

/// Sampling (CFG-guided) logits and the policy's teacher-forced (conditional) logits, [R, N, V]:
///   uncond = z + [v = token] (Bu - z),   cond = z + 0.3 z' + [v = token] (Bc - z - 0.3 z')
///   sampling = uncond + cfg * (cond - uncond),   policy = cond
/// with z, z' standard normal: every code but the sampled one is noise, the sampled one has a
/// fixed logit, higher on the background (sure: sampling entropy about 1.5 nats) than inside the
/// object (unsure: about 7.5 nats). Policy log-probs come out between about -2 and -3.5.
void make_logits(const std::vector<std::int64_t>& tok, rng& g, std::vector<bf16>& sampling, std::vector<bf16>& policy) {
  sampling.resize(R * N * V);
  policy.resize(R * N * V);
  float z[4];
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t t = 0; t < N; ++t) {
      const float f = inside(r, t);
      const float jitter = 0.2f * g.normal();
      const float bc = 8.5f - 1.5f * f + jitter, bu = 7.25f - 0.775f * f + jitter;
      const std::int64_t row = (r * N + t) * V, k = tok[r * N + t];
      for (std::int64_t v = 0; v < V; v += 2) {
        g.normal4(z);
        for (int h = 0; h < 2; ++h) {
          const float uncond = z[2 * h], cond = z[2 * h] + 0.3f * z[2 * h + 1];
          sampling[row + v + h] = gcpo::from_float<bf16>(uncond + cfg_scale * (cond - uncond));
          policy[row + v + h] = gcpo::from_float<bf16>(cond);
        }
      }
      sampling[row + k] = gcpo::from_float<bf16>(bu + cfg_scale * (bc - bu));
      policy[row + k] = gcpo::from_float<bf16>(bc);
    }
}

// ---- printing ---------------------------------------------------------------------------------

/// One character per entropy level, low to high.
char shade(float x, float lo, float hi) {
  static const char levels[] = " .:-=+*#%@";
  const int n = static_cast<int>(sizeof(levels)) - 2;
  const float u = (x - lo) / (hi - lo);
  const int i = static_cast<int>(std::lround(std::min(1.0f, std::max(0.0f, u)) * static_cast<float>(n)));
  return levels[i];
}

double norm2(const float* x, std::int64_t n) {
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return std::sqrt(s);
}

}  // namespace

int main() {
  std::printf("gcpo demo: one GCPO step's operators on the host, Janus-Pro shapes\n");
  std::printf("  P = %lld prompts x G = %lld samples = R = %lld rollouts; N = %lld x %lld = %lld tokens; V = %lld; "
              "D = %lld; CFG scale %.0f\n",
              static_cast<long long>(P), static_cast<long long>(G), static_cast<long long>(R),
              static_cast<long long>(H), static_cast<long long>(W), static_cast<long long>(N),
              static_cast<long long>(V), static_cast<long long>(D), static_cast<double>(cfg_scale));

  // ---- synthetic rollouts ----
  rng g(2025);
  std::vector<std::int64_t> tokens;
  std::vector<bf16> table, sampling_logits, policy_logits;
  const double t_data = time_ms([&] {
    tokens = make_tokens(g);
    table = make_table(g);
    make_logits(tokens, g, sampling_logits, policy_logits);
  });
  const float rewards[R] = {1, 0, 1, 1,   // prompt 0: three of four samples pass the check
                            0, 0, 1, 0};  // prompt 1: one passes
  std::printf("  logits: bfloat16, sampling (CFG) and policy, %.0f MB each; embedding table bfloat16 [%lld, %lld] "
              "(%.0f MB); synthesised in %.0f ms\n\n",
              static_cast<double>(R * N * V * 2) / 1e6, static_cast<long long>(V), static_cast<long long>(D),
              static_cast<double>(V * D * 2) / 1e6, t_data);

  const auto lview = [](const std::vector<bf16>& x) { return gcpo::make_view(x.data(), {R, N, V}); };
  const auto tview = gcpo::make_view(tokens.data(), {R, N});
  struct stage {
    const char* name;
    double ms;
    double bytes;  // bytes the operator must move (0: not reported)
  };
  std::vector<stage> stages;

  // 1. entropy of the distribution each token was sampled from (CFG-guided, temperature 1)
  std::vector<float> entropy(R * N);
  stages.push_back({"token_stats (sampling logits: entropy)", time_ms([&] {
                      check(gcpo::host::token_stats(lview(sampling_logits), {}, gcpo::make_view(entropy.data(), {R, N}),
                                                    {}, {}),
                            "token_stats (sampling logits)");
                    }),
                    static_cast<double>(R * N * V * 2 + R * N * 4)});

  // 2. log-probs of the sampled tokens under the policy (teacher-forced, conditional) and lse
  std::vector<float> logp(R * N), lse(R * N);
  stages.push_back({"token_stats (policy logits: logprob, lse)", time_ms([&] {
                      check(gcpo::host::token_stats(lview(policy_logits), tview, {}, gcpo::make_view(logp.data(), {R, N}),
                                                    gcpo::make_view(lse.data(), {R, N})),
                            "token_stats (policy logits)");
                    }),
                    static_cast<double>(R * N * V * 2 + R * N * (8 + 8))});

  // 3. group similarity of each position's embedding (tokens + table: no [R, N, D] tensor)
  std::vector<float> similarity(R * N);
  gcpo::similarity_options sim_opt;
  sim_opt.group = G;
  stages.push_back({"group_similarity_from_tokens", time_ms([&] {
                      check(gcpo::host::group_similarity_from_tokens(tview, gcpo::make_view(table.data(), {V, D}),
                                                                     gcpo::make_view(similarity.data(), {R, N}), sim_opt),
                            "group_similarity_from_tokens");
                    }),
                    0.0});

  // 4. critical tokens: initial + entropy gradient + low similarity
  std::vector<std::uint8_t> critical(R * N), initial(R * N), gradient(R * N), low_sim(R * N);
  std::vector<std::int32_t> counts(R);
  std::vector<float> grad_map(R * N);
  const gcpo::selection_options sel_opt;  // the official fractions: 10% + 10% + 10%, window [10%, 90%)
  std::vector<unsigned char> ws_buf(gcpo::select_critical_tokens_workspace_bytes(R, N));
  {
    gcpo::selection_inputs in;
    in.entropy = gcpo::make_view(entropy.data(), {R, N});
    in.similarity = gcpo::make_view(similarity.data(), {R, N});
    gcpo::selection_outputs out;
    out.critical = gcpo::make_view(critical.data(), {R, N});
    out.counts = gcpo::make_view(counts.data(), {R});
    out.initial = gcpo::make_view(initial.data(), {R, N});
    out.gradient = gcpo::make_view(gradient.data(), {R, N});
    out.low_similarity = gcpo::make_view(low_sim.data(), {R, N});
    out.entropy_gradient = gcpo::make_view(grad_map.data(), {R, N});
    const gcpo::workspace ws{ws_buf.data(), ws_buf.size(), gcpo::memory_space::host};
    stages.push_back({"select_critical_tokens", time_ms([&] {
                        check(gcpo::host::select_critical_tokens(in, out, sel_opt, ws), "select_critical_tokens");
                      }),
                      0.0});
  }

  // 5. advantages from the rewards (unbiased std, eps 1e-4: the official GRPO/GCPO)
  std::vector<float> advantages(R);
  gcpo::advantage_options adv_opt;
  adv_opt.group = G;
  stages.push_back({"group_advantages", time_ms([&] {
                      check(gcpo::host::group_advantages(gcpo::make_view(rewards, {R}),
                                                         gcpo::make_view(advantages.data(), {R}), adv_opt),
                            "group_advantages");
                    }),
                    0.0});

  // 6. the loss over the critical tokens and its backward to the log-probs. The reference model's
  // log-probs are the policy's plus noise (the policy has drifted a little from it).
  std::vector<float> ref_logp(R * N);
  for (std::int64_t i = 0; i < R * N; ++i) ref_logp[i] = logp[i] + 0.25f * g.normal();
  gcpo::loss_inputs loss_in;
  loss_in.logp = gcpo::make_view(logp.data(), {R, N});
  loss_in.ref_logp = gcpo::make_view(ref_logp.data(), {R, N});
  loss_in.advantages = gcpo::make_view(advantages.data(), {R});
  loss_in.mask = gcpo::make_view(critical.data(), {R, N});
  gcpo::loss_options loss_opt;  // GCPO, on-policy, no ratio clipping, beta 0.01, weight clip 0.5, token mean
  float stats[gcpo::loss_stat_count] = {};
  std::vector<float> weight(R * N), kl(R * N), grad_logp(R * N);
  gcpo::loss_outputs loss_out;
  loss_out.stats = gcpo::make_view(stats, {gcpo::loss_stat_count});
  loss_out.weight = gcpo::make_view(weight.data(), {R, N});
  loss_out.kl = gcpo::make_view(kl.data(), {R, N});
  stages.push_back({"gcpo_loss_forward", time_ms([&] {
                      check(gcpo::host::gcpo_loss_forward(loss_in, loss_out, loss_opt), "gcpo_loss_forward");
                    }),
                    0.0});
  stages.push_back({"gcpo_loss_backward", time_ms([&] {
                      check(gcpo::host::gcpo_loss_backward(loss_in, {}, gcpo::make_view(grad_logp.data(), {R, N}),
                                                           loss_opt),
                            "gcpo_loss_backward");
                    }),
                    0.0});

  // 7. chain to the logits: dL/dlogits = dL/dlogp * (onehot - softmax), written as bfloat16
  std::vector<bf16> grad_logits(R * N * V);
  stages.push_back({"token_stats_backward (to bf16 dL/dlogits)", time_ms([&] {
                      check(gcpo::host::token_stats_backward(lview(policy_logits), tview,
                                                             gcpo::make_view(lse.data(), {R, N}),
                                                             gcpo::make_view(grad_logp.data(), {R, N}),
                                                             gcpo::make_view(grad_logits.data(), {R, N, V})),
                            "token_stats_backward");
                    }),
                    static_cast<double>(2 * R * N * V * 2 + R * N * (8 + 4 + 4))});

  // ---- what was selected ----
  gcpo::selection_counts c;
  check(gcpo::selection_counts_for(N, sel_opt, c), "selection_counts_for");
  std::printf("Critical tokens per rollout (k = %lld of each kind; gradient window [%lld, %lld)):\n",
              static_cast<long long>(c.initial), static_cast<long long>(c.window_start),
              static_cast<long long>(c.window_start + c.window));
  std::printf("  rollout prompt reward advantage  mean entropy  mean sim  initial gradient low-sim critical  "
              "of them in the object\n");
  for (std::int64_t r = 0; r < R; ++r) {
    std::int64_t ni = 0, ng = 0, ns = 0, in_obj = 0;
    double me = 0.0, ms = 0.0;
    for (std::int64_t t = 0; t < N; ++t) {
      const std::int64_t i = r * N + t;
      ni += initial[i];
      ng += gradient[i];
      ns += low_sim[i];
      in_obj += (critical[i] && inside(r, t) > 0.5f) ? 1 : 0;
      me += entropy[i];
      ms += similarity[i];
    }
    std::printf("  %7lld %6lld %6.0f %+9.3f  %12.3f  %8.3f  %7lld %8lld %7lld %8d  %5lld\n", static_cast<long long>(r),
                static_cast<long long>(r / G), static_cast<double>(rewards[r]), static_cast<double>(advantages[r]),
                me / N, ms / N, static_cast<long long>(ni), static_cast<long long>(ng), static_cast<long long>(ns),
                counts[r], static_cast<long long>(in_obj));
  }

  const std::int64_t show = 1;  // a rollout whose object sits away from the first rows
  float emin = entropy[show * N], emax = emin;
  for (std::int64_t t = 0; t < N; ++t) {
    emin = std::min(emin, entropy[show * N + t]);
    emax = std::max(emax, entropy[show * N + t]);
  }
  std::printf("\nRollout %lld: entropy of the sampling distribution (' ' %.1f .. '@' %.1f nats), its gradient "
              "selection,\nand the critical tokens (I initial, G entropy gradient, S low group similarity, . not "
              "trained):\n",
              static_cast<long long>(show), static_cast<double>(emin), static_cast<double>(emax));
  for (std::int64_t i = 0; i < H; ++i) {
    std::string left, right;
    for (std::int64_t j = 0; j < W; ++j) {
      const std::int64_t k = show * N + i * W + j;
      left += shade(entropy[k], emin, emax);
      left += ' ';
      right += initial[k] ? 'I' : gradient[k] ? 'G' : low_sim[k] ? 'S' : '.';
      right += ' ';
    }
    std::printf("  %s   %s\n", left.c_str(), right.c_str());
  }

  // ---- the loss ----
  std::printf("\nLoss (GCPO, on-policy, beta %.2f, weight clip %.1f, token mean over the critical tokens):\n",
              static_cast<double>(loss_opt.beta), static_cast<double>(loss_opt.weight_clip));
  std::printf("  loss %+.6f   kl mean %.6f   weight mean %.4f   clip fraction %.3f   tokens %.0f   denominator %.0f\n",
              static_cast<double>(stats[gcpo::loss_stat_loss]), static_cast<double>(stats[gcpo::loss_stat_kl_mean]),
              static_cast<double>(stats[gcpo::loss_stat_weight_mean]),
              static_cast<double>(stats[gcpo::loss_stat_clip_fraction]),
              static_cast<double>(stats[gcpo::loss_stat_token_count]),
              static_cast<double>(stats[gcpo::loss_stat_denominator]));
  double lp_mean = 0.0;
  for (float x : logp) lp_mean += x;
  std::printf("  policy log-prob of the sampled tokens: mean %.3f\n", lp_mean / static_cast<double>(R * N));

  // ---- gradients ----
  std::int64_t nonzero = 0;
  for (float x : grad_logp) nonzero += x != 0.0f ? 1 : 0;
  double gsum = 0.0;
  for (const bf16 x : grad_logits) {
    const double v = x.to_float();
    gsum += v * v;
  }
  std::printf("\nGradients:\n");
  std::printf("  |dL/dlogp|   = %.6e  (nonzero on %lld of %lld tokens: the running-mean weight carries gradient to\n"
              "                                  tokens before a critical one where |logp - ref| <= clip)\n",
              norm2(grad_logp.data(), R * N), static_cast<long long>(nonzero), static_cast<long long>(R * N));
  std::printf("  |dL/dlogits| = %.6e  (bfloat16 [%lld, %lld, %lld])\n", std::sqrt(gsum), static_cast<long long>(R),
              static_cast<long long>(N), static_cast<long long>(V));

  // ---- time of each stage ----
  std::printf("\nTime of each stage (host twins, one thread):\n");
  double total = 0.0;
  for (const stage& s : stages) {
    total += s.ms;
    if (s.bytes > 0)
      std::printf("  %-44s %10.3f ms  %6.2f GB/s\n", s.name, s.ms, s.bytes / (s.ms * 1e6));
    else
      std::printf("  %-44s %10.3f ms\n", s.name, s.ms);
  }
  std::printf("  %-44s %10.3f ms\n", "all operators", total);
  return 0;
}
