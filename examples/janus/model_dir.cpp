// examples/janus/model_dir.cpp - a Janus-Pro model directory (see model_dir.hpp).
#include "model_dir.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "safetensors.hpp"
#include "torch_bin.hpp"
#include "vq_decoder.hpp"

namespace janus {

namespace fs = std::filesystem;

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot be opened");
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
}

/// Reads keys of a JSON object, naming `path` and the dotted key in every error.
class ConfigReader {
 public:
  ConfigReader(std::string path, const nlohmann::json& root) : path_(std::move(path)), root_(root) {}

  const nlohmann::json* find(const std::string& key) const {
    const nlohmann::json* j = &root_;
    std::size_t from = 0;
    for (;;) {
      const std::size_t dot = key.find('.', from);
      const std::string part = key.substr(from, dot == std::string::npos ? std::string::npos : dot - from);
      if (!j->is_object() || !j->contains(part)) return nullptr;
      j = &(*j)[part];
      if (dot == std::string::npos) return j;
      from = dot + 1;
    }
  }
  const nlohmann::json& need(const std::string& key) const {
    const nlohmann::json* j = find(key);
    if (!j) fail(key, "is missing");
    return *j;
  }
  /// A positive integer (at most 2^40); `fallback` when absent and fallback > 0.
  std::int64_t positive(const std::string& key, std::int64_t fallback = 0) const {
    const nlohmann::json* j = find(key);
    if (!j || j->is_null()) {
      if (fallback > 0) return fallback;
      fail(key, "is missing");
    }
    if (!j->is_number_integer() || j->get<std::int64_t>() <= 0 || j->get<std::int64_t>() > (std::int64_t{1} << 40))
      fail(key, "must be a positive integer, not " + j->dump());
    return j->get<std::int64_t>();
  }
  double real(const std::string& key, double fallback, double lo, double hi) const {
    const nlohmann::json* j = find(key);
    if (!j || j->is_null()) return fallback;
    if (!j->is_number() || !(j->get<double>() > lo && j->get<double>() < hi))
      fail(key, "must be a number in (" + num(lo) + ", " + num(hi) + "), not " + j->dump());
    return j->get<double>();
  }
  std::string text(const std::string& key, const std::string& fallback = "") const {
    const nlohmann::json* j = find(key);
    if (!j || j->is_null()) {
      if (!fallback.empty()) return fallback;
      fail(key, "is missing");
    }
    if (!j->is_string()) fail(key, "must be a string, not " + j->dump());
    return j->get<std::string>();
  }
  bool flag(const std::string& key, bool fallback) const {
    const nlohmann::json* j = find(key);
    if (!j || j->is_null()) return fallback;
    if (!j->is_boolean()) fail(key, "must be true or false, not " + j->dump());
    return j->get<bool>();
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(path_ + ": `" + key + "` " + what);
  }

 private:
  static std::string num(double x) {
    std::ostringstream o;
    o << x;
    return o.str();
  }
  std::string path_;
  const nlohmann::json& root_;
};


}  // namespace

JanusConfig read_janus_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  const nlohmann::json root = read_json(path);
  const ConfigReader c(path, root);
  if (!root.is_object()) c.fail("(top level)", "must be a JSON object");
  JanusConfig cfg;
  LlamaConfig& l = cfg.language;
  c.need("language_config");
  l.vocab_size = c.positive("language_config.vocab_size", l.vocab_size);
  l.hidden_size = c.positive("language_config.hidden_size", l.hidden_size);
  l.intermediate_size = c.positive("language_config.intermediate_size", l.intermediate_size);
  l.num_hidden_layers = c.positive("language_config.num_hidden_layers", l.num_hidden_layers);
  l.num_attention_heads = c.positive("language_config.num_attention_heads", l.num_attention_heads);
  l.num_key_value_heads = c.positive("language_config.num_key_value_heads", l.num_attention_heads);
  if (l.hidden_size % l.num_attention_heads != 0)
    c.fail("language_config.hidden_size", "(" + std::to_string(l.hidden_size) + ") must be a multiple of " +
                                              "`language_config.num_attention_heads` (" +
                                              std::to_string(l.num_attention_heads) + ")");
  l.head_dim = c.positive("language_config.head_dim", l.hidden_size / l.num_attention_heads);
  if (l.num_attention_heads % l.num_key_value_heads != 0)
    c.fail("language_config.num_key_value_heads", "(" + std::to_string(l.num_key_value_heads) +
                                                      ") must divide `language_config.num_attention_heads` (" +
                                                      std::to_string(l.num_attention_heads) + ")");
  l.max_position_embeddings = c.positive("language_config.max_position_embeddings", l.max_position_embeddings);
  l.rms_norm_eps = c.real("language_config.rms_norm_eps", l.rms_norm_eps, 0.0, 1.0);
  const nlohmann::json* rs = c.find("language_config.rope_scaling");
  if (rs && !rs->is_null()) c.fail("language_config.rope_scaling", "is not supported (Janus-Pro uses none)");
  l.rope_theta = c.real("language_config.rope_theta", l.rope_theta, 1.0, 1e12);
  l.hidden_act = c.text("language_config.hidden_act", l.hidden_act);
  if (l.hidden_act != "silu") c.fail("language_config.hidden_act", "is \"" + l.hidden_act + "\"; only \"silu\" is supported");
  l.attention_bias = c.flag("language_config.attention_bias", false);
  l.mlp_bias = c.flag("language_config.mlp_bias", false);
  if (l.attention_bias) c.fail("language_config.attention_bias", "is true; Janus-Pro's attention has no biases");
  if (l.mlp_bias) c.fail("language_config.mlp_bias", "is true; Janus-Pro's MLP has no biases");
  l.tie_word_embeddings = c.flag("language_config.tie_word_embeddings", false);

  cfg.gen_vision_cls = c.text("gen_vision_config.cls");
  if (cfg.gen_vision_cls != "VQ-16")
    c.fail("gen_vision_config.cls", "is \"" + cfg.gen_vision_cls + "\"; only \"VQ-16\" is supported");
  cfg.image_token_size = c.positive("gen_vision_config.params.image_token_size");
  cfg.gen_embed_dim = c.positive("gen_vision_config.params.n_embed");

  cfg.aligner_type = c.text("gen_aligner_config.params.projector_type");
  if (cfg.aligner_type != "mlp_gelu")
    c.fail("gen_aligner_config.params.projector_type", "is \"" + cfg.aligner_type + "\"; only \"mlp_gelu\" is supported");
  cfg.aligner_depth = c.positive("gen_aligner_config.params.depth");
  if (cfg.aligner_depth > 16) c.fail("gen_aligner_config.params.depth", "is " + std::to_string(cfg.aligner_depth) + "; at most 16");
  cfg.aligner_input_dim = c.positive("gen_aligner_config.params.input_dim");
  cfg.aligner_n_embed = c.positive("gen_aligner_config.params.n_embed");
  cfg.head_n_embed = c.positive("gen_head_config.params.n_embed");
  cfg.head_image_token_embed = c.positive("gen_head_config.params.image_token_embed");
  cfg.head_image_token_size = c.positive("gen_head_config.params.image_token_size");

  auto agree = [&](const std::string& a, std::int64_t va, const std::string& b, std::int64_t vb) {
    if (va != vb) c.fail(a, "(" + std::to_string(va) + ") must equal `" + b + "` (" + std::to_string(vb) + ")");
  };
  agree("gen_aligner_config.params.input_dim", cfg.aligner_input_dim, "gen_vision_config.params.n_embed", cfg.gen_embed_dim);
  agree("gen_aligner_config.params.n_embed", cfg.aligner_n_embed, "language_config.hidden_size", l.hidden_size);
  agree("gen_head_config.params.n_embed", cfg.head_n_embed, "language_config.hidden_size", l.hidden_size);
  agree("gen_head_config.params.image_token_size", cfg.head_image_token_size, "gen_vision_config.params.image_token_size",
        cfg.image_token_size);
  return cfg;
}

const char* to_string(WeightLayout l) {
  switch (l) {
    case WeightLayout::safetensors: return "model.safetensors";
    case WeightLayout::safetensors_sharded: return "model.safetensors.index.json";
    case WeightLayout::torch_bin: return "pytorch_model.bin";
    case WeightLayout::torch_bin_sharded: return "pytorch_model.bin.index.json";
  }
  return "?";
}

WeightFiles find_weights(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error(dir + ": not a directory");
  WeightFiles w;
  w.dir = dir;
  for (WeightLayout l : {WeightLayout::safetensors, WeightLayout::safetensors_sharded, WeightLayout::torch_bin,
                         WeightLayout::torch_bin_sharded}) {
    const fs::path p = fs::path(dir) / to_string(l);
    if (!fs::is_regular_file(p, ec)) continue;
    w.layout = l;
    if (l == WeightLayout::safetensors || l == WeightLayout::torch_bin) {
      w.files.push_back(p.string());
      return w;
    }
    const nlohmann::json index = read_json(p.string());
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw std::runtime_error(p.string() + ": has no \"weight_map\" object");
    std::set<std::string> seen;
    for (const auto& kv : index["weight_map"].items()) {
      if (!kv.value().is_string())
        throw std::runtime_error(p.string() + ": \"weight_map\" entry `" + kv.key() + "` is not a file name");
      const std::string shard = kv.value().get<std::string>();
      // a plain file name in the same directory: never a path out of it
      if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
          shard.find('\\') != std::string::npos)
        throw std::runtime_error(p.string() + ": \"weight_map\" entry `" + kv.key() + "` names \"" + shard +
                                 "\", which is not a file name in the model directory");
      const std::string file = (fs::path(dir) / shard).string();
      if (seen.insert(shard).second) {
        if (!fs::is_regular_file(file, ec))
          throw std::runtime_error(p.string() + ": shard \"" + shard + "\" (of `" + kv.key() + "`) does not exist");
        w.files.push_back(file);
      }
      w.owner[kv.key()] = file;
    }
    if (w.owner.empty()) throw std::runtime_error(p.string() + ": \"weight_map\" is empty");
    std::sort(w.files.begin(), w.files.end());  // shard order: the names count up (-00001-of-0000N)
    return w;
  }
  throw std::runtime_error(dir + ": no weights found (looked for model.safetensors, model.safetensors.index.json, "
                                 "pytorch_model.bin, pytorch_model.bin.index.json)");
}

std::string Weights::where(const std::string& name) const {
  const auto it = file.find(name);
  return it == file.end() ? std::string("(unknown file)") : it->second;
}

void for_each_weight(const WeightFiles& files, const std::function<bool(const std::string&)>& want,
                     const std::function<void(const std::string&, at::Tensor, const std::string&)>& visit) {
  std::map<std::string, std::string> seen;  // name -> file
  auto read = [&](const std::string& path, const std::function<bool(const std::string&)>& pick) {
    auto take = [&](const std::string& name, at::Tensor t) {
      const auto it = seen.emplace(name, path);
      if (!it.second) throw std::runtime_error(path + ": `" + name + "` was read already from " + it.first->second);
      visit(name, std::move(t), path);
    };
    if (files.layout == WeightLayout::safetensors || files.layout == WeightLayout::safetensors_sharded)
      read_safetensors(path, pick, take);
    else
      read_torch_bin(path, pick, take);
  };
  if (files.owner.empty()) {
    read(files.files.at(0), want);
    return;
  }
  for (const std::string& path : files.files) {
    std::set<std::string> mine;
    for (const auto& kv : files.owner)
      if (kv.second == path && (!want || want(kv.first))) mine.insert(kv.first);
    if (mine.empty()) continue;  // nothing wanted here: not opened
    read(path, [&](const std::string& n) { return mine.count(n) != 0; });
    for (const std::string& n : mine)
      if (!seen.count(n)) throw std::runtime_error(path + ": does not hold `" + n + "`, which the index puts there");
  }
}

Weights load_weights(const WeightFiles& files, const std::function<bool(const std::string&)>& want) {
  Weights out;
  out.source = files.dir;
  for_each_weight(files, want, [&](const std::string& name, at::Tensor t, const std::string& path) {
    out.file[name] = path;
    out.tensors[name] = std::move(t);
  });
  return out;
}

bool janus_t2i_wants(const std::string& name) {
  if (starts_with(name, "language_model.model.")) return true;  // not language_model.lm_head (unused)
  return starts_with(name, "gen_embed.") || starts_with(name, "gen_aligner.") || starts_with(name, "gen_head.") ||
         VqDecoder::wants(name);
}

JanusWeightCheck::JanusWeightCheck(const JanusConfig& cfg, std::string source) : source_(std::move(source)) {
  const LlamaConfig& l = cfg.language;
  const std::string lm = "language_model.model.";
  const std::int64_t H = l.hidden_size, I = l.intermediate_size, q = l.num_attention_heads * l.head_dim,
                     kv = l.num_key_value_heads * l.head_dim;
  expect_[lm + "embed_tokens.weight"] = {l.vocab_size, H};
  for (std::int64_t i = 0; i < l.num_hidden_layers; ++i) {
    const std::string p = lm + "layers." + std::to_string(i) + ".";
    expect_[p + "input_layernorm.weight"] = {H};
    expect_[p + "self_attn.q_proj.weight"] = {q, H};
    expect_[p + "self_attn.k_proj.weight"] = {kv, H};
    expect_[p + "self_attn.v_proj.weight"] = {kv, H};
    expect_[p + "self_attn.o_proj.weight"] = {H, q};
    expect_[p + "post_attention_layernorm.weight"] = {H};
    expect_[p + "mlp.gate_proj.weight"] = {I, H};
    expect_[p + "mlp.up_proj.weight"] = {I, H};
    expect_[p + "mlp.down_proj.weight"] = {H, I};
  }
  expect_[lm + "norm.weight"] = {H};
  expect_["gen_embed.weight"] = {cfg.image_token_size, cfg.gen_embed_dim};
  // MlpProjector "mlp_gelu": Linear(input, n) then (GELU, Linear(n, n)) x (depth - 1): layers 0, 2, 4, ...
  for (std::int64_t d = 0; d < cfg.aligner_depth; ++d) {
    const std::string p = "gen_aligner.layers." + std::to_string(2 * d) + ".";
    expect_[p + "weight"] = {cfg.aligner_n_embed, d == 0 ? cfg.aligner_input_dim : cfg.aligner_n_embed};
    expect_[p + "bias"] = {cfg.aligner_n_embed};
  }
  expect_["gen_head.output_mlp_projector.weight"] = {cfg.head_image_token_embed, cfg.head_n_embed};
  expect_["gen_head.output_mlp_projector.bias"] = {cfg.head_image_token_embed};
  expect_["gen_head.vision_head.weight"] = {cfg.head_image_token_size, cfg.head_image_token_embed};
  expect_["gen_head.vision_head.bias"] = {cfg.head_image_token_size};
}

bool JanusWeightCheck::covers(const std::string& n) {
  return starts_with(n, "language_model.model.") || starts_with(n, "gen_embed.") || starts_with(n, "gen_aligner.") ||
         starts_with(n, "gen_head.");
}

bool JanusWeightCheck::check(const std::string& name, const at::Tensor& t, const std::string& file) {
  auto fail = [&](const std::string& what) { throw std::runtime_error(file + ": `" + name + "` " + what); };
  const auto e = expect_.find(name);
  if (e == expect_.end()) {
    const std::string buffer = ".rotary_emb.inv_freq";  // derived; older transformers saved it
    if (name.size() > buffer.size() && name.compare(name.size() - buffer.size(), buffer.size(), buffer) == 0) return false;
    if (covers(name)) fail("is not part of the model config.json describes (unexpected tensor)");
    return false;
  }
  if (!at::isFloatingType(t.scalar_type()))
    fail(std::string("has dtype ") + c10::toString(t.scalar_type()) + "; a floating-point dtype is required");
  if (t.sizes() != at::IntArrayRef(e->second))
    fail("has shape " + c10::str(t.sizes()) + ", config.json gives " + c10::str(at::IntArrayRef(e->second)));
  if (!all_finite(t)) fail("holds NaN or infinite values");
  seen_.insert(name);
  return true;
}

void JanusWeightCheck::finish() const {
  for (const auto& e : expect_)
    if (!seen_.count(e.first)) throw std::runtime_error(source_ + ": `" + e.first + "` is missing from the weights");
}

void check_janus_weights(const JanusConfig& cfg, const Weights& w) {
  JanusWeightCheck check(cfg, w.source);
  for (const auto& kv : w.tensors) check.check(kv.first, kv.second, w.where(kv.first));
  check.finish();
}

}  // namespace janus
