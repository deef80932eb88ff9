// A published-layout Janus-Pro directory in the trainer's model (pretrained.hpp): `forward` on the
// tiny random model of tests/data/janus_tiny/ against the float64 reference that
// fixtures/make_janus_fixture.py computed with its own forward, written from the spec (not from
// this C++): teacher-forced logits within 1e-4, decoded images equal but at truncation edges,
// for each of the four weight layouts, bitwise the same whatever the layout.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>
#include <string>

#include "test_support.hpp"
#include "pretrained.hpp"
#include "safetensors.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path fixtures = fs::path(JANUS_TEST_DATA_DIR) / "janus_tiny";

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& stem) {
    std::random_device rd;
    path = (fs::temp_directory_path() / ("gcpo-" + stem + "-" + std::to_string(rd()) + ".safetensors")).string();
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

using janus_test::error_of;

}  // namespace

TEST_CASE("pretrained: the model built from config.json, without its text head", "[pretrained]") {
  const janus::Pretrained p = janus::load_pretrained((fixtures / "bin_sharded").string(), {4, 4, at::kFloat, torch::kCPU});
  CHECK_FALSE(p.model->cfg.text_head);
  CHECK(p.model->named_parameters().find("language_model.lm_head.weight") == nullptr);
  CHECK(p.model->cfg.hidden_size == 64);
  CHECK(p.model->cfg.image_tokens() == 16);
  CHECK(p.tensors_read == 144);  // the text-to-image tensors only (154 in the files)
  CHECK(p.vq.shape().upsample() == 2);
  CHECK(p.model->gen_embed->weight.scalar_type() == at::kFloat);
}

TEST_CASE("pretrained: forward equals the independent float64 reference in every layout", "[pretrained]") {
  const janus::SafeTensors ref = janus::load_safetensors((fixtures / "forward" / "reference.safetensors").string());
  const at::Tensor want = ref.at("logits").to(at::kDouble);
  const at::Tensor decoded = ref.at("decoded").to(at::kDouble);
  at::Tensor first_logits, first_images;
  for (const char* layout : {"safetensors", "safetensors_sharded", "bin", "bin_sharded"}) {
    INFO(layout);
    TempFile out(std::string("forward-") + layout);
    janus::run_forward((fixtures / layout).string(), (fixtures / "forward" / "input.safetensors").string(), out.path);
    const janus::SafeTensors got = janus::load_safetensors(out.path);
    const at::Tensor logits = got.at("logits"), images = got.at("images");
    REQUIRE(logits.sizes() == want.sizes());
    REQUIRE(logits.scalar_type() == at::kFloat);
    const double scale = want.abs().max().item<double>();
    const double err = (logits.to(at::kDouble) - want).abs().max().item<double>();
    INFO("max |logits - reference| = " << err << " (largest logit " << scale << ")");
    CHECK(err <= 1e-4 * scale);
    REQUIRE(images.sizes() == ref.at("images").sizes());
    const at::Tensor scaled = ((decoded.permute({0, 2, 3, 1}) + 1) / 2 * 255).clamp(0, 255);
    const at::Tensor edge = (scaled - scaled.round()).abs() < 1e-3;
    const at::Tensor diff = (images.to(at::kInt) - ref.at("images").to(at::kInt)).abs();
    CHECK(diff.max().item<int>() <= 1);
    CHECK((diff > 0).logical_and(edge.logical_not()).sum().item<std::int64_t>() == 0);
    if (!first_logits.defined()) {
      first_logits = logits;
      first_images = images;
    } else {
      CHECK(at::equal(logits, first_logits));
      CHECK(at::equal(images, first_images));
    }
  }
}

TEST_CASE("pretrained: forward names the bad input", "[pretrained]") {
  const janus::SafeTensors in = janus::load_safetensors((fixtures / "forward" / "input.safetensors").string());
  const std::string dir = (fixtures / "safetensors").string();
  auto forward_error = [&](std::vector<std::pair<std::string, at::Tensor>> tensors, std::int64_t gh = 0,
                           std::int64_t gw = 0) {
    TempFile bad("forward-in"), out("forward-out");
    janus::save_safetensors(bad.path, tensors);
    return error_of([&] { janus::run_forward(dir, bad.path, out.path, gh, gw); });
  };
  const at::Tensor ids = in.at("prompt_ids"), mask = in.at("attention_mask"), tok = in.at("image_tokens");
  CHECK_THAT(forward_error({{"prompt_ids", ids}, {"attention_mask", mask}}),
             Catch::Contains("`image_tokens` is missing"));
  CHECK_THAT(forward_error({{"prompt_ids", ids}, {"attention_mask", mask}, {"image_tokens", tok.to(at::kInt)}}),
             Catch::Contains("`image_tokens` has dtype Int"));
  at::Tensor t = tok.clone();
  t[2][9] = 64;
  CHECK_THAT(forward_error({{"prompt_ids", ids}, {"attention_mask", mask}, {"image_tokens", t}}),
             Catch::Contains("`image_tokens[2, 9]` is outside [0, 64)"));
  at::Tensor p = ids.clone();
  p[1][0] = 120;
  CHECK_THAT(forward_error({{"prompt_ids", p}, {"attention_mask", mask}, {"image_tokens", tok}}),
             Catch::Contains("`prompt_ids[1, 0]` is outside [0, 120)"));
  CHECK_THAT(forward_error({{"prompt_ids", ids}, {"attention_mask", mask}, {"image_tokens", tok.narrow(1, 0, 15)}}),
             Catch::Contains("15 tokens per image, not a square grid"));
  CHECK_THAT(forward_error({{"prompt_ids", ids}, {"attention_mask", mask}, {"image_tokens", tok}}, 2, 4),
             Catch::Contains("the grid 2x4 needs 8"));
  CHECK_THAT(forward_error({{"prompt_ids", ids}, {"attention_mask", mask * 2}, {"image_tokens", tok}}),
             Catch::Contains("only 0 and 1"));
}
