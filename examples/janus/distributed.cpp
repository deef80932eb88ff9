// examples/janus/distributed.cpp - see distributed.hpp. c10d's headers need USE_C10D_GLOO
// (and USE_C10D_NCCL for NCCL), defined for this file only by trainer.cmake.
#include "distributed.hpp"

#include <torch/torch.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <utility>

#ifndef USE_C10D_GLOO
#error "distributed.cpp needs USE_C10D_GLOO (set by trainer.cmake) to see c10d::ProcessGroupGloo"
#endif

namespace janus::dist {
namespace {

// A plain decimal integer in [lo, hi] ("12", "-1"; not "", " 1", "1x", "0x10").
long parse_integer(const char* name, const char* text, long lo, long hi) {
  const std::string value = text;
  bool plain = !value.empty();
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (!((c >= '0' && c <= '9') || (i == 0 && c == '-' && value.size() > 1))) plain = false;
  }
  if (!plain) {
    throw std::invalid_argument(std::string("environment variable ") + name + " (\"" + value +
                                "\") must be a decimal integer");
  }
  errno = 0;
  const long parsed = std::strtol(value.c_str(), nullptr, 10);
  if (errno == ERANGE || parsed < lo || parsed > hi) {
    throw std::invalid_argument(std::string("environment variable ") + name + " (" + value +
                                ") must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "]");
  }
  return parsed;
}

std::string seconds(std::chrono::milliseconds t) {
  std::ostringstream s;
  s << static_cast<double>(t.count()) / 1000.0 << " s";
  return s.str();
}

// c10::Error's what() carries a C++ backtrace; keep the message alone.
std::string message_of(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

/// A flat tensor of `world_size` shards (`full`) and one shard (`shard`) of a reduce-scatter or an
/// all-gather: both flat and contiguous, one dtype, full.numel() = world_size * shard.numel().
void check_shards(const char* op, const at::Tensor& full, const char* full_name, const at::Tensor& shard,
                  const char* shard_name, int world_size) {
  const std::string where = std::string("janus::dist::") + op + ": ";
  if (full.dim() != 1 || shard.dim() != 1 || !full.is_contiguous() || !shard.is_contiguous())
    throw std::invalid_argument(where + "input and output must be flat contiguous tensors");
  if (full.scalar_type() != shard.scalar_type())
    throw std::invalid_argument(where + "output dtype must equal input dtype");
  if (full.numel() != shard.numel() * world_size)
    throw std::invalid_argument(where + full_name + ".numel() (" + std::to_string(full.numel()) +
                                ") must equal world_size (" + std::to_string(world_size) + ") * " + shard_name +
                                ".numel() (" + std::to_string(shard.numel()) + ")");
}

}  // namespace

std::optional<LaunchEnv> LaunchEnv::from_lookup(const std::function<const char*(const char*)>& get) {
  static const char* const names[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                      "MASTER_PORT"};
  std::vector<std::string> set, unset;
  for (const char* name : names) (get(name) != nullptr ? set : unset).emplace_back(name);
  if (set.empty()) return std::nullopt;
  if (!unset.empty()) {
    std::string missing, present;
    for (const auto& n : unset) missing += (missing.empty() ? "" : ", ") + n;
    for (const auto& n : set) present += (present.empty() ? "" : ", ") + n;
    throw std::invalid_argument("environment variable " + missing + " not set, but " + present +
                                " set: a distributed launch (torchrun, scripts/launch.sh, srun) sets all of "
                                "RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT");
  }
  LaunchEnv env;
  env.world_size = static_cast<int>(parse_integer("WORLD_SIZE", get("WORLD_SIZE"), 1, INT_MAX));
  env.rank = static_cast<int>(parse_integer("RANK", get("RANK"), 0, INT_MAX));
  if (env.rank >= env.world_size) {
    throw std::invalid_argument("environment variable RANK (" + std::to_string(env.rank) +
                                ") must be less than WORLD_SIZE (" + std::to_string(env.world_size) + ")");
  }
  env.local_world_size = static_cast<int>(parse_integer("LOCAL_WORLD_SIZE", get("LOCAL_WORLD_SIZE"), 1, INT_MAX));
  if (env.local_world_size > env.world_size) {
    throw std::invalid_argument("environment variable LOCAL_WORLD_SIZE (" + std::to_string(env.local_world_size) +
                                ") must not exceed WORLD_SIZE (" + std::to_string(env.world_size) + ")");
  }
  env.local_rank = static_cast<int>(parse_integer("LOCAL_RANK", get("LOCAL_RANK"), 0, INT_MAX));
  if (env.local_rank >= env.local_world_size) {
    throw std::invalid_argument("environment variable LOCAL_RANK (" + std::to_string(env.local_rank) +
                                ") must be less than LOCAL_WORLD_SIZE (" + std::to_string(env.local_world_size) +
                                ")");
  }
  env.master_addr = get("MASTER_ADDR");
  if (env.master_addr.empty()) throw std::invalid_argument("environment variable MASTER_ADDR is empty");
  env.master_port = static_cast<int>(parse_integer("MASTER_PORT", get("MASTER_PORT"), 1, 65535));

  if (const char* agent = get("TORCHELASTIC_USE_AGENT_STORE")) {
    const std::string value = agent;
    if (value == "True") {
      env.use_agent_store = true;
    } else if (value != "False") {
      throw std::invalid_argument("environment variable TORCHELASTIC_USE_AGENT_STORE (\"" + value +
                                  "\") must be True or False");
    }
  }
  if (const char* restarts = get("TORCHELASTIC_RESTART_COUNT")) {
    env.restart_count = static_cast<int>(parse_integer("TORCHELASTIC_RESTART_COUNT", restarts, 0, INT_MAX));
  } else if (env.use_agent_store) {
    throw std::invalid_argument(
        "environment variable TORCHELASTIC_RESTART_COUNT not set, but TORCHELASTIC_USE_AGENT_STORE is True");
  }
  return env;
}

std::optional<LaunchEnv> LaunchEnv::from_environment() {
  return from_lookup([](const char* name) -> const char* { return std::getenv(name); });
}

struct ProcessGroup::Impl {
  LaunchEnv env;
  Options options;
  std::string backend;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;

  [[noreturn]] void fail(const std::string& operation, const std::string& cause) const {
    throw std::runtime_error("janus::dist: " + operation + " failed on rank " + std::to_string(env.rank) + " of " +
                             std::to_string(env.world_size) + " (backend " + backend + ", timeout " +
                             seconds(options.timeout) + "; a peer rank died, stopped calling collectives or " +
                             "never arrived): " + cause);
  }

  // Issues one collective and waits for it, at most `timeout` (Gloo also enforces it inside
  // the transport, so its worker thread does not outlive the failure by more than that).
  template <class Issue>
  void run(const char* operation, Issue&& issue) const {
    try {
      c10::intrusive_ptr<c10d::Work> work = issue();
      work->wait(options.timeout);
    } catch (const std::exception& e) {
      fail(operation, message_of(e));
    }
  }

  void check_tensor(const char* operation, const char* argument, const at::Tensor& t, bool float_only) const {
    const std::string where = std::string("janus::dist::") + operation + ": " + argument;
    if (!t.defined()) throw std::invalid_argument(where + " is an undefined tensor");
    if (t.device() != options.device) {
      throw std::invalid_argument(where + " is on " + t.device().str() + ", the process group's device is " +
                                  options.device.str());
    }
    if (float_only && t.scalar_type() != at::kFloat && t.scalar_type() != at::kDouble) {
      throw std::invalid_argument(where + " has dtype " + std::string(c10::toString(t.scalar_type())) +
                                  ", expected float32 or float64");
    }
  }

  void all_reduce_flat(const at::Tensor& flat) const {
    std::vector<at::Tensor> tensors{flat};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = options.timeout;
    run("all_reduce", [&] { return group->allreduce(tensors, o); });
  }

  // all_gather of a small host vector, lengths may differ between ranks.
  template <class T>
  std::vector<std::vector<T>> gather_values(const std::vector<T>& values, at::ScalarType dtype) const;
};

ProcessGroup::ProcessGroup(const LaunchEnv& env, const Options& options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.env = env;
  m.options = options;
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    throw std::invalid_argument("janus::dist::ProcessGroup: env.rank (" + std::to_string(env.rank) +
                                ") must be in [0, env.world_size (" + std::to_string(env.world_size) + "))");
  }
  if (env.master_port < 1 || env.master_port > 65535) {
    throw std::invalid_argument("janus::dist::ProcessGroup: env.master_port (" + std::to_string(env.master_port) +
                                ") must be in [1, 65535]");
  }
  if (options.timeout.count() <= 0) {
    throw std::invalid_argument("janus::dist::ProcessGroup: options.timeout (" +
                                std::to_string(options.timeout.count()) + " ms) must be positive");
  }
  if (options.bucket_bytes == 0) {
    throw std::invalid_argument("janus::dist::ProcessGroup: options.bucket_bytes must be positive");
  }
  if (options.backend == "auto") {
    m.backend = options.device.is_cuda() ? "nccl" : "gloo";
  } else if (options.backend == "gloo" || options.backend == "nccl") {
    m.backend = options.backend;
  } else {
    throw std::invalid_argument("janus::dist::ProcessGroup: options.backend (\"" + options.backend +
                                "\") must be auto, gloo or nccl");
  }
  if (m.backend == "gloo" && !options.device.is_cpu()) {
    throw std::invalid_argument("janus::dist::ProcessGroup: options.backend gloo needs options.device cpu (got " +
                                options.device.str() + "); use nccl for CUDA tensors");
  }
  if (m.backend == "nccl") {
#ifdef USE_C10D_NCCL
    if (!options.device.is_cuda()) {
      throw std::invalid_argument("janus::dist::ProcessGroup: options.backend nccl needs a CUDA options.device (got " +
                                  options.device.str() + ")");
    }
#else
    throw std::invalid_argument(
        "janus::dist::ProcessGroup: options.backend is nccl (options.device " + options.device.str() +
        "), but this libtorch's c10d was built without NCCL (no USE_C10D_NCCL): use a CUDA build of libtorch with "
        "NCCL, or gloo with CPU tensors");
#endif
  }

  // The rendezvous: the store, then the backend's pairwise connections (both bounded by timeout).
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(env.master_port);
    store_options.isServer = !env.use_agent_store && env.rank == 0;
    store_options.numWorkers = static_cast<std::size_t>(env.world_size);
    // Not TCPStore's own wait for the workers: in libtorch 1.13 it gives up silently at the
    // timeout, which would double the rendezvous time; Gloo's pairwise connection below waits
    // for every rank's address in the store and fails at the timeout.
    store_options.waitWorkers = false;
    store_options.timeout = options.timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
    tcp->setTimeout(options.timeout);
    const std::string prefix =
        env.use_agent_store ? "/worker/attempt_" + std::to_string(env.restart_count) + "/janus/" : "janus/";
    m.store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);

    if (m.backend == "gloo") {
      auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      } else if (is_loopback(env.master_addr)) {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      m.group = c10::make_intrusive<c10d::ProcessGroupGloo>(m.store, env.rank, env.world_size, gloo_options);
    } else {
#ifdef USE_C10D_NCCL
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = options.timeout;
      m.group = c10::make_intrusive<c10d::ProcessGroupNCCL>(m.store, env.rank, env.world_size, nccl_options);
#endif
    }
  } catch (const std::exception& e) {
    m.fail("rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port), message_of(e));
  }
}

ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::world_size() const { return impl_->env.world_size; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }
c10::Device ProcessGroup::device() const { return impl_->options.device; }
std::chrono::milliseconds ProcessGroup::timeout() const { return impl_->options.timeout; }
std::size_t ProcessGroup::bucket_bytes() const { return impl_->options.bucket_bytes; }

std::size_t ProcessGroup::all_reduce_sum(const std::vector<at::Tensor>& tensors, std::size_t bucket_bytes) {
  const Impl& m = *impl_;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    m.check_tensor("all_reduce_sum", ("tensors[" + std::to_string(i) + "]").c_str(), tensors[i], true);
  }
  torch::NoGradGuard no_grad;
  std::size_t collectives = 0;
  for (const at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    const std::size_t element = dtype == at::kFloat ? 4 : 8;
    const std::size_t bound = bucket_bytes != 0 ? bucket_bytes : m.options.bucket_bytes;
    const auto capacity = static_cast<std::int64_t>(std::max<std::size_t>(bound / element, 1));
    std::vector<at::Tensor> bucket;
    std::int64_t filled = 0;
    auto flush = [&] {
      if (bucket.empty()) return;
      at::Tensor flat = at::empty({filled}, bucket.front().options());
      std::int64_t offset = 0;
      for (const auto& t : bucket) {
        flat.narrow(0, offset, t.numel()).view(t.sizes()).copy_(t);
        offset += t.numel();
      }
      m.all_reduce_flat(flat);
      ++collectives;
      offset = 0;
      for (const auto& t : bucket) {
        t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
        offset += t.numel();
      }
      bucket.clear();
      filled = 0;
    };
    for (const auto& t : tensors) {
      if (t.scalar_type() != dtype || t.numel() == 0) continue;
      if (t.numel() > capacity) {  // larger than a bucket: on its own, in place when contiguous
        if (t.is_contiguous()) {
          m.all_reduce_flat(t.view({-1}));
        } else {
          at::Tensor copy = t.contiguous();
          m.all_reduce_flat(copy.view({-1}));
          t.copy_(copy);
        }
        ++collectives;
        continue;
      }
      if (filled + t.numel() > capacity) flush();
      bucket.push_back(t);
      filled += t.numel();
    }
    flush();
  }
  return collectives;
}

void ProcessGroup::broadcast(const std::vector<at::Tensor>& tensors) {
  const Impl& m = *impl_;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    m.check_tensor("broadcast", ("tensors[" + std::to_string(i) + "]").c_str(), tensors[i], false);
  }
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
    c10d::BroadcastOptions o;
    o.rootRank = 0;
    o.rootTensor = 0;
    o.timeout = m.options.timeout;
    m.run("broadcast", [&] { return m.group->broadcast(one, o); });
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

void ProcessGroup::barrier() {
  const Impl& m = *impl_;
  c10d::BarrierOptions o;
  o.timeout = m.options.timeout;
  m.run("barrier", [&] { return m.group->barrier(o); });
}

template <class T>
std::vector<std::vector<T>> ProcessGroup::Impl::gather_values(const std::vector<T>& values,
                                                              at::ScalarType dtype) const {
  const Impl& m = *this;
  const int world = m.env.world_size;
  const c10::TensorOptions host = at::TensorOptions().dtype(dtype).device(m.options.device);
  auto gather = [&](const at::Tensor& input, std::int64_t n) {
    at::Tensor output = at::empty({world * n}, input.options());
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < world; ++r) outputs[0].push_back(output.narrow(0, r * n, n));
    std::vector<at::Tensor> inputs{input};
    c10d::AllgatherOptions o;
    o.timeout = m.options.timeout;
    m.run("all_gather", [&] { return m.group->allgather(outputs, inputs, o); });
    return output.to(at::kCPU);
  };
  at::Tensor length = at::full({1}, static_cast<std::int64_t>(values.size()),
                               at::TensorOptions().dtype(at::kLong).device(m.options.device));
  const at::Tensor lengths = gather(length, 1);
  const std::int64_t longest = std::max<std::int64_t>(lengths.max().template item<std::int64_t>(), 1);
  at::Tensor padded = at::zeros({longest}, at::TensorOptions().dtype(dtype));
  std::copy(values.begin(), values.end(), padded.data_ptr<T>());
  const at::Tensor all = gather(padded.to(host.device()), longest);
  std::vector<std::vector<T>> result(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) {
    const T* row = all.data_ptr<T>() + r * longest;
    result[static_cast<std::size_t>(r)].assign(row, row + lengths[r].template item<std::int64_t>());
  }
  return result;
}

std::vector<std::vector<double>> ProcessGroup::all_gather(const std::vector<double>& values) {
  return impl_->gather_values<double>(values, at::kDouble);
}

std::vector<std::vector<std::int64_t>> ProcessGroup::all_gather(const std::vector<std::int64_t>& values) {
  return impl_->gather_values<std::int64_t>(values, at::kLong);
}

void ProcessGroup::reduce_scatter_sum(const at::Tensor& input, const at::Tensor& output) {
  const Impl& m = *impl_;
  m.check_tensor("reduce_scatter_sum", "input", input, true);
  m.check_tensor("reduce_scatter_sum", "output", output, true);
  check_shards("reduce_scatter_sum", input, "input", output, "output", m.env.world_size);
  const std::int64_t shard = output.numel();
  torch::NoGradGuard no_grad;
  if (m.backend == "nccl") {
    std::vector<at::Tensor> outputs{output};
    std::vector<std::vector<at::Tensor>> inputs(1);
    for (int r = 0; r < m.env.world_size; ++r) inputs[0].push_back(input.narrow(0, r * shard, shard));
    c10d::ReduceScatterOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = m.options.timeout;
    m.run("reduce_scatter", [&] { return m.group->reduce_scatter(outputs, inputs, o); });
    return;
  }
  // Gloo (libtorch 1.13) has no reduce_scatter: allreduce a copy, keep this rank's slice.
  at::Tensor sum = input.clone();
  m.all_reduce_flat(sum);
  output.copy_(sum.narrow(0, m.env.rank * shard, shard));
}

void ProcessGroup::all_gather(const at::Tensor& input, const at::Tensor& output) {
  const Impl& m = *impl_;
  m.check_tensor("all_gather", "input", input, false);
  m.check_tensor("all_gather", "output", output, false);
  check_shards("all_gather", output, "output", input, "input", m.env.world_size);
  const std::int64_t shard = input.numel();
  torch::NoGradGuard no_grad;
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < m.env.world_size; ++r) outputs[0].push_back(output.narrow(0, r * shard, shard));
  std::vector<at::Tensor> inputs{input};
  c10d::AllgatherOptions o;
  o.timeout = m.options.timeout;
  m.run("all_gather", [&] { return m.group->allgather(outputs, inputs, o); });
}

namespace {

class PendingWork final : public PendingCollective {
 public:
  PendingWork(c10::intrusive_ptr<c10d::Work> work, std::chrono::milliseconds timeout,
              std::function<void(const std::string&)> fail)
      : work_(std::move(work)), timeout_(timeout), fail_(std::move(fail)) {}
  ~PendingWork() override {
    if (!work_) return;
    try {
      work_->wait(timeout_);
    } catch (...) {  // reported by the next collective
    }
  }
  void wait() override {
    if (!work_) return;
    c10::intrusive_ptr<c10d::Work> w = std::move(work_);
    try {
      w->wait(timeout_);
    } catch (const std::exception& e) {
      fail_(message_of(e));
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::chrono::milliseconds timeout_;
  std::function<void(const std::string&)> fail_;
};

}  // namespace

std::unique_ptr<PendingCollective> ProcessGroup::start_all_reduce_sum(const at::Tensor& flat) {
  const Impl& m = *impl_;
  m.check_tensor("start_all_reduce_sum", "flat", flat, true);
  if (flat.dim() != 1 || !flat.is_contiguous())
    throw std::invalid_argument("janus::dist::start_all_reduce_sum: flat must be a flat contiguous tensor");
  std::vector<at::Tensor> tensors{flat};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  o.timeout = m.options.timeout;
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = m.group->allreduce(tensors, o);
  } catch (const std::exception& e) {
    m.fail("all_reduce (started)", message_of(e));
  }
  return std::make_unique<PendingWork>(std::move(work), m.options.timeout,
                                       [&m](const std::string& cause) { m.fail("all_reduce (started)", cause); });
}

}  // namespace janus::dist
