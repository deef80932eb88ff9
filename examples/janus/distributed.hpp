// examples/janus/distributed.hpp - data parallelism on PyTorch's c10d (issue 11): the launch
// environment, one process group (TCPStore rendezvous + Gloo on CPU / NCCL on CUDA) and the
// collectives the trainer needs. No home-made transport: every byte goes through c10d.
//
// ## Launch environment (LaunchEnv::from_environment)
// Reads the variables torchrun sets for each worker (and that `scripts/launch.sh K ...` or a
// SLURM script sets the same way):
//   RANK              global rank, 0 <= RANK < WORLD_SIZE
//   WORLD_SIZE        number of processes, >= 1
//   LOCAL_RANK        rank on this host, 0 <= LOCAL_RANK < LOCAL_WORLD_SIZE (picks the GPU)
//   LOCAL_WORLD_SIZE  processes on this host, 1 <= LOCAL_WORLD_SIZE <= WORLD_SIZE
//   MASTER_ADDR       host of the rendezvous store (non-empty)
//   MASTER_PORT       its TCP port, 1..65535
// and two optional ones that torchrun's agent sets:
//   TORCHELASTIC_USE_AGENT_STORE  "True": torchrun's agent already serves a TCPStore on
//                     MASTER_ADDR:MASTER_PORT (static rendezvous), so every rank connects to it
//                     as a client, under the key prefix "/worker/attempt_<TORCHELASTIC_RESTART_COUNT>"
//                     as PyTorch's env:// rendezvous does; otherwise ("False" or unset) rank 0
//                     starts the TCPStore server itself.
//   TORCHELASTIC_RESTART_COUNT    integer >= 0 (required when the agent store is used).
// None of the six set: std::nullopt (a single-process run). Some but not all set, or a value that
// is not a plain decimal integer or is out of range: std::invalid_argument naming the variable.
//
// ## ProcessGroup
// Construction is the rendezvous: rank 0 (or torchrun's agent) serves a c10d::TCPStore, the
// others connect to it, then c10d::ProcessGroupGloo (CPU tensors) or c10d::ProcessGroupNCCL
// (CUDA tensors; compiled only when libtorch's c10d has NCCL, i.e. with USE_C10D_NCCL; otherwise
// asking for "nccl" throws std::invalid_argument) connects every pair of ranks. Backend
// "auto" picks "nccl" for a CUDA device and "gloo" otherwise. Gloo's sockets bind to the
// interface named by GLOO_SOCKET_IFNAME when set, to 127.0.0.1 when MASTER_ADDR is a loopback
// address or "localhost", else to the address this host's name resolves to (as PyTorch does).
//
// Timeout: one value (Options::timeout, default 300 s) bounds the rendezvous and every
// collective. The rendezvous has two phases, each bounded by `timeout`: reaching the store
// (ranks > 0 retry connecting to MASTER_ADDR:MASTER_PORT) and the pairwise connections (every
// rank waits in the store for the others' addresses), so a rank that never arrives makes the
// others fail `timeout` after they reached the store. (TCPStore's own wait-for-workers is not
// used: in libtorch 1.13 it gives up silently at its timeout.) A collective that has not
// completed within `timeout` of being started on this rank fails; one whose peer died fails as
// soon as the peer's sockets close (measured here: 0.1-0.2 s after a SIGKILL). Every failure (a peer
// that died, a peer that stopped calling collectives, a rendezvous where a rank never arrives)
// is thrown as std::runtime_error whose message names this rank, the world size, the operation,
// the backend and the timeout, followed by c10d's own message (which usually names the peer's
// address); it is never a hang past the timeout. A group whose collective failed is
// unusable: destroy it (its destructor returns within the timeout) and exit non-zero.
//
// Every rank must call the same collectives, in the same order, with tensors of the same
// dtypes and shapes (c10d's rule; not checked, a mismatch fails or times out). Calls block
// until the collective is complete on this rank. Not thread-safe: one thread per group.
// Rounding: with 2 ranks a sum is the one rounding of a + b, the same on both ranks and in
// every path (bucketed, in place, reduce_scatter + all_gather), as the tests check bitwise;
// with more ranks the order of the additions is Gloo's (ring or halving-doubling, fixed for
// a given world size and length; not measured here beyond 2 ranks).
//
// Operations (tensors on the group's device: CPU for Gloo, CUDA for NCCL):
//   all_reduce_sum(tensors[, bucket_bytes])   in place, every tensor becomes the sum over
//       ranks. float32 or float64, any shape and strides. Bucketed: tensors are taken in order, grouped by dtype,
//       and copied into flat buckets of at most Options::bucket_bytes (default 25 MiB, PyTorch
//       DDP's bucket_cap_mb) which are all-reduced one collective each and copied back; a
//       contiguous tensor larger than a bucket is all-reduced in place on its own (a
//       non-contiguous one through a contiguous copy), so extra memory is at most one bucket
//       (or one such copy). A non-zero bucket_bytes replaces Options::bucket_bytes for this
//       call (every rank must pass the same). Returns the number of collectives issued.
//   broadcast(tensors)        in place, every tensor takes rank 0's values (one collective per
//       tensor; any dtype c10d supports).
//   barrier()                 returns when every rank has called it.
//   all_gather(vector<double> / vector<int64_t>)  small host vectors (metrics): returns one
//       vector per rank, index = rank; lengths may differ between ranks (two collectives:
//       lengths, then the values padded to the longest).
//   reduce_scatter_sum(input, output)  flat float tensors: input.numel() == world_size *
//       output.numel(); output = the sum over ranks of input's slice
//       [rank * output.numel(), (rank + 1) * output.numel()). Gloo in libtorch 1.13 has no
//       reduce_scatter ("ProcessGroupGloo does not support reduce_scatter"), so on Gloo it is a
//       c10d allreduce of a copy of input followed by taking this rank's slice: the same result,
//       but full-size traffic and one input-sized temporary. On NCCL it is c10d's
//       reduce_scatter.
//   all_gather(input, output)  flat tensors: output.numel() == world_size * input.numel();
//       output's slice r receives rank r's input (c10d allgather into views of output).
//   start_all_reduce_sum(flat)  starts a sum all-reduce of one flat contiguous float tensor, in
//       place, and returns at once (Gloo runs it on its own worker threads, NCCL on its stream):
//       the caller goes on computing (the gradient hooks of data_parallel.hpp overlap the
//       backward with it) and calls wait() on the result before reading the tensor. wait()
//       fails like a blocking collective; the tensor must outlive the wait. Collectives started
//       and blocking ones are issued in the order called (c10d's per-group order).
//
// The trainer sees a group through the Communicator interface (rank, world size and the
// operations above), so its library builds without Gloo's headers; ProcessGroup implements it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace janus::dist {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr;
  int master_port = 0;
  bool use_agent_store = false;  // TORCHELASTIC_USE_AGENT_STORE == "True"
  int restart_count = 0;         // TORCHELASTIC_RESTART_COUNT (0 when unset)

  // From the process environment (see the header comment).
  static std::optional<LaunchEnv> from_environment();
  // The same rules with another source of variables (tests): `get(name)` returns the value or
  // nullptr when the variable is unset.
  static std::optional<LaunchEnv> from_lookup(const std::function<const char*(const char*)>& get);
};

/// A collective started by Communicator::start_all_reduce_sum; wait() returns when it is
/// complete on this rank (or throws std::runtime_error like a blocking collective). Destroying
/// one that was not waited for waits for it (errors then ignored: the next collective reports).
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

/// The operations data parallelism needs of a process group (see the header comment).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual const std::string& backend() const = 0;
  virtual c10::Device device() const = 0;  ///< where the collectives' tensors live
  virtual std::chrono::milliseconds timeout() const = 0;
  virtual std::size_t bucket_bytes() const = 0;
  virtual std::size_t all_reduce_sum(const std::vector<at::Tensor>& tensors, std::size_t bucket_bytes = 0) = 0;
  virtual void broadcast(const std::vector<at::Tensor>& tensors) = 0;
  virtual void barrier() = 0;
  virtual std::vector<std::vector<double>> all_gather(const std::vector<double>& values) = 0;
  virtual std::vector<std::vector<std::int64_t>> all_gather(const std::vector<std::int64_t>& values) = 0;
  virtual void reduce_scatter_sum(const at::Tensor& input, const at::Tensor& output) = 0;
  virtual void all_gather(const at::Tensor& input, const at::Tensor& output) = 0;
  virtual std::unique_ptr<PendingCollective> start_all_reduce_sum(const at::Tensor& flat) = 0;
};

struct Options {
  std::string backend = "auto";                    // "auto" | "gloo" | "nccl"
  c10::Device device = c10::Device(c10::kCPU);     // where the group's tensors live
  std::chrono::milliseconds timeout{300'000};      // rendezvous and every collective; > 0
  std::size_t bucket_bytes = std::size_t{25} << 20;  // all_reduce_sum's bucket bound; > 0
};

class ProcessGroup final : public Communicator {
 public:
  // The rendezvous; throws std::invalid_argument for bad options, std::runtime_error when the
  // rendezvous fails or times out.
  ProcessGroup(const LaunchEnv& env, const Options& options = {});
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const override;
  int world_size() const override;
  const std::string& backend() const override;  // "gloo" or "nccl"
  c10::Device device() const override;
  std::chrono::milliseconds timeout() const override;
  std::size_t bucket_bytes() const override;

  // bucket_bytes 0: Options::bucket_bytes.
  std::size_t all_reduce_sum(const std::vector<at::Tensor>& tensors, std::size_t bucket_bytes = 0) override;
  void broadcast(const std::vector<at::Tensor>& tensors) override;
  void barrier() override;
  std::vector<std::vector<double>> all_gather(const std::vector<double>& values) override;
  std::vector<std::vector<std::int64_t>> all_gather(const std::vector<std::int64_t>& values) override;
  void reduce_scatter_sum(const at::Tensor& input, const at::Tensor& output) override;
  void all_gather(const at::Tensor& input, const at::Tensor& output) override;
  std::unique_ptr<PendingCollective> start_all_reduce_sum(const at::Tensor& flat) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace janus::dist
