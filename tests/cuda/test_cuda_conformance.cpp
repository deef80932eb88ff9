// Conformance on the device: every case of tests/data/conformance (and of GCPO_CONFORMANCE_DIR
// when set) run end to end through the CUDA twins (token statistics, selection with the
// similarity computed from the embeddings, advantages, loss, both backwards), checked against
// the official float64 values with the spec's tolerances; masks exactly.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "conformance_json.hpp"
#include "cuda_support.hpp"

namespace fs = std::filesystem;

namespace {

using namespace gcpo_cuda_test;

using gcpo_conformance::cases_in;
using gcpo_conformance::doubles;
using gcpo_conformance::floats;

template <class T>
std::vector<double> to_doubles(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

void run_case(const fs::path& path) {
  INFO("case: " << path.filename().string());
  std::ifstream f(path);
  REQUIRE(f.good());
  const nlohmann::json c = nlohmann::json::parse(f);
  REQUIRE(c.value("format", "") == "gcpo-conformance/1");
  const gcpo_conformance::case_shape shape = gcpo_conformance::shape_of(c);
  const std::int64_t G = shape.G, H = shape.H, W = shape.W, V = shape.V, D = shape.D, R = shape.R,
                     N = shape.N;
  const auto& prm = c["params"];
  const auto& in = c["inputs"];
  const auto& ex = c["expected"];
  const std::string variant = c["variant"];
  stream s;

  // Token statistics.
  const std::vector<float> sample_logits = floats(in["sample_logits"]);
  const std::vector<float> policy_logits = floats(in["policy_logits"]);
  std::vector<std::int64_t> tokens;
  for (const auto& t : in["tokens"]) tokens.push_back(t.get<std::int64_t>());
  device_buffer<float> d_sample(sample_logits), d_policy(policy_logits), d_entropy(R * N), d_logp(R * N), d_lse(R * N);
  device_buffer<std::int64_t> d_tokens(tokens);
  GCPO_OK(gcpo::cuda::token_stats(gcpo::make_device_view(d_sample.get(), {R, N, V}), {},
                                  gcpo::make_device_view(d_entropy.get(), {R, N}), {}, {}, {}, s));
  GCPO_OK(gcpo::cuda::token_stats(gcpo::make_device_view(d_policy.get(), {R, N, V}),
                                  gcpo::make_device_view(d_tokens.get(), {R, N}), {},
                                  gcpo::make_device_view(d_logp.get(), {R, N}), gcpo::make_device_view(d_lse.get(), {R, N}),
                                  {}, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_close(d_entropy.download(), doubles(ex["entropy"]), value_atol, value_rtol, "entropy");
  check_close(d_logp.download(), doubles(ex["policy_logp"]), value_atol, value_rtol, "policy_logp");

  // Selection, similarity from the embeddings.
  gcpo::selection_options sopt;
  sopt.grid = {H, W};
  sopt.initial_frac = prm["initial_frac"];
  sopt.gradient_frac = prm["gradient_frac"];
  sopt.similarity_frac = prm["similarity_frac"];
  sopt.window_start_frac = prm["window_start_frac"];
  sopt.window_frac = prm["window_frac"];
  device_buffer<float> d_emb(floats(in["embeddings"]));
  device_buffer<std::uint8_t> d_crit(R * N), d_init(R * N), d_gmask(R * N), d_smask(R * N);
  device_buffer<std::int32_t> d_counts(R);
  device_buffer<float> d_smooth(R * N), d_egrad(R * N), d_sim(R * N);
  auto ws_sel = device_workspace(gcpo::select_critical_tokens_workspace_bytes(R, N));
  gcpo::selection_inputs sin;
  sin.entropy = gcpo::make_device_view(d_entropy.get(), {R, N});
  sin.embeddings = gcpo::make_device_view(d_emb.get(), {R, N, D});
  sin.similarity_opts.group = G;
  gcpo::selection_outputs sout;
  sout.critical = gcpo::make_device_view(d_crit.get(), {R, N});
  sout.counts = gcpo::make_device_view(d_counts.get(), {R});
  sout.initial = gcpo::make_device_view(d_init.get(), {R, N});
  sout.gradient = gcpo::make_device_view(d_gmask.get(), {R, N});
  sout.low_similarity = gcpo::make_device_view(d_smask.get(), {R, N});
  sout.smoothed_entropy = gcpo::make_device_view(d_smooth.get(), {R, N});
  sout.entropy_gradient = gcpo::make_device_view(d_egrad.get(), {R, N});
  sout.similarity = gcpo::make_device_view(d_sim.get(), {R, N});
  GCPO_OK(gcpo::cuda::select_critical_tokens(sin, sout, sopt, ws_sel.workspace(), s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_close(d_smooth.download(), doubles(ex["smoothed_entropy"]), value_atol, value_rtol, "smoothed_entropy");
  check_close(d_egrad.download(), doubles(ex["entropy_gradient"]), value_atol, value_rtol, "entropy_gradient");
  check_close(d_sim.download(), doubles(ex["similarity"]), value_atol, value_rtol, "similarity");
  const std::vector<std::uint8_t> crit = d_crit.download();
  check_close(to_doubles(d_init.download()), doubles(ex["initial_mask"]), 0, 0, "initial_mask");
  check_close(to_doubles(d_gmask.download()), doubles(ex["gradient_mask"]), 0, 0, "gradient_mask");
  check_close(to_doubles(d_smask.download()), doubles(ex["similarity_mask"]), 0, 0, "similarity_mask");
  check_close(to_doubles(crit), doubles(ex["critical_mask"]), 0, 0, "critical_mask");
  {
    const std::vector<double> want_crit = doubles(ex["critical_mask"]);
    std::vector<double> want_counts(R, 0.0);
    for (std::int64_t i = 0; i < R * N; ++i) want_counts[i / N] += want_crit[i];
    check_close(to_doubles(d_counts.download()), want_counts, 0, 0, "counts");
  }

  // Advantages.
  gcpo::advantage_options aopt;
  aopt.group = G;
  aopt.eps = static_cast<float>(prm["adv_eps"].get<double>());
  const std::string adv_std = prm["adv_std"];
  aopt.std = adv_std == "biased" ? gcpo::advantage_std::biased
                                 : (adv_std == "none" ? gcpo::advantage_std::none : gcpo::advantage_std::unbiased);
  device_buffer<float> d_rewards(floats(in["rewards"])), d_adv(R);
  GCPO_OK(gcpo::cuda::group_advantages(gcpo::make_device_view(d_rewards.get(), {R}),
                                       gcpo::make_device_view(d_adv.get(), {R}), aopt, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_close(d_adv.download(), doubles(ex["advantages"]), value_atol, value_rtol, "advantages");

  // Loss, metrics, backward, chain to the logits.
  gcpo::loss_options lopt;
  lopt.beta = static_cast<float>(prm["beta"].get<double>());
  lopt.weight_clip = static_cast<float>(prm["weight_clip"].get<double>());
  const std::string agg = prm["loss_aggregation"];
  lopt.aggregation = agg == "sequence_mean" ? gcpo::loss_aggregation::sequence_mean : gcpo::loss_aggregation::token_mean;
  if (variant == "llamagen" || !prm["ppo_clip"].is_null()) {
    lopt.clipping = gcpo::ratio_clipping::ppo;
    if (prm["ppo_clip"].is_array()) {
      lopt.eps_low = static_cast<float>(prm["ppo_clip"][0].get<double>());
      lopt.eps_high = static_cast<float>(prm["ppo_clip"][1].get<double>());
    } else {
      lopt.eps_low = lopt.eps_high = static_cast<float>(prm["ppo_clip"].get<double>());
    }
  }
  std::vector<float> old_logp;
  if (in.contains("old_logp") && !in["old_logp"].is_null()) old_logp = floats(in["old_logp"]);
  device_buffer<float> d_ref(floats(in["ref_logp"])), d_old(old_logp);
  gcpo::loss_inputs lin;
  lin.logp = gcpo::make_device_view(d_logp.get(), {R, N});
  lin.ref_logp = gcpo::make_device_view(d_ref.get(), {R, N});
  if (!old_logp.empty()) lin.old_logp = gcpo::make_device_view(d_old.get(), {R, N});
  lin.advantages = gcpo::make_device_view(d_adv.get(), {R});
  lin.mask = gcpo::make_device_view(d_crit.get(), {R, N});
  device_buffer<float> d_stats(gcpo::loss_stat_count), d_w(R * N), d_kl(R * N), d_glogp(R * N), d_glogp_det(R * N);
  auto ws_loss = device_workspace(gcpo::gcpo_loss_workspace_bytes(R, N));
  gcpo::loss_outputs lout;
  lout.stats = gcpo::make_device_view(d_stats.get(), {gcpo::loss_stat_count});
  lout.weight = gcpo::make_device_view(d_w.get(), {R, N});
  lout.kl = gcpo::make_device_view(d_kl.get(), {R, N});
  GCPO_OK(gcpo::cuda::gcpo_loss_forward(lin, lout, lopt, ws_loss.workspace(), s));
  GCPO_OK(gcpo::cuda::gcpo_loss_backward(lin, {}, gcpo::make_device_view(d_glogp.get(), {R, N}), lopt,
                                         ws_loss.workspace(), s));
  gcpo::loss_options dopt = lopt;
  dopt.detach_weight = true;
  GCPO_OK(gcpo::cuda::gcpo_loss_backward(lin, {}, gcpo::make_device_view(d_glogp_det.get(), {R, N}), dopt,
                                         ws_loss.workspace(), s));
  device_buffer<float> d_glogits(R * N * V);
  GCPO_OK(gcpo::cuda::token_stats_backward(gcpo::make_device_view(d_policy.get(), {R, N, V}),
                                           gcpo::make_device_view(d_tokens.get(), {R, N}),
                                           gcpo::make_device_view(d_lse.get(), {R, N}),
                                           gcpo::make_device_view(d_glogp.get(), {R, N}),
                                           gcpo::make_device_view(d_glogits.get(), {R, N, V}), {}, s));
  GCPO_CUDA_CHECK(cudaStreamSynchronize(s));
  check_close(d_w.download(), doubles(ex["weight"]), value_atol, value_rtol, "weight");
  check_close(d_kl.download(), doubles(ex["kl"]), value_atol, value_rtol, "kl");
  check_close(std::vector<float>{d_stats.download()[gcpo::loss_stat_loss]}, std::vector<double>{ex["loss"].get<double>()},
              value_atol, value_rtol, "loss");
  check_close(d_glogp.download(), doubles(ex["grad_logp"]), grad_atol, grad_rtol, "grad_logp");
  check_close(d_glogp_det.download(), doubles(ex["grad_logp_weight_detached"]), grad_atol, grad_rtol,
              "grad_logp_weight_detached");
  check_close(d_glogits.download(), doubles(ex["grad_policy_logits"]), grad_atol, grad_rtol, "grad_policy_logits");
}


}  // namespace

TEST_CASE("cuda conformance: shipped cases", "[cuda][conformance]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const std::vector<fs::path> cases = cases_in(fs::path(GCPO_TEST_DATA_DIR) / "conformance");
  REQUIRE(!cases.empty());
  for (const fs::path& p : cases) run_case(p);
}

TEST_CASE("cuda conformance: folder in GCPO_CONFORMANCE_DIR", "[cuda][conformance]") {
  GCPO_REQUIRE_CUDA_DEVICE();
  const char* dir = std::getenv("GCPO_CONFORMANCE_DIR");
  if (dir == nullptr || *dir == '\0') {
    std::printf("GCPO_CONFORMANCE_DIR is not set: no external cases to check on the device\n");
    return;
  }
  const std::vector<fs::path> cases = cases_in(fs::path(dir));
  REQUIRE(!cases.empty());
  for (const fs::path& p : cases) run_case(p);
}
