// examples/janus/data_parallel.cpp - see data_parallel.hpp.
#include "data_parallel.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace janus::dp {

// ---- BucketLayout -----------------------------------------------------------------------------

BucketLayout BucketLayout::make(const std::vector<torch::Tensor>& params, std::size_t bucket_bytes, int world) {
  if (bucket_bytes == 0) throw std::invalid_argument("janus::dp: bucket_bytes must be positive");
  if (world < 1) throw std::invalid_argument("janus::dp: world size must be >= 1");
  const auto capacity = static_cast<std::int64_t>(std::max<std::size_t>(bucket_bytes / sizeof(float), 1));
  BucketLayout l;
  l.bucket_of.assign(params.size(), 0);
  l.index_in_bucket.assign(params.size(), 0);
  auto close = [&] {
    if (l.buckets.empty() || l.buckets.back().params.empty()) return;
    Bucket& b = l.buckets.back();
    b.world = world;
    b.padded = (b.numel + world - 1) / world * world;
  };
  l.buckets.emplace_back();
  for (std::size_t k = params.size(); k-- > 0;) {
    const std::int64_t n = params[k].numel();
    if (!l.buckets.back().params.empty() && l.buckets.back().numel + n > capacity) {
      close();
      l.buckets.emplace_back();
    }
    Bucket& b = l.buckets.back();
    l.bucket_of[k] = l.buckets.size() - 1;
    l.index_in_bucket[k] = b.params.size();
    b.params.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += n;
  }
  close();
  if (l.buckets.back().params.empty()) l.buckets.pop_back();
  return l;
}

torch::Tensor BucketLayout::flatten(std::size_t b, const std::vector<torch::Tensor>& values) const {
  torch::NoGradGuard ng;
  const Bucket& bk = buckets.at(b);
  torch::Tensor flat =
      torch::zeros({bk.padded}, torch::TensorOptions().dtype(torch::kFloat).device(values.at(bk.params.front()).device()));
  for (std::size_t j = 0; j < bk.params.size(); ++j) {
    const torch::Tensor& v = values.at(bk.params[j]);
    flat.narrow(0, bk.offsets[j], v.numel()).view(v.sizes()).copy_(v);
  }
  return flat;
}

void BucketLayout::unflatten(std::size_t b, const torch::Tensor& flat, const std::vector<torch::Tensor>& values) const {
  torch::NoGradGuard ng;
  const Bucket& bk = buckets.at(b);
  for (std::size_t j = 0; j < bk.params.size(); ++j) {
    const torch::Tensor& v = values.at(bk.params[j]);
    v.copy_(flat.narrow(0, bk.offsets[j], v.numel()).view(v.sizes()));
  }
}

// ---- GradientSync -----------------------------------------------------------------------------

GradientSync::GradientSync(dist::Communicator& comm, std::vector<torch::Tensor> params, std::size_t bucket_bytes,
                           bool shard)
    : comm_(comm), params_(std::move(params)), shard_(shard) {
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (!params_[i].requires_grad())
      throw std::invalid_argument("janus::dp::GradientSync: parameter " + std::to_string(i) + " does not require grad");
  layout_ = BucketLayout::make(params_, bucket_bytes, comm_.world_size());
  for (std::size_t i = 0; i < params_.size(); ++i)
    hook_ids_.push_back(params_[i].register_hook([this, i](const torch::Tensor& g) { on_gradient(i, g); }));
}

GradientSync::~GradientSync() {
  for (std::size_t i = 0; i < params_.size(); ++i) params_[i].remove_hook(hook_ids_[i]);
}

void GradientSync::arm() {
  const std::size_t B = layout_.buckets.size();
  flat_.assign(B, torch::Tensor());  // each allocated when its first gradient arrives (bucket())
  arrived_.assign(B, 0);
  seen_.assign(params_.size(), 0);
  pending_.clear();
  pending_.resize(B);
  shards_.assign(B, torch::Tensor());
  summed_.clear();
  next_start_ = next_cut_ = 0;
  started_early_ = 0;
  previous_ = -1;
  armed_ = true;
}

void GradientSync::on_gradient(std::size_t i, const torch::Tensor& g) {
  if (!armed_) return;
  if (seen_[i])
    throw std::logic_error("janus::dp::GradientSync: parameter " + std::to_string(i) +
                           " received a second gradient in one backward (its bucket may already be reduced)");
  seen_[i] = 1;
  torch::NoGradGuard ng;
  const std::size_t b = layout_.bucket_of[i];
  const auto& bk = layout_.buckets[b];
  bucket(b).narrow(0, bk.offsets[layout_.index_in_bucket[i]], g.numel()).view(g.sizes()).add_(g);
  // The engine stores g as this parameter's gradient right after this hook; the previous
  // parameter's stored gradient, already in its bucket, is not needed any more.
  if (previous_ >= 0) params_[static_cast<std::size_t>(previous_)].mutable_grad().reset();
  previous_ = static_cast<long>(i);
  if (++arrived_[b] == bk.params.size()) start_ready(false);
}

void GradientSync::start_ready(bool all) {
  const std::size_t B = layout_.buckets.size();
  while (next_start_ < B && (all || arrived_[next_start_] == layout_.buckets[next_start_].params.size())) {
    pending_[next_start_] = comm_.start_all_reduce_sum(bucket(next_start_));
    if (!finishing_) ++started_early_;
    ++next_start_;
    // Sharded: the bucket before the one just started is waited for and cut to its shard.
    if (shard_ && !all)
      while (next_cut_ + 1 < next_start_) cut(next_cut_++);
  }
}

torch::Tensor& GradientSync::bucket(std::size_t b) {
  // Allocated on first use, so that with sharding the full-size buckets exist only between
  // their first gradient and their cut: at most two at a time, not the whole gradient.
  if (!flat_[b].defined())
    flat_[b] = torch::zeros({layout_.buckets[b].padded},
                            torch::TensorOptions().dtype(torch::kFloat).device(params_.front().device()));
  return flat_[b];
}

void GradientSync::cut(std::size_t b) {
  pending_[b]->wait();
  pending_[b].reset();
  if (shard_) {
    const std::int64_t S = layout_.buckets[b].shard();
    shards_[b] = flat_[b].narrow(0, comm_.rank() * S, S).clone();
    flat_[b] = torch::Tensor();
  }
}

void GradientSync::finish() {
  if (!armed_) throw std::logic_error("janus::dp::GradientSync::finish without arm()");
  finishing_ = true;
  try {
    start_ready(true);
    for (auto& p : params_) p.mutable_grad().reset();
    for (; next_cut_ < layout_.buckets.size(); ++next_cut_) cut(next_cut_);
  } catch (...) {
    finishing_ = false;
    armed_ = false;
    throw;
  }
  finishing_ = false;
  armed_ = false;
  if (!shard_) {
    summed_.assign(params_.size(), torch::Tensor());
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const std::size_t b = layout_.bucket_of[i];
      summed_[i] = flat_[b]
                       .narrow(0, layout_.buckets[b].offsets[layout_.index_in_bucket[i]], params_[i].numel())
                       .view(params_[i].sizes());
    }
  }
}

void GradientSync::release() {
  flat_.clear();
  summed_.clear();
  shards_.clear();
  pending_.clear();
}

// ---- ShardedAdamW -----------------------------------------------------------------------------

ShardedAdamW::ShardedAdamW(dist::Communicator& comm, const BucketLayout& layout, const std::vector<torch::Tensor>& params,
                           const AdamWSettings& settings)
    : comm_(comm), layout_(layout), settings_(settings) {
  for (std::size_t b = 0; b < layout_.buckets.size(); ++b) {
    const std::int64_t S = layout_.buckets[b].shard();
    master_.push_back(layout_.flatten(b, params).narrow(0, comm_.rank() * S, S).clone());
  }
  torch::optim::AdamWOptions o(settings.lr);
  o.betas(std::make_tuple(settings.beta1, settings.beta2)).eps(settings.eps).weight_decay(settings.weight_decay);
  adamw_ = std::make_unique<torch::optim::AdamW>(master_, o);
}

double ShardedAdamW::grad_norm(const std::vector<torch::Tensor>& shard_grads) const {
  double local = 0;
  for (const auto& g : shard_grads)
    if (g.defined()) local += g.to(torch::kDouble).pow(2).sum().item<double>();
  const auto all = comm_.all_gather(std::vector<double>{local});
  double total = 0;
  for (const auto& v : all) total += v.at(0);  // rank order: the same sum on every rank
  return std::sqrt(total);
}

bool ShardedAdamW::step(const std::vector<torch::Tensor>& shard_grads, double grad_norm, double max_norm, double lr,
                        const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard ng;
  // torch::nn::utils::clip_grad_norm_'s rule, with the global norm
  const double coef = max_norm > 0 ? max_norm / (grad_norm + 1e-6) : 1.0;
  for (std::size_t b = 0; b < master_.size(); ++b) {
    torch::Tensor g = shard_grads.at(b);
    if (coef < 1) g.mul_(coef);
    master_[b].mutable_grad() = g;
  }
  for (auto& group : adamw_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  adamw_->step();
  for (auto& m : master_) m.mutable_grad().reset();
  std::int64_t finite = 1;
  for (const auto& m : master_) finite = finite && torch::isfinite(m).all().item<bool>() ? 1 : 0;
  for (const auto& v : comm_.all_gather(std::vector<std::int64_t>{finite}))
    if (v.at(0) == 0) return false;
  for (std::size_t b = 0; b < master_.size(); ++b) {
    torch::Tensor full = torch::empty({layout_.buckets[b].padded}, master_[b].options());
    comm_.all_gather(master_[b], full);
    layout_.unflatten(b, full, params);
  }
  return true;
}

std::int64_t ShardedAdamW::step_count() const {
  auto& state = adamw_->state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  if (master_.empty()) return 0;
  const auto it = state.find(optimizer_key<Key>(master_.front()));
  return it == state.end() ? 0 : static_cast<const torch::optim::AdamWParamState&>(*it->second).step();
}

ShardedAdamW::Full ShardedAdamW::gather(bool keep) const {
  torch::NoGradGuard ng;
  Full f;
  f.step = step_count();
  std::size_t n = 0;
  for (const auto& bk : layout_.buckets) n += bk.params.size();
  f.master.assign(n, torch::Tensor());
  if (f.step > 0) {
    f.exp_avg.assign(n, torch::Tensor());
    f.exp_avg_sq.assign(n, torch::Tensor());
  }
  auto& state = adamw_->state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  auto gather_into = [&](std::size_t b, const torch::Tensor& shard, std::vector<torch::Tensor>& out) {
    const auto& bk = layout_.buckets[b];
    torch::Tensor full = torch::empty({bk.padded}, shard.options());
    comm_.all_gather(shard.contiguous(), full);
    if (!keep) return;
    for (std::size_t j = 0; j < bk.params.size(); ++j) {
      // the parameter's shape is not known here: the caller reshapes (flat views, cloned)
      const std::int64_t end = j + 1 < bk.params.size() ? bk.offsets[j + 1] : bk.numel;
      out[bk.params[j]] = full.narrow(0, bk.offsets[j], end - bk.offsets[j]).clone();
    }
  };
  for (std::size_t b = 0; b < layout_.buckets.size(); ++b) {
    gather_into(b, master_[b], f.master);
    if (f.step > 0) {
      const auto& s =
          static_cast<const torch::optim::AdamWParamState&>(*state.at(optimizer_key<Key>(master_[b])));
      gather_into(b, s.exp_avg(), f.exp_avg);
      gather_into(b, s.exp_avg_sq(), f.exp_avg_sq);
    }
  }
  return f;
}

void ShardedAdamW::scatter(const Full& full) {
  torch::NoGradGuard ng;
  auto& state = adamw_->state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  state.clear();
  for (std::size_t b = 0; b < layout_.buckets.size(); ++b) {
    const std::int64_t S = layout_.buckets[b].shard(), first = comm_.rank() * S;
    master_[b].copy_(layout_.flatten(b, full.master).narrow(0, first, S));
    if (full.step > 0) {
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(full.step);
      s->exp_avg(layout_.flatten(b, full.exp_avg).narrow(0, first, S).clone());
      s->exp_avg_sq(layout_.flatten(b, full.exp_avg_sq).narrow(0, first, S).clone());
      state[optimizer_key<Key>(master_[b])] = std::move(s);
    }
  }
}

}  // namespace janus::dp
