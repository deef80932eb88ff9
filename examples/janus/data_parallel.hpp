// examples/janus/data_parallel.hpp - the trainer's data parallelism on a dist::Communicator
// (issue 11): gradient buckets reduced while the backward runs, and the sharded optimizer
// (ZeRO stage 1-2 style). Built on the Communicator interface only, so the trainer's library
// compiles without Gloo's headers; the process group itself is distributed.hpp's.
//
// ## GradientSync: bucketed gradient sums overlapped with the backward
// The trainable parameters are laid out, in reverse order (the order the backward produces
// their gradients), in flat float32 buckets of at most `bucket_bytes` (PyTorch DDP's rule, 25 MiB
// by default; a parameter larger than a bucket has one of its own); each bucket is padded to a
// multiple of the world size. A hook on every parameter adds its gradient (cast to float32)
// into its bucket slot when the autograd engine produces it and releases the gradient the
// engine accumulated for the previous parameter, so the model's own gradients never exist whole
// (at most one parameter's). When a bucket's last parameter has arrived, and every bucket
// before it has been started, the bucket's sum over ranks is started asynchronously
// (Communicator::start_all_reduce_sum): the communication of early buckets overlaps the
// backward of later layers. Buckets are always started in bucket order, so every rank issues
// the same collectives in the same order whatever order its hooks fire in; finish() starts
// those still pending (a parameter that received no gradient counts as zero) and waits.
// The result is the SUM over ranks: the trainer divides its loss by the all-reduced
// normaliser (train.cpp), so no division happens here.
//
// Sharded (ZeRO-2): rank r keeps only shard r of every bucket (bucket numel / world size
// elements): while the backward runs, a started bucket is waited for as soon as the next one
// starts and cut down to its shard, so at most two full buckets exist at once, and after
// finish() only the shards remain. (Gloo in libtorch 1.13 has no reduce_scatter: a bucket is
// all-reduced and cut; NCCL would move 1/world of the bytes, see distributed.hpp.)
//
// ## ShardedAdamW: optimizer state and master weights sharded (ZeRO-1), updated shards gathered
// Rank r holds float32 master weights and AdamW's two moments for shard r of every bucket
// only (1/world of the optimizer's memory), steps torch::optim::AdamW on those shards (AdamW is
// elementwise: each element is updated exactly as the unsharded optimizer would update it),
// and all-gathers the updated shards into the model's parameters (rounded to their dtype).
// The gradient-norm clip uses the global norm: the sum of every rank's shard squares, gathered
// (the same value on every rank, equal to the unsharded norm up to summation order).
// Checkpoints keep the unsharded layout (per-parameter moments, steps and masters): shards are
// gathered for saving and cut again when loading, so a checkpoint resumes with any world size,
// sharded or not.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "distributed.hpp"

namespace janus::dp {

/// The key under which torch::optim keeps a parameter's state: a string of the TensorImpl
/// address in libtorch 1.x, the address itself in 2.x.
template <class Key>
Key optimizer_key(const torch::Tensor& p) {
  if constexpr (std::is_same<Key, std::string>::value) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return reinterpret_cast<Key>(p.unsafeGetTensorImpl());
  }
}

/// Where each parameter lives in the flat buckets (shared by GradientSync and ShardedAdamW).
struct BucketLayout {
  struct Bucket {
    std::vector<std::size_t> params;     ///< indices into the parameter list
    std::vector<std::int64_t> offsets;   ///< element offset of each in the flat bucket
    std::int64_t numel = 0;              ///< sum of the parameters' sizes
    std::int64_t padded = 0;             ///< numel rounded up to a multiple of the world size
    std::int64_t shard() const { return padded / world; }
    int world = 1;
  };
  std::vector<Bucket> buckets;
  std::vector<std::size_t> bucket_of;        ///< per parameter
  std::vector<std::size_t> index_in_bucket;  ///< per parameter

  /// Reverse parameter order, at most `bucket_bytes` of float32 per bucket (a larger parameter
  /// alone). Throws std::invalid_argument for bucket_bytes 0 or world < 1.
  static BucketLayout make(const std::vector<torch::Tensor>& params, std::size_t bucket_bytes, int world);
  /// `values[i]` (one tensor per parameter, any float dtype) laid out as bucket b (padding zero).
  torch::Tensor flatten(std::size_t b, const std::vector<torch::Tensor>& values) const;
  /// Copies flat bucket `flat` back into `values` (cast to their dtype).
  void unflatten(std::size_t b, const torch::Tensor& flat, const std::vector<torch::Tensor>& values) const;
};

class GradientSync {
 public:
  /// `params`: the trainable parameters (they must require grad). `shard`: keep only this
  /// rank's shard of every bucket (ZeRO-2).
  GradientSync(dist::Communicator& comm, std::vector<torch::Tensor> params, std::size_t bucket_bytes, bool shard);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  /// Before a backward: zeroed buckets, hooks armed. A backward run while not armed leaves the
  /// parameters' gradients to libtorch (as without data parallelism).
  void arm();
  /// After the backward: starts what is left, waits for every bucket, disarms. Unsharded:
  /// summed() holds each parameter's float32 gradient summed over ranks (views into the
  /// buckets). Sharded: shards() holds this rank's shard of each bucket. The parameters' own
  /// gradients are released either way. Throws std::runtime_error when a collective fails.
  void finish();
  /// Drops the buckets (and summed() / shards()) until the next arm().
  void release();

  const std::vector<torch::Tensor>& summed() const { return summed_; }
  const std::vector<torch::Tensor>& shards() const { return shards_; }
  const BucketLayout& layout() const { return layout_; }
  /// Collectives started while the backward was still running in the last backward (the
  /// overlap achieved), and in all.
  std::size_t started_during_backward() const { return started_early_; }
  std::size_t buckets() const { return layout_.buckets.size(); }

 private:
  void on_gradient(std::size_t i, const torch::Tensor& g);
  void start_ready(bool all);
  void cut(std::size_t b);
  torch::Tensor& bucket(std::size_t b);

  dist::Communicator& comm_;
  std::vector<torch::Tensor> params_;
  BucketLayout layout_;
  bool shard_;
  bool armed_ = false;
  bool finishing_ = false;
  std::vector<unsigned> hook_ids_;
  std::vector<torch::Tensor> flat_;
  std::vector<std::size_t> arrived_;       ///< per bucket
  std::vector<char> seen_;                 ///< per parameter, this backward
  std::vector<std::unique_ptr<dist::PendingCollective>> pending_;
  std::size_t next_start_ = 0, next_cut_ = 0;
  std::size_t started_early_ = 0;
  long previous_ = -1;  ///< the parameter whose engine-accumulated gradient is released next
  std::vector<torch::Tensor> summed_, shards_;
};

struct AdamWSettings {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class ShardedAdamW {
 public:
  /// Masters start as this rank's shards of `params` (in float32); the layout is `sync`'s.
  ShardedAdamW(dist::Communicator& comm, const BucketLayout& layout, const std::vector<torch::Tensor>& params,
               const AdamWSettings& settings);

  /// The global gradient norm of the shards in `sync` (every rank the same value).
  double grad_norm(const std::vector<torch::Tensor>& shard_grads) const;
  /// Clips with the global norm (max_norm > 0), steps AdamW on the shards at `lr`, checks that
  /// every rank's shards are finite (a collective; false when any is not: nothing was written
  /// to the parameters), then all-gathers the shards into `params`. Returns whether it did.
  bool step(const std::vector<torch::Tensor>& shard_grads, double grad_norm, double max_norm, double lr,
            const std::vector<torch::Tensor>& params);

  /// The unsharded state (collectives: every rank calls it): per parameter (in the order of
  /// the parameter list) its float32 master weight, exp_avg and exp_avg_sq, and the optimizer's
  /// step count (0 before the first step: then the moments are undefined). Only a rank with
  /// `keep` assembles it (the checkpoint writer); the others hold one bucket at a time and get
  /// the step count alone.
  struct Full {
    std::vector<torch::Tensor> master, exp_avg, exp_avg_sq;
    std::int64_t step = 0;
  };
  Full gather(bool keep = true) const;
  /// Takes this rank's shards of an unsharded state (no collective).
  void scatter(const Full& full);

  std::int64_t step_count() const;

 private:
  dist::Communicator& comm_;
  BucketLayout layout_;
  std::vector<torch::Tensor> master_;  ///< per bucket, this rank's shard
  std::unique_ptr<torch::optim::AdamW> adamw_;
  AdamWSettings settings_;
};

}  // namespace janus::dp
