// The ablations of issue 15 (--mask-mode, --weight): which tokens GCPO trains on and whether the
// dynamic weight is there, on one RL step of the 8x8 warm start (tests/data).
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <utility>
#include <string>

#include "test_util.hpp"
#include "train.hpp"

using janus::TrainConfig;

namespace {

TrainConfig ablation_run(const std::string& mask_mode, const std::string& weight_mode) {
  TrainConfig c;
  c.mode = "rl";
  c.grid_height = c.grid_width = 8;
  c.init = std::string(JANUS_TEST_DATA_DIR) + "/warm_single_object_8x8.safetensors";
  c.tags = "single_object";
  c.algo = "gcpo";
  c.prompts = 2;
  c.group = 4;
  c.lr = 1e-3;
  c.seed = 3;
  c.mask_mode = mask_mode;
  c.weight_mode = weight_mode;
  return c;
}

/// The metrics of the first two steps. On the first, the policy is the reference: every weight
/// is exp(0) = 1 and, with equal token counts per row, the group-centred advantages make the
/// loss 0 whatever the mask; the second step trains a policy the first one moved.
std::pair<nlohmann::json, nlohmann::json> two_steps(const TrainConfig& c) {
  janus::Trainer t(c);
  nlohmann::json first = t.train_step().json;
  return {first, t.train_step().json};
}

}  // namespace

TEST_CASE("random_token_mask: counts per row, distinct positions, pure in the seed and the global row", "[ablation]") {
  const torch::Tensor counts = torch::tensor({0, 1, 18, 64, 7}, torch::kInt);
  const torch::Tensor m = janus::random_token_mask(counts, 64, 11, 100);
  REQUIRE(m.sizes() == torch::IntArrayRef({5, 64}));
  REQUIRE(m.scalar_type() == torch::kUInt8);
  for (int r = 0; r < 5; ++r) CHECK(m[r].sum().item<int>() == counts[r].item<int>());
  CHECK(torch::equal(m, janus::random_token_mask(counts, 64, 11, 100)));
  CHECK_FALSE(torch::equal(m, janus::random_token_mask(counts, 64, 12, 100)));
  // rows are numbered globally: rows 2.. of a batch starting at 100 are rows 0.. of one at 102
  const torch::Tensor tail = janus::random_token_mask(counts.narrow(0, 2, 3), 64, 11, 102);
  CHECK(torch::equal(tail, m.narrow(0, 2, 3)));
  // uniform over positions: 4000 rows of 8 of 64 put each position at 500 +- 4 sigma (88)
  const torch::Tensor many = janus::random_token_mask(torch::full({4000}, 8, torch::kInt), 64, 5, 0);
  const torch::Tensor per_position = many.to(torch::kLong).sum(0);
  CHECK(per_position.min().item<std::int64_t>() > 500 - 88);
  CHECK(per_position.max().item<std::int64_t>() < 500 + 88);
  CHECK_THROWS_WITH(janus::random_token_mask(torch::tensor({65}, torch::kInt), 64, 0, 0),
                    Catch::Matchers::Contains("outside [0, N]"));
}

TEST_CASE("ablation mask modes (--mask-mode): the same rollouts, trained on the selection, as many random tokens, the rest or all",
          "[ablation]") {
  const auto crit = two_steps(ablation_run("critical", "official"));
  const auto rnd = two_steps(ablation_run("random", "official"));
  const auto comp = two_steps(ablation_run("complement", "official"));
  const auto all = two_steps(ablation_run("all", "official"));
  // the same seed samples the same first step: only the trained tokens differ
  for (const auto* m : {&rnd, &comp, &all}) {
    CHECK(m->first.at("rollout_digest") == crit.first.at("rollout_digest"));
    CHECK(m->first.at("reward") == crit.first.at("reward"));
  }
  const double f = crit.first.at("critical_fraction").get<double>();
  CHECK(f == Approx(18.0 / 64.0));  // 8x8: 6 initial + 6 gradient + 6 similarity tokens, disjoint
  CHECK(rnd.first.at("critical_fraction").get<double>() == Approx(f));
  CHECK(comp.first.at("critical_fraction").get<double>() == Approx(1.0 - f));
  CHECK(all.first.at("critical_fraction").get<double>() == Approx(1.0));
  // different tokens trained: different updates, so different second steps
  const std::set<double> norms{crit.first.at("grad_norm").get<double>(), rnd.first.at("grad_norm").get<double>(),
                               comp.first.at("grad_norm").get<double>(), all.first.at("grad_norm").get<double>()};
  CHECK(norms.size() == 4);
  const std::set<double> losses{crit.second.at("loss").get<double>(), rnd.second.at("loss").get<double>(),
                                comp.second.at("loss").get<double>(), all.second.at("loss").get<double>()};
  CHECK(losses.size() == 4);
  // the random draw is reproducible
  CHECK(two_steps(ablation_run("random", "official")).second.at("loss") == rnd.second.at("loss"));
  // kl_all is the KL on every token: 0 while the policy is the reference; after one update it is
  // the trained-token KL of --mask-mode all, and not that of a partial mask
  for (const auto* m : {&crit, &rnd, &comp, &all}) CHECK(m->first.at("kl_all").get<double>() == Approx(0.0).margin(1e-12));
  CHECK(all.second.at("kl_all").get<double>() > 0.0);
  CHECK(all.second.at("kl_all").get<double>() == Approx(all.second.at("kl").get<double>()).epsilon(1e-6));
  CHECK(crit.second.at("kl_all").get<double>() != Approx(crit.second.at("kl").get<double>()).epsilon(1e-3));
}

TEST_CASE("ablation weight modes (--weight): official, detached (the same loss, another gradient) and one (weight 1)", "[ablation]") {
  const auto off = two_steps(ablation_run("critical", "official"));
  const auto det = two_steps(ablation_run("critical", "detached"));
  const auto one = two_steps(ablation_run("critical", "one"));
  // first step: the same loss and weight, but the official weight passes a gradient
  CHECK(det.first.at("loss").get<double>() == Approx(off.first.at("loss").get<double>()).margin(1e-9));
  CHECK(det.first.at("weight_mean") == off.first.at("weight_mean"));
  CHECK(det.first.at("grad_norm").get<double>() != off.first.at("grad_norm").get<double>());
  // second step: the policy has moved, so the official weight is no longer 1; "one" stays 1
  CHECK(off.second.at("weight_mean").get<double>() != Approx(1.0).epsilon(1e-9));
  CHECK(one.second.at("weight_mean").get<double>() == Approx(1.0));
  // --detach-weight is the same as --weight detached
  TrainConfig legacy = ablation_run("critical", "official");
  legacy.detach_weight = true;
  CHECK(two_steps(legacy).first.at("grad_norm") == det.first.at("grad_norm"));
}

TEST_CASE("ablation settings are checked by name", "[ablation]") {
  using Catch::Matchers::Contains;
  TrainConfig c = ablation_run("nearby", "official");
  CHECK_THROWS_WITH(c.validate(), Contains("--mask-mode must be critical, random, complement or all"));
  c = ablation_run("critical", "half");
  CHECK_THROWS_WITH(c.validate(), Contains("--weight must be official, detached or one"));
  c = ablation_run("random", "official");
  c.algo = "grpo";
  CHECK_THROWS_WITH(c.validate(), Contains("--algo grpo trains every token"));
}
