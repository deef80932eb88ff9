// Conformance: every expected field of every case produced by the official implementation
// (float64), checked against the host twins within the spec's tolerances (section 8):
// values |got - want| <= 1e-5 + 1e-4 |want|, gradients 1e-7 + 1e-3 |want|, masks exact.
//
// "conformance: shipped cases" reads tests/data/conformance/*.json. "conformance: folder in
// GCPO_CONFORMANCE_DIR" reads every *.json of that folder when the variable is set, and fails
// if the folder has no case or any field of any case is off.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "conformance_json.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using gcpo_test::compare;
using gcpo_test::comparison;

namespace {


using gcpo_conformance::cases_in;
using gcpo_conformance::doubles;
using gcpo_conformance::floats;
using gcpo_conformance::grad_atol;
using gcpo_conformance::grad_rtol;
using gcpo_conformance::value_atol;
using gcpo_conformance::value_rtol;

/// Runs one case; returns a report of every field that is off (empty when all match).
std::string run_case(const fs::path& path) {
  std::ifstream f(path);
  if (!f) return "cannot open " + path.string() + "\n";
  nlohmann::json c;
  try {
    c = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    return path.string() + ": invalid JSON: " + e.what() + "\n";
  }
  std::string report;
  auto fail = [&](const std::string& s) { report += path.filename().string() + ": " + s; };
  if (c.value("format", "") != "gcpo-conformance/1") {
    fail("format is not gcpo-conformance/1\n");
    return report;
  }
  const gcpo_conformance::case_shape shape = gcpo_conformance::shape_of(c);
  const std::int64_t G = shape.G, H = shape.H, W = shape.W, V = shape.V, D = shape.D, R = shape.R,
                     N = shape.N;
  const auto& prm = c["params"];
  const auto& in = c["inputs"];
  const auto& ex = c["expected"];
  const std::string variant = c["variant"];

  auto check = [&](const comparison& cmp) {
    if (!cmp.ok()) fail(cmp.report);
  };
  auto st = [&](const gcpo::status& s, const char* what) {
    if (!s.ok()) fail(std::string(what) + " failed: " + s.message() + "\n");
    return s.ok();
  };

  // Token statistics: entropy from the sampling logits, log-prob and lse from the policy logits.
  const std::vector<float> sample_logits = floats(in["sample_logits"]);
  const std::vector<float> policy_logits = floats(in["policy_logits"]);
  std::vector<std::int64_t> tokens;
  for (const auto& t : in["tokens"]) tokens.push_back(t.get<std::int64_t>());
  std::vector<float> entropy(R * N), logp(R * N), lse(R * N);
  if (!st(gcpo::host::token_stats(gcpo::make_view(sample_logits.data(), {R, N, V}), {}, gcpo_test::view(entropy, {R, N}),
                                  {}, {}),
          "token_stats(sample_logits)"))
    return report;
  if (!st(gcpo::host::token_stats(gcpo::make_view(policy_logits.data(), {R, N, V}),
                                  gcpo::make_view(tokens.data(), {R, N}), {}, gcpo_test::view(logp, {R, N}),
                                  gcpo_test::view(lse, {R, N})),
          "token_stats(policy_logits)"))
    return report;
  check(compare(entropy, doubles(ex["entropy"]), value_atol, value_rtol, "entropy"));
  check(compare(logp, doubles(ex["policy_logp"]), value_atol, value_rtol, "policy_logp"));

  // Selection, similarity computed from the embeddings.
  gcpo::selection_options sopt;
  sopt.grid = {H, W};
  sopt.initial_frac = prm["initial_frac"];
  sopt.gradient_frac = prm["gradient_frac"];
  sopt.similarity_frac = prm["similarity_frac"];
  sopt.window_start_frac = prm["window_start_frac"];
  sopt.window_frac = prm["window_frac"];
  const std::vector<float> emb = floats(in["embeddings"]);
  gcpo::selection_inputs sin;
  sin.entropy = gcpo::make_view(entropy.data(), {R, N});
  sin.embeddings = gcpo::make_view(emb.data(), {R, N, D});
  sin.similarity_opts.group = G;
  std::vector<std::uint8_t> crit(R * N), init(R * N), grad_mask(R * N), sim_mask(R * N);
  std::vector<std::int32_t> counts(R);
  std::vector<float> smooth(R * N), egrad(R * N), sim(R * N);
  gcpo::selection_outputs sout;
  sout.critical = gcpo_test::view(crit, {R, N});
  sout.counts = gcpo_test::view(counts, {R});
  sout.initial = gcpo_test::view(init, {R, N});
  sout.gradient = gcpo_test::view(grad_mask, {R, N});
  sout.low_similarity = gcpo_test::view(sim_mask, {R, N});
  sout.smoothed_entropy = gcpo_test::view(smooth, {R, N});
  sout.entropy_gradient = gcpo_test::view(egrad, {R, N});
  sout.similarity = gcpo_test::view(sim, {R, N});
  gcpo_test::host_workspace ws(gcpo::select_critical_tokens_workspace_bytes(R, N));
  if (!st(gcpo::host::select_critical_tokens(sin, sout, sopt, ws.get()), "select_critical_tokens")) return report;
  check(compare(smooth, doubles(ex["smoothed_entropy"]), value_atol, value_rtol, "smoothed_entropy"));
  check(compare(egrad, doubles(ex["entropy_gradient"]), value_atol, value_rtol, "entropy_gradient"));
  check(compare(sim, doubles(ex["similarity"]), value_atol, value_rtol, "similarity"));
  check(compare(init, doubles(ex["initial_mask"]), 0, 0, "initial_mask"));
  check(compare(grad_mask, doubles(ex["gradient_mask"]), 0, 0, "gradient_mask"));
  check(compare(sim_mask, doubles(ex["similarity_mask"]), 0, 0, "similarity_mask"));
  check(compare(crit, doubles(ex["critical_mask"]), 0, 0, "critical_mask"));
  {
    const std::vector<double> want_crit = doubles(ex["critical_mask"]);
    std::vector<double> want_counts(R, 0.0);
    for (std::int64_t i = 0; i < R * N; ++i) want_counts[i / N] += want_crit[i];
    check(compare(counts, want_counts, 0, 0, "counts (from critical_mask)"));
  }

  // Advantages.
  gcpo::advantage_options aopt;
  aopt.group = G;
  aopt.eps = static_cast<float>(prm["adv_eps"].get<double>());
  const std::string adv_std = prm["adv_std"];
  if (adv_std == "unbiased") aopt.std = gcpo::advantage_std::unbiased;
  else if (adv_std == "biased") aopt.std = gcpo::advantage_std::biased;
  else if (adv_std == "none") aopt.std = gcpo::advantage_std::none;
  else fail("unknown adv_std '" + adv_std + "'\n");
  const std::vector<float> rewards = floats(in["rewards"]);
  std::vector<float> adv(R);
  if (!st(gcpo::host::group_advantages(gcpo::make_view(rewards.data(), {R}), gcpo_test::view(adv, {R}), aopt),
          "group_advantages"))
    return report;
  check(compare(adv, doubles(ex["advantages"]), value_atol, value_rtol, "advantages"));

  // Loss, metrics, backward. The official pipeline feeds the expected advantages and our
  // log-probs; we feed ours throughout, so every stage is checked end to end.
  gcpo::loss_options lopt;
  lopt.algo = gcpo::algorithm::gcpo;
  lopt.beta = static_cast<float>(prm["beta"].get<double>());
  lopt.weight_clip = static_cast<float>(prm["weight_clip"].get<double>());
  const std::string agg = prm["loss_aggregation"];
  if (agg == "token_mean_over_batch") lopt.aggregation = gcpo::loss_aggregation::token_mean;
  else if (agg == "sequence_mean") lopt.aggregation = gcpo::loss_aggregation::sequence_mean;
  else fail("unknown loss_aggregation '" + agg + "'\n");
  std::vector<float> old_logp;
  if (variant == "llamagen" || (!prm["ppo_clip"].is_null())) {
    lopt.clipping = gcpo::ratio_clipping::ppo;
    if (prm["ppo_clip"].is_array()) {
      lopt.eps_low = static_cast<float>(prm["ppo_clip"][0].get<double>());
      lopt.eps_high = static_cast<float>(prm["ppo_clip"][1].get<double>());
    } else {
      lopt.eps_low = lopt.eps_high = static_cast<float>(prm["ppo_clip"].get<double>());
    }
  } else if (variant != "janus") {
    fail("unknown variant '" + variant + "'\n");
  }
  if (in.contains("old_logp") && !in["old_logp"].is_null()) old_logp = floats(in["old_logp"]);
  const std::vector<float> ref = floats(in["ref_logp"]);
  gcpo::loss_inputs lin;
  lin.logp = gcpo::make_view(logp.data(), {R, N});
  lin.ref_logp = gcpo::make_view(ref.data(), {R, N});
  if (!old_logp.empty()) lin.old_logp = gcpo::make_view(old_logp.data(), {R, N});
  lin.advantages = gcpo::make_view(adv.data(), {R});
  lin.mask = gcpo::make_view(crit.data(), {R, N});
  std::vector<float> stats(gcpo::loss_stat_count), weight(R * N), kl(R * N);
  gcpo::loss_outputs lout;
  lout.stats = gcpo_test::view(stats, {gcpo::loss_stat_count});
  lout.weight = gcpo_test::view(weight, {R, N});
  lout.kl = gcpo_test::view(kl, {R, N});
  if (!st(gcpo::host::gcpo_loss_forward(lin, lout, lopt), "gcpo_loss_forward")) return report;
  check(compare(weight, doubles(ex["weight"]), value_atol, value_rtol, "weight"));
  check(compare(kl, doubles(ex["kl"]), value_atol, value_rtol, "kl"));
  check(compare(std::vector<float>{stats[gcpo::loss_stat_loss]}, std::vector<double>{ex["loss"].get<double>()},
                value_atol, value_rtol, "loss"));

  std::vector<float> glogp(R * N), glogp_det(R * N);
  if (!st(gcpo::host::gcpo_loss_backward(lin, {}, gcpo_test::view(glogp, {R, N}), lopt), "gcpo_loss_backward")) return report;
  check(compare(glogp, doubles(ex["grad_logp"]), grad_atol, grad_rtol, "grad_logp"));
  gcpo::loss_options dopt = lopt;
  dopt.detach_weight = true;
  if (!st(gcpo::host::gcpo_loss_backward(lin, {}, gcpo_test::view(glogp_det, {R, N}), dopt), "gcpo_loss_backward(detached)"))
    return report;
  check(compare(glogp_det, doubles(ex["grad_logp_weight_detached"]), grad_atol, grad_rtol, "grad_logp_weight_detached"));

  std::vector<float> glogits(R * N * V);
  if (!st(gcpo::host::token_stats_backward(gcpo::make_view(policy_logits.data(), {R, N, V}),
                                           gcpo::make_view(tokens.data(), {R, N}), gcpo::make_view(lse.data(), {R, N}),
                                           gcpo::make_view(glogp.data(), {R, N}), gcpo_test::view(glogits, {R, N, V})),
          "token_stats_backward"))
    return report;
  check(compare(glogits, doubles(ex["grad_policy_logits"]), grad_atol, grad_rtol, "grad_policy_logits"));
  return report;
}


void run_folder(const fs::path& dir) {
  const std::vector<fs::path> cases = cases_in(dir);
  INFO("folder: " << dir.string());
  REQUIRE(!cases.empty());
  for (const auto& p : cases) {
    const std::string report = run_case(p);
    INFO(report);
    CHECK(report.empty());
    if (report.empty()) std::printf("conformance: %s ok\n", p.filename().string().c_str());
  }
}

}  // namespace

TEST_CASE("conformance: shipped cases", "[conformance]") { run_folder(fs::path(GCPO_TEST_DATA_DIR) / "conformance"); }

TEST_CASE("conformance: folder in GCPO_CONFORMANCE_DIR", "[conformance]") {
  const char* dir = std::getenv("GCPO_CONFORMANCE_DIR");
  if (dir == nullptr || *dir == '\0') {
    WARN("GCPO_CONFORMANCE_DIR is not set: no external cases to check");
    return;
  }
  run_folder(fs::path(dir));
}
