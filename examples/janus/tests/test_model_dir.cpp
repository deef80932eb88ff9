// A Janus-Pro model directory (model_dir.hpp) in the four published layouts, against the tiny
// random model tests/data/janus_tiny/ that fixtures/make_janus_fixture.py wrote with PyTorch
// (torch.save for the .bin files, its own writer for safetensors): the config read at run time;
// the four layouts load to identical tensors; only the text-to-image tensors are read and only
// the shards holding them opened; every bad config, index or file named.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include "test_support.hpp"
#include "model_dir.hpp"
#include "safetensors.hpp"
#include "vq_decoder.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path fixtures = fs::path(JANUS_TEST_DATA_DIR) / "janus_tiny";
const char* const layouts[] = {"safetensors", "safetensors_sharded", "bin", "bin_sharded"};

/// A scratch copy of one fixture directory, removed at scope exit.
struct Scratch {
  fs::path dir;
  explicit Scratch(const std::string& layout) {
    std::random_device rd;
    dir = fs::temp_directory_path() / ("gcpo-model-dir-" + layout + "-" + std::to_string(rd()));
    fs::create_directories(dir);
    fs::copy(fixtures / layout, dir, fs::copy_options::recursive);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string read(const std::string& name) const {
    std::ifstream f(dir / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream(dir / name, std::ios::binary | std::ios::trunc) << bytes;
  }
  void replace(const std::string& name, const std::string& from, const std::string& to) const {
    std::string s = read(name);
    const std::size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    s.replace(at, from.size(), to);
    write(name, s);
  }
};

using janus_test::error_of;

/// Everything a text-to-image run loads from `dir`, checked.
janus::Weights load_checked(const fs::path& dir) {
  const janus::JanusConfig cfg = janus::read_janus_config(dir.string());
  janus::Weights w = janus::load_weights(janus::find_weights(dir.string()), janus::janus_t2i_wants);
  janus::check_janus_weights(cfg, w);
  return w;
}

}  // namespace

TEST_CASE("model dir: config.json is read at run time, LlamaConfig defaults filled in", "[model_dir]") {
  const janus::JanusConfig c = janus::read_janus_config((fixtures / "bin").string());
  CHECK(c.language.hidden_size == 64);
  CHECK(c.language.num_hidden_layers == 2);
  CHECK(c.language.num_attention_heads == 4);
  CHECK(c.language.num_key_value_heads == 4);
  CHECK(c.language.head_dim == 16);
  CHECK(c.language.intermediate_size == 96);
  CHECK(c.language.vocab_size == 120);
  CHECK(c.language.rms_norm_eps == 1e-6);    // absent: LlamaConfig's default
  CHECK(c.language.rope_theta == 10000.0);   // absent: LlamaConfig's default
  CHECK(c.gen_vision_cls == "VQ-16");
  CHECK(c.image_token_size == 64);
  CHECK(c.gen_embed_dim == 8);
  CHECK(c.aligner_depth == 2);
  CHECK(c.head_image_token_embed == 64);
}

TEST_CASE("model dir: the four layouts load to identical tensors, only the text-to-image ones", "[model_dir]") {
  janus::Weights first;
  for (const char* layout : layouts) {
    INFO(layout);
    const janus::WeightFiles files = janus::find_weights((fixtures / layout).string());
    CHECK(std::string(janus::to_string(files.layout)).find(std::string(layout).find("bin") == 0 ? "pytorch_model.bin"
                                                                                                 : "model.safetensors") == 0);
    CHECK(files.files.size() == (std::string(layout).find("sharded") != std::string::npos ? 2u : 1u));
    const janus::Weights w = load_checked(fixtures / layout);
    CHECK(w.tensors.count("gen_embed.weight"));
    CHECK(w.tensors.count("gen_vision_model.decoder.conv_out.weight"));
    CHECK_FALSE(w.tensors.count("language_model.lm_head.weight"));
    CHECK_FALSE(w.tensors.count("vision_model.vision_tower.patch_embed.proj.weight"));
    CHECK_FALSE(w.tensors.count("aligner.layers.0.weight"));
    CHECK_FALSE(w.tensors.count("gen_vision_model.encoder.conv_in.weight"));
    CHECK_FALSE(w.tensors.count("gen_vision_model.quant_conv.weight"));
    CHECK(w.tensors.at("gen_head.vision_head.weight").scalar_type() == at::kBFloat16);
    const janus::VqDecoder vq = janus::VqDecoder::load(w.tensors, w.source);
    CHECK(vq.shape().block_channels == std::vector<std::int64_t>{32, 32});
    CHECK(vq.shape().upsample() == 2);
    if (first.tensors.empty()) {
      first = w;
      CHECK(first.tensors.size() == 9 * 2 + 2 + 1 + 4 + 4 + 115);  // LM, gen_embed, aligner, head, VQ decoder
      continue;
    }
    REQUIRE(w.tensors.size() == first.tensors.size());
    for (const auto& kv : first.tensors) {
      INFO(kv.first);
      REQUIRE(w.tensors.count(kv.first));
      CHECK(at::equal(w.tensors.at(kv.first), kv.second));
    }
  }
}

TEST_CASE("model dir: shards without a wanted tensor are never opened", "[model_dir]") {
  for (const char* layout : {"safetensors_sharded", "bin_sharded"}) {
    INFO(layout);
    Scratch s(layout);
    const janus::WeightFiles files = janus::find_weights(s.dir.string());
    const std::string second = files.files.at(1);
    // the second shard ruined: loading only the first shard's tensors still works
    std::ofstream(second, std::ios::binary | std::ios::trunc) << "ruined";
    const janus::Weights w = janus::load_weights(files, [](const std::string& n) { return n == "gen_embed.weight"; });
    CHECK(w.tensors.size() == 1);
    CHECK(w.where("gen_embed.weight") == files.files.at(0));
    CHECK_THAT(error_of([&] { janus::load_weights(files, janus::janus_t2i_wants); }),
               Catch::Contains(fs::path(second).filename().string()));
  }
}

TEST_CASE("model dir: bad config.json is named by key", "[model_dir]") {
  Scratch s("safetensors");
  const std::string good = s.read("config.json");
  auto config_error = [&](const std::string& from, const std::string& to) {
    s.write("config.json", good);
    s.replace("config.json", from, to);
    return error_of([&] { janus::read_janus_config(s.dir.string()); });
  };
  CHECK_THAT(config_error("\"hidden_size\": 64", "\"hidden_size\": \"abc\""),
             Catch::Contains("config.json") && Catch::Contains("`language_config.hidden_size`") &&
                 Catch::Contains("positive integer"));
  CHECK_THAT(config_error("\"num_attention_heads\": 4", "\"num_attention_heads\": 5"),
             Catch::Contains("`language_config.hidden_size`") && Catch::Contains("multiple"));
  CHECK_THAT(config_error("\"input_dim\": 8", "\"input_dim\": 9"),
             Catch::Contains("`gen_aligner_config.params.input_dim`") && Catch::Contains("gen_vision_config.params.n_embed"));
  CHECK_THAT(config_error("\"VQ-16\"", "\"VQ-32\""), Catch::Contains("`gen_vision_config.cls`") && Catch::Contains("VQ-32"));
  CHECK_THAT(config_error("\"gen_head_config\"", "\"gen_head_config_renamed\""),
             Catch::Contains("`gen_head_config.params.n_embed`") && Catch::Contains("missing"));
  CHECK_THAT(config_error("{", "["), Catch::Contains("config.json") && Catch::Contains("JSON"));
  fs::remove(s.dir / "config.json");
  CHECK_THAT(error_of([&] { janus::read_janus_config(s.dir.string()); }),
             Catch::Contains("config.json") && Catch::Contains("cannot be opened"));
}

TEST_CASE("model dir: a config that disagrees with the weights names the tensor and file", "[model_dir]") {
  Scratch s("safetensors");
  s.replace("config.json", "\"intermediate_size\": 96", "\"intermediate_size\": 128");
  CHECK_THAT(error_of([&] { load_checked(s.dir); }),
             Catch::Contains("model.safetensors") && Catch::Contains("layers.0.mlp.down_proj.weight") &&
                 Catch::Contains("has shape [64, 96], config.json gives [64, 128]"));
  Scratch t("safetensors");
  t.replace("config.json", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
  CHECK_THAT(error_of([&] { load_checked(t.dir); }),
             Catch::Contains("language_model.model.layers.2.") && Catch::Contains("missing"));
  Scratch u("safetensors");
  u.replace("config.json", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1");
  CHECK_THAT(error_of([&] { load_checked(u.dir); }),
             Catch::Contains("language_model.model.layers.1.") && Catch::Contains("unexpected"));
}

TEST_CASE("model dir: bad indices are refused by name", "[model_dir]") {
  for (const std::string layout : {"safetensors_sharded", "bin_sharded"}) {
    INFO(layout);
    const std::string index = layout == "bin_sharded" ? "pytorch_model.bin.index.json" : "model.safetensors.index.json";
    const std::string shard1 = layout == "bin_sharded" ? "pytorch_model-00001-of-00002.bin" : "model-00001-of-00002.safetensors";
    {
      Scratch s(layout);
      s.replace(index, "\"gen_embed.weight\": \"" + shard1 + "\"", "\"gen_embed.weight\": \"../" + shard1 + "\"");
      CHECK_THAT(error_of([&] { janus::find_weights(s.dir.string()); }),
                 Catch::Contains(index) && Catch::Contains("gen_embed.weight") && Catch::Contains("not a file name"));
    }
    {
      Scratch s(layout);
      fs::remove(s.dir / shard1);
      CHECK_THAT(error_of([&] { janus::find_weights(s.dir.string()); }),
                 Catch::Contains(index) && Catch::Contains(shard1) && Catch::Contains("does not exist"));
    }
    {
      Scratch s(layout);  // the index puts a tensor in a shard that does not hold it
      s.replace(index, "\"weight_map\": {", "\"weight_map\": {\"gen_head.extra.weight\": \"" + shard1 + "\", ");
      CHECK_THAT(error_of([&] { janus::load_weights(janus::find_weights(s.dir.string()), janus::janus_t2i_wants); }),
                 Catch::Contains(shard1) && Catch::Contains("gen_head.extra.weight") && Catch::Contains("does not hold"));
    }
  }
  Scratch e("safetensors");
  fs::remove(e.dir / "model.safetensors");
  CHECK_THAT(error_of([&] { janus::find_weights(e.dir.string()); }),
             Catch::Contains("no weights found") && Catch::Contains("pytorch_model.bin.index.json"));
}

TEST_CASE("model dir: truncated, corrupted and mistyped files of each layout are named", "[model_dir]") {
  for (const char* layout : layouts) {
    INFO(layout);
    const bool bin = std::string(layout).find("bin") == 0;
    const janus::WeightFiles files = janus::find_weights((fixtures / layout).string());
    const std::string name = fs::path(files.files.back()).filename().string();
    {  // truncated
      Scratch s(layout);
      const std::string bytes = s.read(name);
      s.write(name, bytes.substr(0, bytes.size() / 2));
      CHECK_THAT(error_of([&] { load_checked(s.dir); }), Catch::Contains(name));
    }
    {  // corrupted: a byte of tensor data flipped (.bin: the record's CRC), or the safetensors header
      Scratch s(layout);
      std::string bytes = s.read(name);
      if (bin) {  // a byte inside the record of conv_out.weight (found by its bytes in the safetensors twin)
        const auto twin = janus::load_safetensors((fixtures / "safetensors" / "model.safetensors").string(),
                                                  [](const std::string& n) { return n == "gen_vision_model.decoder.conv_out.weight"; });
        const at::Tensor& t = twin.tensors.at(0).second;
        const std::size_t at = bytes.find(std::string(static_cast<const char*>(t.data_ptr()), 32));
        REQUIRE(at != std::string::npos);
        bytes[at + 5] = static_cast<char>(bytes[at + 5] ^ 0x41);
      } else {
        bytes[12] = '#';  // inside the JSON header
      }
      s.write(name, bytes);
      const std::string err = error_of([&] {
        const janus::Weights w = load_checked(s.dir);
        (void)janus::VqDecoder::load(w.tensors, w.source);
      });
      CHECK_THAT(err, Catch::Contains(name));
      if (bin) CHECK_THAT(err, Catch::Contains("conv_out.weight") && Catch::Contains("CRC-32"));
    }
    if (!bin) {  // mistyped: a tensor's dtype changed in the header, same byte size
      Scratch s(layout);
      const std::string bytes = s.read(name);
      const std::size_t at = bytes.find("\"gen_vision_model.decoder.conv_out.weight\":{\"dtype\":\"BF16\"");
      if (at != std::string::npos) {
        s.replace(name, "\"gen_vision_model.decoder.conv_out.weight\":{\"dtype\":\"BF16\"",
                  "\"gen_vision_model.decoder.conv_out.weight\":{\"dtype\":\"I16\" ");
        const std::string err = error_of([&] {
          const janus::Weights w = load_checked(s.dir);
          (void)janus::VqDecoder::load(w.tensors, w.source);
        });
        CHECK_THAT(err, Catch::Contains("conv_out.weight") && Catch::Contains("floating-point"));
      } else {
        FAIL("conv_out.weight is not in " << name);
      }
    }
  }
}
