// examples/janus/vq_decoder.hpp - Janus-Pro's VQ-16 image decoder (`gen_vision_model`'s decode side)
// in libtorch: image tokens [B, h * w] to RGB images, as the official `decode_code` and the
// trainer's post-processing do (shared/spec/janus-trainer.md sections 1.4 and 2.7).
//
//   E = l2_normalize(quantize.embedding.weight, dim -1); z = E[tokens] as [B, h, w, D] -> [B, D, h, w]
//   post_quant_conv (1x1, D -> z_channels)
//   decoder: conv_in (3x3) -> mid [Resnet, Attn, Resnet] -> conv_blocks[0..L-1] (deepest level
//            first; num_res_blocks + 1 Resnets each, an Attn after each Resnet of block 0, nearest
//            x2 upsample + 3x3 conv after every block but the last) -> GroupNorm -> swish -> conv_out
//   image:   NHWC, clip((x + 1) / 2 * 255, 0, 255), truncated toward zero into uint8
//
// The layer widths are read from the tensors' shapes (the published model: codebook 16384 x 8,
// z_channels 256, widths 512/512/256/256/128 from ch 128 x ch_mult (1, 1, 2, 2, 4), 2 res blocks,
// five levels: 24 x 24 tokens -> 384 x 384 pixels), so a small checkpoint in the same layout
// loads the same way. Every tensor is checked (present, floating, shape, finite) and every
// error names the tensor and where it came from. Frozen: no gradients, no optimizer state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

namespace janus {

/// What the decoder's tensors say about its architecture.
struct VqDecoderShape {
  std::int64_t codebook_size = 0;  ///< K: image token ids are 0..K-1
  std::int64_t embed_dim = 0;      ///< D: codebook entry width
  std::int64_t z_channels = 0;     ///< post_quant_conv's output, conv_in's input
  std::int64_t mid_channels = 0;   ///< conv_in's output: the width of mid and of block 0's input
  std::vector<std::int64_t> block_channels;  ///< output width of conv_blocks[i], deepest level first
  std::int64_t res_per_block = 0;  ///< num_res_blocks + 1
  /// Pixels per token along each side: 2^(levels - 1) (16 for VQ-16).
  std::int64_t upsample() const { return std::int64_t{1} << (block_channels.size() - 1); }
  /// The published VQ-16 (VQ ModelArgs defaults: codebook 16384 x 8, z 256, ch 128, ch_mult (1, 1, 2, 2, 4)).
  static VqDecoderShape vq16();
};

class VqDecoder {
 public:
  /// True for the tensors a decoder takes from a Janus-Pro state dict (`<prefix>quantize.embedding.weight`,
  /// `<prefix>post_quant_conv.*`, `<prefix>decoder.*`): a streaming loader reads only these.
  static bool wants(const std::string& name, const std::string& prefix = "gen_vision_model.");

  /// Takes the decoder's tensors from `weights` (others are ignored; `quantize.codebook_used`
  /// and the encoder side are not the decoder's). Throws std::runtime_error naming `source`
  /// (the file or directory) and the tensor when one is missing, unexpected under
  /// `<prefix>decoder.`, not floating point, of the wrong shape or not finite, or when a width
  /// is not a multiple of GroupNorm's 32 groups. The tensors are converted to `dtype`
  /// (float32 or bfloat16) on `device`.
  static VqDecoder load(const std::map<std::string, at::Tensor>& weights, const std::string& source,
                        at::ScalarType dtype = at::kFloat, at::Device device = at::kCPU,
                        const std::string& prefix = "gen_vision_model.");

  /// Every tensor of a decoder of shape `s` (names relative to the prefix) with its shape, in the
  /// official module order.
  static std::vector<std::pair<std::string, std::vector<std::int64_t>>> layout(const VqDecoderShape& s);

  const VqDecoderShape& shape() const { return shape_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }

  /// Decodes `tokens` [B, grid_h * grid_w] (int64 or int32, row-major grid: token k is row
  /// k / grid_w, column k % grid_w) into float32 [B, 3, grid_h * up, grid_w * up], nominally in
  /// [-1, 1], computed in the decoder's dtype (in bfloat16, each upsample runs in float32 and
  /// casts back, as the official Upsample does). Throws std::invalid_argument naming `tokens`
  /// for a wrong rank, size or dtype, or an id outside [0, codebook_size).
  at::Tensor decode(const at::Tensor& tokens, std::int64_t grid_h, std::int64_t grid_w) const;

  /// The trainer's post-processing: [B, 3, H, W] -> [B, H, W, 3] uint8 of
  /// clip((x + 1) / 2 * 255, 0, 255) truncated toward zero (numpy's float -> uint8), on the CPU.
  static at::Tensor to_uint8_images(const at::Tensor& decoded);

 private:
  const at::Tensor& w(const std::string& name) const;
  at::Tensor resnet(const at::Tensor& x, const std::string& name) const;
  at::Tensor attention(const at::Tensor& x, const std::string& name) const;

  VqDecoderShape shape_;
  std::map<std::string, at::Tensor> w_;  ///< by name relative to the prefix
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
};

}  // namespace janus
