// examples/janus/pretrained.hpp - a published Janus-Pro directory loaded into the trainer's model
// (model.hpp) and the VQ-16 decoder (vq_decoder.hpp), and the `forward` command that checks it
// against other implementations.
//
// Loading streams: the model is allocated in its final dtype and device first, then each wanted
// tensor is read from disk, checked (config.json's shape, floating point, finite), copied into
// its parameter and dropped, so peak memory is the model plus one tensor plus the VQ decoder.
// The understanding side, the VQ encoder and the text head are never read.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "model.hpp"
#include "model_dir.hpp"
#include "vq_decoder.hpp"

namespace janus {

/// The trainer's ModelConfig for `c` with an image grid of grid_h x grid_w tokens (24 x 24 for
/// 384-pixel images) and no text head. The special token ids are 0 until a tokenizer sets them.
/// Throws std::invalid_argument naming config.json's key for what the trainer's model does
/// not express (grouped-query attention, a head_dim other than hidden / heads, an aligner
/// depth other than 2).
ModelConfig model_config_of(const JanusConfig& c, std::int64_t grid_h, std::int64_t grid_w);

struct PretrainedOptions {
  std::int64_t grid_h = 24, grid_w = 24;
  at::ScalarType dtype = at::kFloat;  ///< float32 or bfloat16 (model and VQ decoder)
  torch::Device device = torch::kCPU;
};

struct Pretrained {
  JanusConfig config;
  WeightFiles files;
  JanusModel model{nullptr};
  VqDecoder vq;
  std::int64_t tensors_read = 0;
  std::int64_t bytes_read = 0;  ///< as stored on disk
  double seconds = 0;
};

/// Loads `dir` (config.json and the weights in any of the four layouts). Throws
/// std::runtime_error naming the file and the tensor for anything missing, unexpected, of the
/// wrong shape or dtype, or not finite.
Pretrained load_pretrained(const std::string& dir, const PretrainedOptions& opt = {});

/// Only the VQ-16 decoder of `dir` (a run resumed from a checkpoint takes its language model
/// from the checkpoint and its picture decoder from the model directory): reads config.json and
/// only the decoder's tensors. Throws as load_pretrained.
VqDecoder load_vq_decoder(const std::string& dir, at::ScalarType dtype = at::kFloat, torch::Device device = torch::kCPU);

/// `janus_trainer forward`: reads `input` (safetensors: `prompt_ids` [B, L] int64 with BOS and
/// the <begin_of_image> column, right-padded; `attention_mask` [B, L] int64, 0 on pads;
/// `image_tokens` [B, N] int64), runs the model of `model_dir` in float32, and writes `output`
/// (atomically): `logits` [B, N, V] float32, the teacher-forced conditional logits of image
/// token t given the prompt and the image tokens before it, and `images` [B, H, W, 3] uint8,
/// the VQ decode of `image_tokens` post-processed as the trainer does. The grid is
/// `grid_h` x `grid_w` (0: the square root of N). Throws naming the file and the tensor.
void run_forward(const std::string& model_dir, const std::string& input, const std::string& output,
                 std::int64_t grid_h = 0, std::int64_t grid_w = 0, torch::Device device = torch::kCPU);

}  // namespace janus
