// examples/janus/vq_decoder.cpp - the VQ-16 decoder (see vq_decoder.hpp).
#include "vq_decoder.hpp"

#include <cmath>
#include <set>
#include <stdexcept>

#include "safetensors.hpp"

namespace janus {

namespace {


bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

/// Reads the decoder's tensors out of a state dict, checking each one, and remembers which it took.
class Taker {
 public:
  Taker(const std::map<std::string, at::Tensor>& weights, std::string source, std::string prefix)
      : weights_(weights), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool has(const std::string& rel) const { return weights_.count(prefix_ + rel) != 0; }

  /// The tensor `<prefix>rel`; `shape` entries of -1 accept any extent.
  const at::Tensor& take(const std::string& rel, std::vector<std::int64_t> shape) {
    const std::string name = prefix_ + rel;
    const auto it = weights_.find(name);
    if (it == weights_.end()) fail(name, "is missing");
    const at::Tensor& t = it->second;
    if (!t.defined()) fail(name, "is undefined");
    if (!at::isFloatingType(t.scalar_type()))
      fail(name, std::string("has dtype ") + c10::toString(t.scalar_type()) + "; a floating-point dtype is required");
    bool ok = t.dim() == static_cast<std::int64_t>(shape.size());
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || t.size(static_cast<std::int64_t>(i)) == shape[i];
    if (!ok) {
      bool any = false;
      for (auto& e : shape)
        if (e < 0) e = 0, any = true;
      fail(name, "has shape " + c10::str(t.sizes()) + ", expected " + c10::str(at::IntArrayRef(shape)) +
                     (any ? " (0: any)" : ""));
    }
    if (!all_finite(t)) fail(name, "holds NaN or infinite values");
    taken_.insert(name);
    return t;
  }

  /// Every tensor under `<prefix>decoder.` must have been taken.
  void no_leftovers() const {
    for (const auto& kv : weights_)
      if (starts_with(kv.first, prefix_ + "decoder.") && !taken_.count(kv.first))
        fail(kv.first, "is not part of a VQ-16 decoder of the shape the other tensors give (unexpected tensor)");
  }

  [[noreturn]] void fail(const std::string& name, const std::string& what) const {
    throw std::runtime_error(source_ + ": VQ decoder tensor `" + name + "` " + what);
  }
  [[noreturn]] void fail_shape(const std::string& what) const {
    throw std::runtime_error(source_ + ": VQ decoder: " + what);
  }

 private:
  const std::map<std::string, at::Tensor>& weights_;
  std::string source_, prefix_;
  std::set<std::string> taken_;
};

void check_groups(const Taker& t, const std::string& where, std::int64_t channels) {
  if (channels <= 0 || channels % 32 != 0)
    t.fail_shape(where + " has " + std::to_string(channels) +
                 " channels: GroupNorm's 32 groups need a positive multiple of 32");
}

}  // namespace

bool VqDecoder::wants(const std::string& name, const std::string& prefix) {
  return name == prefix + "quantize.embedding.weight" || starts_with(name, prefix + "post_quant_conv.") ||
         starts_with(name, prefix + "decoder.");
}

std::vector<std::pair<std::string, std::vector<std::int64_t>>> VqDecoder::layout(const VqDecoderShape& s) {
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> out;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape) { out.emplace_back(name, std::move(shape)); };
  auto conv = [&](const std::string& rel, std::int64_t cout, std::int64_t cin, std::int64_t k) {
    add(rel + ".weight", {cout, cin, k, k});
    add(rel + ".bias", {cout});
  };
  auto norm = [&](const std::string& rel, std::int64_t c) {
    add(rel + ".weight", {c});
    add(rel + ".bias", {c});
  };
  auto resnet = [&](const std::string& rel, std::int64_t cin, std::int64_t cout) {
    norm(rel + ".norm1", cin);
    conv(rel + ".conv1", cout, cin, 3);
    norm(rel + ".norm2", cout);
    conv(rel + ".conv2", cout, cout, 3);
    if (cin != cout) conv(rel + ".nin_shortcut", cout, cin, 1);
  };
  auto attn = [&](const std::string& rel, std::int64_t c) {
    norm(rel + ".norm", c);
    for (const char* p : {"q", "k", "v", "proj_out"}) conv(rel + "." + p, c, c, 1);
  };
  add("quantize.embedding.weight", {s.codebook_size, s.embed_dim});
  conv("post_quant_conv", s.z_channels, s.embed_dim, 1);
  conv("decoder.conv_in", s.mid_channels, s.z_channels, 3);
  resnet("decoder.mid.0", s.mid_channels, s.mid_channels);
  attn("decoder.mid.1", s.mid_channels);
  resnet("decoder.mid.2", s.mid_channels, s.mid_channels);
  std::int64_t cin = s.mid_channels;
  const std::size_t levels = s.block_channels.size();
  for (std::size_t i = 0; i < levels; ++i) {
    const std::string block = "decoder.conv_blocks." + std::to_string(i);
    const std::int64_t cout = s.block_channels[i];
    for (std::int64_t r = 0; r < s.res_per_block; ++r) {
      resnet(block + ".res." + std::to_string(r), cin, cout);
      cin = cout;
      if (i == 0) attn(block + ".attn." + std::to_string(r), cout);
    }
    if (i + 1 != levels) conv(block + ".upsample.conv", cout, cout, 3);
  }
  norm("decoder.norm_out", cin);
  conv("decoder.conv_out", 3, cin, 3);
  return out;
}

VqDecoderShape VqDecoderShape::vq16() {
  VqDecoderShape s;
  s.codebook_size = 16384;
  s.embed_dim = 8;
  s.z_channels = 256;
  s.mid_channels = 512;                        // ch 128 x ch_mult[-1] 4
  s.block_channels = {512, 256, 256, 128, 128};  // ch 128 x ch_mult (1, 1, 2, 2, 4), deepest first
  s.res_per_block = 3;
  return s;
}

VqDecoder VqDecoder::load(const std::map<std::string, at::Tensor>& weights, const std::string& source,
                          at::ScalarType dtype, at::Device device, const std::string& prefix) {
  if (dtype != at::kFloat && dtype != at::kBFloat16)
    throw std::invalid_argument(std::string("VqDecoder::load: dtype ") + c10::toString(dtype) +
                                " is not supported (float32 or bfloat16)");
  Taker t(weights, source, prefix);
  VqDecoder d;
  d.dtype_ = dtype;
  d.device_ = device;
  VqDecoderShape& s = d.shape_;
  // The widths, from the tensors that give them; then every tensor against the whole layout.
  const at::Tensor& emb = t.take("quantize.embedding.weight", {-1, -1});
  s.codebook_size = emb.size(0);
  s.embed_dim = emb.size(1);
  if (s.codebook_size == 0 || s.embed_dim == 0)
    t.fail(prefix + "quantize.embedding.weight", "is empty (shape " + c10::str(emb.sizes()) + ")");
  s.z_channels = t.take("post_quant_conv.weight", {-1, s.embed_dim, 1, 1}).size(0);
  s.mid_channels = t.take("decoder.conv_in.weight", {-1, s.z_channels, 3, 3}).size(0);
  std::int64_t levels = 0;
  while (t.has("decoder.conv_blocks." + std::to_string(levels) + ".res.0.conv1.weight")) ++levels;
  if (levels == 0) t.fail(prefix + "decoder.conv_blocks.0.res.0.conv1.weight", "is missing (no decoder blocks)");
  if (levels > 8) t.fail_shape(std::to_string(levels) + " decoder blocks: at most 8 are supported");
  while (t.has("decoder.conv_blocks.0.res." + std::to_string(s.res_per_block) + ".conv1.weight")) ++s.res_per_block;
  std::int64_t cin = s.mid_channels;
  check_groups(t, "decoder.conv_in", cin);
  for (std::int64_t i = 0; i < levels; ++i) {
    const std::string block = "decoder.conv_blocks." + std::to_string(i);
    s.block_channels.push_back(t.take(block + ".res.0.conv1.weight", {-1, cin, 3, 3}).size(0));
    cin = s.block_channels.back();
    check_groups(t, block, cin);
  }
  for (const auto& e : layout(s)) d.w_[e.first] = t.take(e.first, e.second).to(device, dtype).contiguous();
  t.no_leftovers();
  return d;
}

const at::Tensor& VqDecoder::w(const std::string& name) const {
  const auto it = w_.find(name);
  if (it == w_.end()) throw std::logic_error("VqDecoder: no tensor " + name);  // load() took them all
  return it->second;
}

namespace {

at::Tensor swish(const at::Tensor& x) { return x * at::sigmoid(x); }

}  // namespace

at::Tensor VqDecoder::resnet(const at::Tensor& x, const std::string& name) const {
  at::Tensor h = swish(at::group_norm(x, 32, w(name + ".norm1.weight"), w(name + ".norm1.bias"), 1e-6));
  h = at::conv2d(h, w(name + ".conv1.weight"), w(name + ".conv1.bias"), 1, 1);
  h = swish(at::group_norm(h, 32, w(name + ".norm2.weight"), w(name + ".norm2.bias"), 1e-6));
  h = at::conv2d(h, w(name + ".conv2.weight"), w(name + ".conv2.bias"), 1, 1);
  const auto sc = w_.find(name + ".nin_shortcut.weight");
  const at::Tensor skip = sc == w_.end() ? x : at::conv2d(x, sc->second, w(name + ".nin_shortcut.bias"));
  return skip + h;
}

at::Tensor VqDecoder::attention(const at::Tensor& x, const std::string& name) const {
  const at::Tensor h = at::group_norm(x, 32, w(name + ".norm.weight"), w(name + ".norm.bias"), 1e-6);
  const std::int64_t b = x.size(0), c = x.size(1), hh = x.size(2), ww = x.size(3);
  const at::Tensor q = at::conv2d(h, w(name + ".q.weight"), w(name + ".q.bias")).reshape({b, c, hh * ww}).permute({0, 2, 1});
  const at::Tensor k = at::conv2d(h, w(name + ".k.weight"), w(name + ".k.bias")).reshape({b, c, hh * ww});
  const at::Tensor v = at::conv2d(h, w(name + ".v.weight"), w(name + ".v.bias")).reshape({b, c, hh * ww});
  // scores[b, query, key] = q . k / sqrt(c), softmax over the keys
  const at::Tensor a = at::softmax(at::bmm(q, k) * std::pow(static_cast<double>(c), -0.5), 2);
  const at::Tensor out = at::bmm(v, a.permute({0, 2, 1})).reshape({b, c, hh, ww});
  return x + at::conv2d(out, w(name + ".proj_out.weight"), w(name + ".proj_out.bias"));
}

at::Tensor VqDecoder::decode(const at::Tensor& tokens, std::int64_t grid_h, std::int64_t grid_w) const {
  if (!tokens.defined() || tokens.dim() != 2)
    throw std::invalid_argument("VqDecoder::decode: `tokens` must be [B, grid_h * grid_w]");
  if (tokens.scalar_type() != at::kLong && tokens.scalar_type() != at::kInt)
    throw std::invalid_argument(std::string("VqDecoder::decode: `tokens` has dtype ") +
                                c10::toString(tokens.scalar_type()) + "; int64 or int32 is required");
  if (grid_h <= 0 || grid_w <= 0 || grid_h > (std::int64_t{1} << 20) || grid_w > (std::int64_t{1} << 20) ||
      tokens.size(1) != grid_h * grid_w)
    throw std::invalid_argument("VqDecoder::decode: `tokens` has " + std::to_string(tokens.size(1)) +
                                " tokens per image, the grid " + std::to_string(grid_h) + " x " +
                                std::to_string(grid_w) + " needs " + std::to_string(grid_h * grid_w));
  const std::int64_t B = tokens.size(0);
  const at::Tensor ids = tokens.to(device_, at::kLong).reshape({-1});
  if (ids.numel()) {
    const at::Tensor bad = (ids < 0).logical_or(ids >= shape_.codebook_size).nonzero();
    if (bad.numel()) {
      const std::int64_t i = bad[0][0].item<std::int64_t>();
      throw std::invalid_argument("VqDecoder::decode: `tokens[" + std::to_string(i / tokens.size(1)) + ", " +
                                  std::to_string(i % tokens.size(1)) + "]` is " +
                                  std::to_string(ids[i].item<std::int64_t>()) + ", outside the codebook [0, " +
                                  std::to_string(shape_.codebook_size) + ")");
    }
  }
  at::NoGradGuard no_grad;
  // F.normalize(E, p=2, dim=-1, eps=1e-12) = E / max(||E||, eps), in the model's dtype as there
  const at::Tensor& e = w("quantize.embedding.weight");
  const at::Tensor en = e / e.norm(2, {1}, true).clamp_min(1e-12);
  at::Tensor h = en.index_select(0, ids).reshape({B, grid_h, grid_w, shape_.embed_dim}).permute({0, 3, 1, 2}).contiguous();
  h = at::conv2d(h, w("post_quant_conv.weight"), w("post_quant_conv.bias"));
  h = at::conv2d(h, w("decoder.conv_in.weight"), w("decoder.conv_in.bias"), 1, 1);
  h = resnet(h, "decoder.mid.0");
  h = attention(h, "decoder.mid.1");
  h = resnet(h, "decoder.mid.2");
  const std::int64_t levels = static_cast<std::int64_t>(shape_.block_channels.size());
  for (std::int64_t i = 0; i < levels; ++i) {
    const std::string block = "decoder.conv_blocks." + std::to_string(i);
    for (std::int64_t r = 0; r < shape_.res_per_block; ++r) {
      h = resnet(h, block + ".res." + std::to_string(r));
      if (i == 0) h = attention(h, block + ".attn." + std::to_string(r));
    }
    if (i != levels - 1) {
      // nearest x2; the official Upsample runs it in float32 for other dtypes and casts to bfloat16
      const at::Tensor up = at::upsample_nearest2d(h.to(at::kFloat), {h.size(2) * 2, h.size(3) * 2});
      h = at::conv2d(up.to(dtype_), w(block + ".upsample.conv.weight"), w(block + ".upsample.conv.bias"), 1, 1);
    }
  }
  h = swish(at::group_norm(h, 32, w("decoder.norm_out.weight"), w("decoder.norm_out.bias"), 1e-6));
  h = at::conv2d(h, w("decoder.conv_out.weight"), w("decoder.conv_out.bias"), 1, 1);
  return h.to(at::kFloat);
}

at::Tensor VqDecoder::to_uint8_images(const at::Tensor& decoded) {
  if (!decoded.defined() || decoded.dim() != 4 || decoded.size(1) != 3)
    throw std::invalid_argument("VqDecoder::to_uint8_images: `decoded` must be [B, 3, H, W]");
  // in float32 and in numpy's order: (x + 1) / 2 * 255, clipped, truncated toward zero
  const at::Tensor x = decoded.to(at::kCPU, at::kFloat).permute({0, 2, 3, 1});
  return ((x + 1.0) / 2.0 * 255.0).clamp(0.0, 255.0).to(at::kByte).contiguous();
}

}  // namespace janus
