// gcpo_sim/runtime.hpp - the interface between the simulator's device header (compiled into
// the kernels' translation units) and its runtime (tests/sim/sim.cpp). Tests only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../cuda_runtime_api.h"

namespace gcpo_sim {

/// Where a primitive was called (default arguments __builtin_FILE / __builtin_LINE).
struct site {
  const char* file;
  int line;
};

/// What the simulator found wrong. Each report names the kernel, the block and the thread.
enum class report_kind {
  divergent_barrier,   ///< threads of a block at different __syncthreads, or one exited before a barrier others reached
  warp_mask,           ///< a warp primitive's mask leaves out the caller, or names lanes that do not exist
  warp_divergence,     ///< lanes named in each other's masks called different primitives / masks / widths
  warp_exited_lane,    ///< a lane named in a pending warp primitive's mask exited
  shuffle_inactive,    ///< a shuffle read a lane that is not in its mask (inactive or exited: undefined value)
  deadlock,            ///< every live thread of a block waits and none can proceed
  out_of_bounds,       ///< a guard zone around a cudaMalloc buffer or the dynamic shared memory was written
  bad_launch,          ///< launch configuration the device would reject
  bad_argument,        ///< a runtime call with a pointer or size the device would reject
  kernel_exception,    ///< a C++ exception escaped a simulated thread
};
const char* to_string(report_kind k);

struct report {
  report_kind kind;
  std::string kernel;
  std::string text;
};

/// Every report since the last clear_reports() (in order).
std::vector<report> reports();
void clear_reports();
/// Clears the sticky error a failed launch leaves (as cudaDeviceReset does, without freeing).
void clear_sticky_error();

/// How the threads of a block are scheduled.
/// - concurrent: every thread is an OS thread running freely (ThreadSanitizer sees the races);
/// - serial: the same OS threads, but one at a time, deterministically: a thread runs until it
///   waits (barrier, warp primitive) or exits, then the next runnable thread in index order.
enum class schedule { concurrent, serial };
schedule current_schedule();
void set_schedule(schedule s);

/// True in the ThreadSanitizer build; race_reports() counts the data races it reported.
bool under_thread_sanitizer();
int race_reports();

/// Caps gridDim.x of every launch at `blocks` (0: no cap). gcpo's kernels loop over their rows
/// with a grid stride, so a capped grid must give bitwise the same results while every block
/// runs its loop many times (the barriers that protect shared memory between iterations then
/// matter). The CUDA tests' run_checked compares a capped run with a full one.
void set_grid_limit(unsigned blocks);
unsigned grid_limit();

/// Kernel launches run since the last reset_launch_count() (counted when a launch runs: a
/// launch recorded into a graph counts at each replay, not at capture). Lets a test check how
/// many launches an operator makes.
unsigned long long launch_count();
void reset_launch_count();

namespace detail {

/// One launch, as the device header hands it to the runtime.
struct launch_desc {
  const char* kernel;
  dim3 grid, block;
  std::size_t smem;
  cudaStream_t stream;
};
void launch(const launch_desc& d, std::function<void()> body);

// Block-level collectives (called from simulated threads).
enum class bar_op { sync, sync_or, sync_and, sync_count };
int barrier(bar_op op, int pred, site s);
enum class warp_op { shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, syncwarp };
std::uint64_t warp_collective(warp_op op, unsigned mask, std::uint64_t bits, int arg, int width, site s);
void* dynamic_shared_memory(std::size_t* bytes);

}  // namespace detail
}  // namespace gcpo_sim

// Built-in variables: one per simulated thread (each is an OS thread).
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;
