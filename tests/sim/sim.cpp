// tests/sim/sim.cpp - the runtime of the gcpo SIMT simulator (tests only; see docs/design.md,
// "The SIMT simulator"): device memory with guard zones, streams and graphs, and the execution
// of a launch: the grid's blocks one after another, each block's threads as OS threads (a pool
// reused across blocks) that meet at barriers and warp primitives, with the checks that name
// the kernel, block and thread of every misuse.
#include <cuda_runtime_api.h>

#include "gcpo_sim/runtime.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#define GCPO_SIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GCPO_SIM_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define GCPO_SIM_ASAN 1
#endif

#if defined(GCPO_SIM_TSAN)
// The simulator's own locks must not order the simulated threads' memory accesses (a warp
// shuffle does not order memory; a lock taken by every thread would hide real races), so they
// run with TSan's synchronisation ignored, and the orderings CUDA does give (a barrier orders
// everything before it against everything after it) are declared explicitly.
// The simulator's state itself is only touched under its lock, which TSan is told to ignore, so
// its accesses are ignored too.
extern "C" void AnnotateIgnoreSyncBegin(const char* file, int line);
extern "C" void AnnotateIgnoreSyncEnd(const char* file, int line);
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
extern "C" void AnnotateIgnoreWritesBegin(const char* file, int line);
extern "C" void AnnotateIgnoreWritesEnd(const char* file, int line);
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#define SIM_IGNORE_SYNC_BEGIN()                 \
  do {                                          \
    AnnotateIgnoreSyncBegin(__FILE__, __LINE__);   \
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);  \
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__); \
  } while (0)
#define SIM_IGNORE_SYNC_END()                 \
  do {                                        \
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__); \
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);  \
    AnnotateIgnoreSyncEnd(__FILE__, __LINE__);   \
  } while (0)
#define SIM_HB_RELEASE(p) __tsan_release(p)
#define SIM_HB_ACQUIRE(p) __tsan_acquire(p)
#else
#define SIM_IGNORE_SYNC_BEGIN() ((void)0)
#define SIM_IGNORE_SYNC_END() ((void)0)
#define SIM_HB_RELEASE(p) ((void)(p))
#define SIM_HB_ACQUIRE(p) ((void)(p))
#endif

namespace {
/// The scope of the simulator's own synchronisation (ignored by TSan, see above).
struct ignore_sync {
  ignore_sync() { SIM_IGNORE_SYNC_BEGIN(); }
  ~ignore_sync() { SIM_IGNORE_SYNC_END(); }
  ignore_sync(const ignore_sync&) = delete;
  ignore_sync& operator=(const ignore_sync&) = delete;
};
}  // namespace

namespace gcpo_sim {

const char* to_string(report_kind k) {
  switch (k) {
    case report_kind::divergent_barrier: return "divergent barrier";
    case report_kind::warp_mask: return "warp primitive mask";
    case report_kind::warp_divergence: return "warp divergence";
    case report_kind::warp_exited_lane: return "exited lane in a warp primitive's mask";
    case report_kind::shuffle_inactive: return "shuffle from an inactive lane";
    case report_kind::deadlock: return "deadlock";
    case report_kind::out_of_bounds: return "out-of-bounds write";
    case report_kind::bad_launch: return "invalid launch";
    case report_kind::bad_argument: return "invalid argument";
    case report_kind::kernel_exception: return "exception in a kernel";
  }
  return "?";
}

namespace {

// --- global state ------------------------------------------------------------------------------

std::mutex g_reports_m;
std::vector<report> g_reports;
std::atomic<int> g_last_error{cudaSuccess};    // cudaGetLastError
std::atomic<int> g_sticky_error{cudaSuccess};  // a failed launch: every later call fails (as on a device)
std::atomic<int> g_schedule{-1};
std::atomic<unsigned> g_grid_limit{0};
std::atomic<unsigned long long> g_launches{0};  // kernel launches run (launch_count)

std::string site_str(site s) {
  const char* f = s.file ? s.file : "?";
  const char* slash = std::strrchr(f, '/');
  std::string r = slash ? slash + 1 : f;
  return r + ":" + std::to_string(s.line);
}

void add_report(report_kind k, const std::string& kernel, const std::string& text) {
  std::fprintf(stderr, "gcpo-sim: %s in %s: %s\n", to_string(k), kernel.c_str(), text.c_str());
  std::lock_guard<std::mutex> lk(g_reports_m);
  g_reports.push_back(report{k, kernel, text});
}

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) g_last_error.store(e);
  return e;
}

// --- device memory -----------------------------------------------------------------------------

constexpr std::size_t guard_bytes = 256;  // before and after every buffer, and the dynamic shared memory
constexpr unsigned char guard_byte = 0xa5;

struct allocation {
  unsigned char* raw;  // guard | user bytes | guard
  std::size_t bytes;   // user bytes
  unsigned char* user() const { return raw + guard_bytes; }
};
std::mutex g_alloc_m;
std::map<std::uintptr_t, allocation> g_allocs;  // by user address

void poison_guards(unsigned char* user, std::size_t bytes) {
  std::memset(user - guard_bytes, guard_byte, guard_bytes);
  std::memset(user + bytes, guard_byte, guard_bytes);
#if defined(GCPO_SIM_ASAN)
  ASAN_POISON_MEMORY_REGION(user - guard_bytes, guard_bytes);
  ASAN_POISON_MEMORY_REGION(user + bytes, guard_bytes);
#endif
}

/// First and last modified byte of a guard zone, or false.
bool guard_damage(const unsigned char* g, std::size_t n, std::size_t& first, std::size_t& last) {
#if defined(GCPO_SIM_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(g, n);
#endif
  bool bad = false;
  for (std::size_t i = 0; i < n; ++i)
    if (g[i] != guard_byte) {
      if (!bad) first = i;
      last = i;
      bad = true;
    }
#if defined(GCPO_SIM_ASAN)
  ASAN_POISON_MEMORY_REGION(g, n);
#endif
  return bad;
}

/// Checks (and repairs) every buffer's guard zones; reports damage as written by `who`.
bool check_guards(const std::string& who, const std::string& where) {
  std::lock_guard<std::mutex> lk(g_alloc_m);
  bool ok = true;
  for (auto& [addr, a] : g_allocs) {
    std::size_t f = 0, l = 0;
    if (guard_damage(a.user() + a.bytes, guard_bytes, f, l)) {
      std::ostringstream os;
      os << where << "wrote bytes " << f << ".." << l << " past the end of a cudaMalloc buffer of " << a.bytes
         << " bytes at 0x" << std::hex << addr;
      add_report(report_kind::out_of_bounds, who, os.str());
      ok = false;
    }
    if (guard_damage(a.raw, guard_bytes, f, l)) {
      std::ostringstream os;
      os << where << "wrote bytes " << (guard_bytes - l) << ".." << (guard_bytes - f)
         << " before the start of a cudaMalloc buffer of " << a.bytes << " bytes at 0x" << std::hex << addr;
      add_report(report_kind::out_of_bounds, who, os.str());
      ok = false;
    }
    if (!ok) poison_guards(a.user(), a.bytes);
  }
  return ok;
}

/// True when [p, p + n) is host memory or inside one cudaMalloc buffer (else reports).
bool check_range(const void* p, std::size_t n, const char* call) {
  if (n == 0) return true;
  if (p == nullptr) {
    add_report(report_kind::bad_argument, call, "null pointer");
    return false;
  }
  const auto u = reinterpret_cast<std::uintptr_t>(p);
  std::lock_guard<std::mutex> lk(g_alloc_m);
  auto it = g_allocs.upper_bound(u);
  if (it == g_allocs.begin()) return true;  // host memory
  --it;
  const allocation& a = it->second;
  if (u >= it->first + a.bytes + guard_bytes) return true;  // host memory after a buffer
  if (u + n > it->first + a.bytes) {
    std::ostringstream os;
    os << n << " bytes at offset " << (u - it->first) << " of a cudaMalloc buffer of " << a.bytes << " bytes";
    add_report(report_kind::bad_argument, call, os.str());
    return false;
  }
  return true;
}

// --- streams and graphs ------------------------------------------------------------------------

using node = std::function<cudaError_t()>;
}  // namespace
}  // namespace gcpo_sim

struct CUgraph_st {
  std::vector<gcpo_sim::node> nodes;
};
struct CUgraphExec_st {
  std::vector<gcpo_sim::node> nodes;
};
struct CUstream_st {
  CUgraph_st* capture = nullptr;
};

namespace gcpo_sim {
namespace {

/// Runs `work` now, or records it when `stream` is being captured.
cudaError_t submit(cudaStream_t stream, node work) {
  if (g_sticky_error.load() != cudaSuccess) return static_cast<cudaError_t>(g_sticky_error.load());
  if (stream && stream->capture) {
    stream->capture->nodes.push_back(std::move(work));
    return cudaSuccess;
  }
  return work();
}

// --- the thread pool ---------------------------------------------------------------------------

/// OS threads reused from block to block (thread t of every block runs on worker t).
class pool {
 public:
  static pool& get() {
    static pool* p = new pool();  // never destroyed: workers may still wait at exit
    return *p;
  }
  /// Runs job(t) for t in [0, n) on n workers and waits for all.
  void run(int n, const std::function<void(int)>& job) {
    grow(n);
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &job;
      remaining_ = n;
    }
    for (int t = 0; t < n; ++t) {
      worker& w = *workers_[static_cast<std::size_t>(t)];
      std::lock_guard<std::mutex> lk(w.m);
      w.go = true;
      w.cv.notify_one();
    }
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return remaining_ == 0; });
    job_ = nullptr;
  }

 private:
  struct worker {
    std::mutex m;
    std::condition_variable cv;
    bool go = false;
  };
  struct start {
    pool* p;
    worker* w;  // (not read through workers_, which the launching thread may grow meanwhile)
    int t;
  };
  static void* entry(void* arg) {
    auto* a = static_cast<start*>(arg);
    pool* p = a->p;
    worker& w = *a->w;
    const int t = a->t;
    delete a;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lk(w.m);
        w.cv.wait(lk, [&] { return w.go; });
        w.go = false;
      }
      {
        std::lock_guard<std::mutex> lk(p->m_);
        job = p->job_;
      }
      (*job)(t);
      std::lock_guard<std::mutex> lk(p->m_);
      if (--p->remaining_ == 0) p->done_cv_.notify_one();
    }
    return nullptr;
  }
  void grow(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      workers_.push_back(std::make_unique<worker>());
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, 1u << 20);
      pthread_t th;
      auto* arg = new start{this, workers_.back().get(), static_cast<int>(workers_.size()) - 1};
      if (pthread_create(&th, &attr, &pool::entry, arg) != 0) {
        std::fprintf(stderr, "gcpo-sim: cannot create a thread\n");
        std::abort();
      }
      pthread_detach(th);
      pthread_attr_destroy(&attr);
    }
  }
  std::vector<std::unique_ptr<worker>> workers_;
  std::mutex m_;
  std::condition_variable done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int remaining_ = 0;
};

// --- one block ---------------------------------------------------------------------------------

struct sim_abort {};  // unwinds a simulated thread after a report

struct thread_slot {
  std::condition_variable cv;
  bool waiting = false;  // arrived at a collective that has not completed
  bool exited = false;
  // what it waits at
  bool at_barrier = false;
  site where{nullptr, 0};
  const char* what = "";
  // warp collective
  bool warp_arrived = false;
  detail::warp_op op = detail::warp_op::shfl;
  unsigned mask = 0;
  std::uint64_t bits = 0;
  int arg = 0, width = 32;
  std::uint64_t result = 0;
  unsigned barriers = 0;  // barriers passed
};

const char* op_name(detail::warp_op op) {
  switch (op) {
    case detail::warp_op::shfl: return "__shfl_sync";
    case detail::warp_op::shfl_up: return "__shfl_up_sync";
    case detail::warp_op::shfl_down: return "__shfl_down_sync";
    case detail::warp_op::shfl_xor: return "__shfl_xor_sync";
    case detail::warp_op::ballot: return "__ballot_sync";
    case detail::warp_op::any: return "__any_sync";
    case detail::warp_op::all: return "__all_sync";
    case detail::warp_op::syncwarp: return "__syncwarp";
  }
  return "?";
}

const char* bar_name(detail::bar_op op) {
  switch (op) {
    case detail::bar_op::sync: return "__syncthreads";
    case detail::bar_op::sync_or: return "__syncthreads_or";
    case detail::bar_op::sync_and: return "__syncthreads_and";
    case detail::bar_op::sync_count: return "__syncthreads_count";
  }
  return "?";
}

class block;
void fiber_yield(block& b, int t);

class block {
 public:
  /// The block's lock: a mutex between OS threads (concurrent), nothing between fibers (serial:
  /// they run one at a time on one OS thread and switch only inside the simulator).
  struct guard {
    std::unique_lock<std::mutex> ul;
    explicit guard(block& b) : ul(b.m_, std::defer_lock) {
      if (!b.serial_) ul.lock();
    }
  };

  block(const detail::launch_desc& d, uint3 bidx, int nthreads, bool serial, unsigned char* dyn, std::size_t dyn_bytes)
      : d_(d), bidx_(bidx), n_(nthreads), live_(nthreads), serial_(serial), slots_(static_cast<std::size_t>(nthreads)),
        dyn_(dyn), dyn_bytes_(dyn_bytes), arrived_(static_cast<std::size_t>((nthreads + 31) / 32), 0u),
        exited_(static_cast<std::size_t>((nthreads + 31) / 32), 0u) {}

  bool failed() const { return failed_; }
  /// Serial: the thread to resume next (-1: none left).
  int next_to_run() const {
    if (aborted_) {  // let every thread unwind
      for (int j = 0; j < n_; ++j)
        if (!slots_[static_cast<std::size_t>(j)].exited) return j;
      return -1;
    }
    return (turn_ >= 0 && !slots_[static_cast<std::size_t>(turn_)].exited) ? turn_ : -1;
  }
  unsigned char* dynamic_shared() const { return dyn_; }
  std::size_t dynamic_bytes() const { return dyn_bytes_; }

  std::string who(int t) const {
    std::ostringstream os;
    os << "block (" << bidx_.x << "," << bidx_.y << "," << bidx_.z << ") thread " << thread_str(t);
    return os.str();
  }
  std::string thread_str(int t) const {
    std::ostringstream os;
    const unsigned bx = d_.block.x, by = d_.block.y;
    const unsigned x = static_cast<unsigned>(t) % bx, y = (static_cast<unsigned>(t) / bx) % by,
                   z = static_cast<unsigned>(t) / (bx * by);
    os << "(" << x << "," << y << "," << z << ")";
    if (n_ > 32) os << " [warp " << t / 32 << " lane " << t % 32 << "]";
    return os.str();
  }

  /// Runs thread t's body (on its own OS thread).
  void run_thread(int t, const std::function<void()>& body) {
    bool go = true;
    {
      ignore_sync ig;
      guard lk(*this);
      go = !aborted_;
    }
    if (go) {
      try {
        body();
      } catch (const sim_abort&) {
        // stopped after a report
      } catch (const std::exception& e) {
        fail(report_kind::kernel_exception, who(t) + ": " + e.what());
      } catch (...) {
        fail(report_kind::kernel_exception, who(t) + ": unknown exception");
      }
    }
    ignore_sync ig;
    guard lk(*this);
    exit_locked(t);
  }

  /// Runs thread t's body as a fiber (serial schedule).
  void run_fiber(int t, const std::function<void()>& body) {
    if (!aborted_) {
      try {
        body();
      } catch (const sim_abort&) {
        // stopped after a report
      } catch (const std::exception& e) {
        fail(report_kind::kernel_exception, who(t) + ": " + e.what());
      } catch (...) {
        fail(report_kind::kernel_exception, who(t) + ": unknown exception");
      }
    }
    exit_locked(t);
  }

  int barrier(int t, detail::bar_op op, int pred, site s) {
    thread_slot& me = slots_[static_cast<std::size_t>(t)];
    // Everything this thread did before the barrier happens before what any thread does after it.
    const unsigned gen_at_arrival = bar_gen_.load(std::memory_order_relaxed);
    SIM_HB_RELEASE(&bar_sync_[gen_at_arrival & 1u]);
    int result = 0;
    {
      ignore_sync ig;
      guard lk(*this);
      check_aborted(lk);
      if (bar_arrivals_ == 0) {
        bar_site_ = s;
        bar_op_ = op;
        bar_first_ = t;
        bar_acc_ = op == detail::bar_op::sync_and ? 1 : 0;
      } else if (s.line != bar_site_.line || op != bar_op_ ||
                 (s.file != bar_site_.file && std::strcmp(s.file, bar_site_.file) != 0)) {
        fail_locked(report_kind::divergent_barrier,
                    who(t) + " is at " + bar_name(op) + " (" + site_str(s) + ") while thread " + thread_str(bar_first_) +
                        " waits at " + bar_name(bar_op_) + " (" + site_str(bar_site_) + ")");
        check_aborted(lk);
      }
      switch (op) {
        case detail::bar_op::sync: break;
        case detail::bar_op::sync_or: bar_acc_ |= pred != 0; break;
        case detail::bar_op::sync_and: bar_acc_ &= pred != 0; break;
        case detail::bar_op::sync_count: bar_acc_ += pred != 0; break;
      }
      ++bar_arrivals_;
      me.at_barrier = true;
      me.where = s;
      me.what = bar_name(op);
      me.waiting = true;
      ++waiting_;
      if (bar_arrivals_ == live_) complete_barrier_locked();
      else block_locked(lk, t);
      check_aborted(lk);
      result = static_cast<int>(me.result);
    }
    SIM_HB_ACQUIRE(&bar_sync_[gen_at_arrival & 1u]);
    return result;
  }

  std::uint64_t warp(int t, detail::warp_op op, unsigned mask, std::uint64_t bits, int arg, int width, site s) {
    thread_slot& me = slots_[static_cast<std::size_t>(t)];
    const int lane = t & 31, base = t & ~31;
    const int lanes = std::min(32, n_ - base);
    const unsigned exists = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    if (op == detail::warp_op::syncwarp) SIM_HB_RELEASE(&warp_sync_[static_cast<std::size_t>(t / 32)]);
    std::uint64_t result = 0;
    {
      ignore_sync ig;
      guard lk(*this);
      check_aborted(lk);
      auto call = [&] {
        std::ostringstream os;
        os << op_name(op) << " (" << site_str(s) << ") with mask 0x" << std::hex << mask;
        return os.str();
      };
      if (!((mask >> lane) & 1u)) {
        fail_locked(report_kind::warp_mask, who(t) + " calls " + call() + ", which does not include its own lane");
        check_aborted(lk);
      }
      if (mask & ~exists) {
        fail_locked(report_kind::warp_mask, who(t) + " calls " + call() + ", which names lanes the block does not have");
        check_aborted(lk);
      }
      if (op <= detail::warp_op::shfl_xor && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
        fail_locked(report_kind::warp_mask, who(t) + " calls " + call() + " with width " + std::to_string(width) +
                                                ", not a power of two in [1, 32]");
        check_aborted(lk);
      }
      me.warp_arrived = true;
      me.op = op;
      me.mask = mask;
      me.bits = bits;
      me.arg = arg;
      me.width = width;
      me.where = s;
      me.what = op_name(op);
      me.at_barrier = false;
      me.waiting = true;
      ++waiting_;
      // Lanes of the mask already waiting must wait at the same primitive with the same mask
      // (compared with one of them: each was compared with an earlier one when it arrived).
      const unsigned waiting_in_mask = arrived_[static_cast<std::size_t>(t / 32)] & mask;
      if (waiting_in_mask) {
        const int j = __builtin_ctz(waiting_in_mask);
        const thread_slot& o = slots_[static_cast<std::size_t>(base + j)];
        if (!same_call(o, me)) {
          std::ostringstream os;
          os << who(t) << " calls " << call() << " while lane " << j << " waits at " << op_name(o.op) << " ("
             << site_str(o.where) << ") with mask 0x" << std::hex << o.mask;
          fail_locked(report_kind::warp_divergence, os.str());
          check_aborted(lk);
        }
      }
      // Named lanes that exited can never arrive.
      if (const unsigned gone = exited_[static_cast<std::size_t>(t / 32)] & mask) {
        fail_locked(report_kind::warp_exited_lane, who(t) + " calls " + call() + ", which names lane " +
                                                       std::to_string(__builtin_ctz(gone)) + ", which has exited");
        check_aborted(lk);
      }
      arrived_[static_cast<std::size_t>(t / 32)] |= 1u << lane;
      const bool all = (mask & ~arrived_[static_cast<std::size_t>(t / 32)]) == 0;
      if (all) complete_warp_locked(t, base, lanes);
      else block_locked(lk, t);
      check_aborted(lk);
      result = me.result;
    }
    if (op == detail::warp_op::syncwarp) SIM_HB_ACQUIRE(&warp_sync_[static_cast<std::size_t>(t / 32)]);
    return result;
  }

  /// Reports an error and stops the block (every thread unwinds at its next wait).
  void fail(report_kind k, const std::string& text) {
    ignore_sync ig;
    std::lock_guard<std::mutex> lk(m_);
    fail_locked(k, text);
  }

 private:
  static bool same_call(const thread_slot& a, const thread_slot& b) {
    return a.op == b.op && a.mask == b.mask && a.width == b.width && a.where.line == b.where.line &&
           (a.where.file == b.where.file || std::strcmp(a.where.file, b.where.file) == 0);
  }

  void fail_locked(report_kind k, const std::string& text) {
    add_report(k, d_.kernel, text);
    failed_ = true;
    aborted_ = true;
    for (auto& s : slots_) s.cv.notify_one();
  }

  void check_aborted(guard& lk) {
    if (aborted_) {
      (void)lk;
      throw sim_abort{};
    }
  }

  /// Waits until released (and, serial, until it is this thread's turn again).
  void block_locked(guard& lk, int t) {
    thread_slot& me = slots_[static_cast<std::size_t>(t)];
    if (waiting_ == live_) {
      report_deadlock_locked(t);
      check_aborted(lk);
    }
    if (serial_) {
      pass_turn_locked(t);
      while (!aborted_ && me.waiting) fiber_yield(*this, t);  // resumed when it is this thread's turn
      check_aborted(lk);
      return;
    }
    me.cv.wait(lk.ul, [&] { return aborted_ || !me.waiting; });
    check_aborted(lk);
  }

  void release_locked(int j) {
    thread_slot& o = slots_[static_cast<std::size_t>(j)];
    o.waiting = false;
    o.at_barrier = false;
    --waiting_;
    if (!serial_) o.cv.notify_one();
  }

  void complete_barrier_locked() {
    const unsigned ordinal = bar_gen_.load(std::memory_order_relaxed);  // barriers completed before this one
    for (int j = 0; j < n_; ++j) {
      const thread_slot& o = slots_[static_cast<std::size_t>(j)];
      if (o.exited && o.barriers <= ordinal) {
        fail_locked(report_kind::divergent_barrier,
                    who(j) + " exited without reaching " + bar_name(bar_op_) + " (" + site_str(bar_site_) +
                        "), which the other threads of its block wait at");
        return;
      }
    }
    const std::uint64_t r = static_cast<std::uint64_t>(bar_acc_);
    for (int j = 0; j < n_; ++j) {
      thread_slot& o = slots_[static_cast<std::size_t>(j)];
      if (o.exited || !o.at_barrier) continue;
      o.result = r;
      ++o.barriers;
      release_locked(j);
    }
    bar_arrivals_ = 0;
    bar_gen_.store(ordinal + 1, std::memory_order_relaxed);
  }

  void complete_warp_locked(int t, int base, int lanes) {
    const thread_slot& me = slots_[static_cast<std::size_t>(t)];
    const unsigned mask = me.mask;
    std::uint64_t ballot = 0;
    for (int j = 0; j < lanes; ++j)
      if ((mask >> j) & 1u) ballot |= (slots_[static_cast<std::size_t>(base + j)].bits != 0 ? 1ull : 0ull) << j;
    std::uint64_t res[32] = {};
    for (int j = 0; j < lanes; ++j) {
      if (!((mask >> j) & 1u)) continue;
      const thread_slot& o = slots_[static_cast<std::size_t>(base + j)];
      const int w = o.width, seg = j & ~(w - 1), in_seg = j & (w - 1);
      int src = j;
      switch (o.op) {
        case detail::warp_op::shfl: src = seg + (o.arg & (w - 1)); break;
        case detail::warp_op::shfl_up: src = in_seg >= o.arg ? j - o.arg : j; break;
        case detail::warp_op::shfl_down: src = in_seg + o.arg < w ? j + o.arg : j; break;
        case detail::warp_op::shfl_xor: {
          const int x = j ^ o.arg;
          src = x < seg + w ? x : j;  // later groups: own value
          break;
        }
        default: break;
      }
      switch (o.op) {
        case detail::warp_op::ballot: res[j] = ballot; break;
        case detail::warp_op::any: res[j] = ballot != 0; break;
        case detail::warp_op::all: res[j] = ballot == mask; break;
        case detail::warp_op::syncwarp: res[j] = 0; break;
        default:
          if (src < 0 || src >= lanes || !((mask >> src) & 1u)) {
            std::ostringstream os;
            os << who(base + j) << " reads lane " << src << " in " << op_name(o.op) << " (" << site_str(o.where)
               << ") with mask 0x" << std::hex << mask << ": that lane is not in the mask (inactive or exited), the value is undefined";
            fail_locked(report_kind::shuffle_inactive, os.str());
            return;
          }
          res[j] = slots_[static_cast<std::size_t>(base + src)].bits;
      }
    }
    for (int j = 0; j < lanes; ++j) {
      if (!((mask >> j) & 1u)) continue;
      thread_slot& o = slots_[static_cast<std::size_t>(base + j)];
      o.result = res[j];
      o.warp_arrived = false;
      arrived_[static_cast<std::size_t>(base / 32)] &= ~(1u << j);
      release_locked(base + j);
    }
  }

  void exit_locked(int t) {
    thread_slot& me = slots_[static_cast<std::size_t>(t)];
    me.exited = true;
    exited_[static_cast<std::size_t>(t / 32)] |= 1u << (t & 31);
    --live_;
    if (aborted_) {
      if (serial_) pass_turn_locked(t);
      return;
    }
    // A lane waiting in a warp primitive whose mask names this lane can never complete.
    const int base = t & ~31, lanes = std::min(32, n_ - base), lane = t & 31;
    for (int j = 0; j < lanes; ++j) {
      const thread_slot& o = slots_[static_cast<std::size_t>(base + j)];
      if (o.warp_arrived && ((o.mask >> lane) & 1u)) {
        std::ostringstream os;
        os << who(t) << " exited while lane " << j << " waits for it in " << op_name(o.op) << " ("
           << site_str(o.where) << ") with mask 0x" << std::hex << o.mask;
        fail_locked(report_kind::warp_exited_lane, os.str());
        if (serial_) pass_turn_locked(t);
        return;
      }
    }
    if (bar_arrivals_ > 0 && bar_arrivals_ == live_) complete_barrier_locked();
    if (!aborted_ && live_ > 0 && waiting_ == live_) report_deadlock_locked(t);
    if (serial_) pass_turn_locked(t);
  }

  void report_deadlock_locked(int t) {
    std::map<std::string, std::vector<int>> where;
    for (int j = 0; j < n_; ++j) {
      const thread_slot& o = slots_[static_cast<std::size_t>(j)];
      if (o.exited || !o.waiting) continue;
      std::ostringstream k;
      k << o.what << " (" << site_str(o.where) << ")";
      if (!o.at_barrier) k << " mask 0x" << std::hex << o.mask;
      where[k.str()].push_back(j);
    }
    std::ostringstream os;
    os << "block (" << bidx_.x << "," << bidx_.y << "," << bidx_.z << "): every live thread waits, none can proceed"
       << " (last: thread " << thread_str(t) << ");";
    for (const auto& [k, v] : where) {
      os << " " << v.size() << " thread(s) at " << k << " (first: " << thread_str(v.front()) << ");";
    }
    int exited = 0;
    for (const auto& s : slots_) exited += s.exited ? 1 : 0;
    if (exited) os << " " << exited << " thread(s) exited";
    fail_locked(report_kind::deadlock, os.str());
  }

  // Serial schedule: one thread at a time, in index order, switching only when it waits or exits.
  void pass_turn_locked(int t) {
    for (int k = 1; k <= n_; ++k) {
      const int j = (t + k) % n_;
      const thread_slot& o = slots_[static_cast<std::size_t>(j)];
      if (!o.exited && !o.waiting) {
        turn_ = j;
        slots_[static_cast<std::size_t>(j)].cv.notify_one();
        return;
      }
    }
    turn_ = -1;
  }

  const detail::launch_desc& d_;
  uint3 bidx_;
  int n_;
  int live_;
  int waiting_ = 0;
  bool serial_;
  int turn_ = 0;
  bool failed_ = false;
  bool aborted_ = false;
  std::mutex m_;
  std::vector<thread_slot> slots_;
  unsigned char* dyn_;
  std::size_t dyn_bytes_;
  std::vector<unsigned> arrived_;  // per warp: lanes waiting in a warp primitive
  std::vector<unsigned> exited_;   // per warp: lanes that exited
  // barrier
  int bar_arrivals_ = 0;
  site bar_site_{nullptr, 0};
  detail::bar_op bar_op_ = detail::bar_op::sync;
  int bar_first_ = 0;
  long long bar_acc_ = 0;
  std::atomic<unsigned> bar_gen_{0};
  char bar_sync_[2] = {0, 0};                 // TSan happens-before objects (by barrier parity)
  char warp_sync_[32] = {};                   // and per warp for __syncwarp
};

thread_local block* t_block = nullptr;
thread_local int t_tid = 0;

// --- serial schedule: the block's threads as fibers on the launching OS thread -----------------
//
// A fiber switch saves the callee-saved registers and the stack pointer and loads another's
// (x86-64: a few instructions; elsewhere swapcontext, which also makes a system call for the
// signal mask). A thread of a 1024-thread block switches at every barrier and warp primitive,
// so this is most of the simulator's time.

constexpr std::size_t fiber_stack = 512 * 1024;

#if defined(__x86_64__) && !defined(GCPO_SIM_TSAN)
#define GCPO_SIM_ASM_SWITCH 1
extern "C" void gcpo_sim_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl gcpo_sim_switch
  .type gcpo_sim_switch,@function
gcpo_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gcpo_sim_switch, .-gcpo_sim_switch
)");
#endif

struct fiber {
#if defined(GCPO_SIM_ASM_SWITCH)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  void* stack = nullptr;
};

struct fiber_set {
#if defined(GCPO_SIM_ASM_SWITCH)
  void* scheduler_sp = nullptr;
#else
  ucontext_t scheduler;
#endif
  std::vector<fiber> f;
  block* b = nullptr;
  const std::function<void()>* body = nullptr;
  int starting = 0;  // the fiber being entered for the first time
  ~fiber_set() {
    for (auto& x : f)
      if (x.stack) munmap(x.stack, fiber_stack);
  }
};
thread_local fiber_set* t_fibers = nullptr;

void set_builtins(const dim3& grid, const dim3& blk, uint3 bidx, int t) {
  const unsigned ut = static_cast<unsigned>(t);
  threadIdx = uint3{ut % blk.x, (ut / blk.x) % blk.y, ut / (blk.x * blk.y)};
  blockIdx = bidx;
  blockDim = blk;
  gridDim = grid;
  t_tid = t;
}

void switch_to_scheduler(fiber_set& fs, int t) {
#if defined(GCPO_SIM_ASM_SWITCH)
  gcpo_sim_switch(&fs.f[static_cast<std::size_t>(t)].sp, fs.scheduler_sp);
#else
  swapcontext(&fs.f[static_cast<std::size_t>(t)].ctx, &fs.scheduler);
#endif
}

#if defined(GCPO_SIM_ASM_SWITCH)
[[noreturn]] void fiber_entry() {
  fiber_set& fs = *t_fibers;
  const int t = fs.starting;
  fs.b->run_fiber(t, *fs.body);
  switch_to_scheduler(fs, t);  // never resumed: the thread has exited
  std::abort();
}
#else
void fiber_entry(int t) {
  fiber_set& fs = *t_fibers;
  fs.b->run_fiber(t, *fs.body);
}  // returns to fs.scheduler (uc_link)
#endif

void fiber_yield(block&, int t) { switch_to_scheduler(*t_fibers, t); }

/// Runs the block's n threads as fibers, one at a time, in the block's turn order.
void run_fibers(block& b, int n, const std::function<void()>& body, const dim3& grid, const dim3& blk, uint3 bidx) {
  thread_local std::unique_ptr<fiber_set> fs_store;
  if (!fs_store) fs_store = std::make_unique<fiber_set>();
  fiber_set& fs = *fs_store;
  if (static_cast<int>(fs.f.size()) < n) fs.f.resize(static_cast<std::size_t>(n));
  fs.b = &b;
  fs.body = &body;
  t_fibers = &fs;
  t_block = &b;
  for (int t = 0; t < n; ++t) {
    fiber& x = fs.f[static_cast<std::size_t>(t)];
    if (!x.stack) {
      x.stack = mmap(nullptr, fiber_stack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (x.stack == MAP_FAILED) {
        std::fprintf(stderr, "gcpo-sim: cannot map a fiber stack\n");
        std::abort();
      }
    }
#if defined(GCPO_SIM_ASM_SWITCH)
    // A fresh stack as gcpo_sim_switch leaves it: MXCSR / x87 control word, six saved
    // registers, and fiber_entry as the return address (entered as if called: rsp % 16 == 8).
    auto top = reinterpret_cast<std::uintptr_t>(x.stack) + fiber_stack;
    top &= ~static_cast<std::uintptr_t>(15);
    auto* sp = reinterpret_cast<std::uint64_t*>(top) - 1;  // after `ret`: rsp % 16 == 8, as after a call
    *--sp = reinterpret_cast<std::uint64_t>(&fiber_entry);
    for (int r = 0; r < 6; ++r) *--sp = 0;
    --sp;
    std::uint32_t csr[2];
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(csr[1]));
    std::memcpy(sp, csr, 8);
    x.sp = sp;
#else
    getcontext(&x.ctx);
    x.ctx.uc_stack.ss_sp = x.stack;
    x.ctx.uc_stack.ss_size = fiber_stack;
    x.ctx.uc_link = &fs.scheduler;
    makecontext(&x.ctx, reinterpret_cast<void (*)()>(&fiber_entry), 1, t);
#endif
  }
  for (int next = b.next_to_run(); next >= 0; next = b.next_to_run()) {
    set_builtins(grid, blk, bidx, next);
    fs.starting = next;
#if defined(GCPO_SIM_ASM_SWITCH)
    gcpo_sim_switch(&fs.scheduler_sp, fs.f[static_cast<std::size_t>(next)].sp);
#else
    swapcontext(&fs.scheduler, &fs.f[static_cast<std::size_t>(next)].ctx);
#endif
  }
  t_block = nullptr;
  t_fibers = nullptr;
}

block& current(const char* what) {
  if (t_block == nullptr) {
    std::fprintf(stderr, "gcpo-sim: %s called outside a simulated kernel\n", what);
    std::abort();
  }
  return *t_block;
}

constexpr std::size_t max_dynamic_smem = 227 * 1024;  // sm_90's opt-in limit per block

cudaError_t run_launch(const detail::launch_desc& launched, const std::function<void()>& body) {
  g_launches.fetch_add(1);
  detail::launch_desc d = launched;
  const unsigned limit = g_grid_limit.load();
  if (limit && d.grid.x > limit) d.grid.x = limit;
  const unsigned long long nthreads = static_cast<unsigned long long>(d.block.x) * d.block.y * d.block.z;
  std::ostringstream cfg;
  cfg << "grid (" << d.grid.x << "," << d.grid.y << "," << d.grid.z << "), block (" << d.block.x << "," << d.block.y
      << "," << d.block.z << "), " << d.smem << " bytes of dynamic shared memory";
  if (nthreads == 0 || nthreads > 1024 || d.block.z > 64 || d.grid.x == 0 || d.grid.y == 0 || d.grid.z == 0 ||
      d.grid.x > 0x7fffffffu || d.grid.y > 65535 || d.grid.z > 65535) {
    add_report(report_kind::bad_launch, d.kernel, "invalid configuration: " + cfg.str());
    return set_error(cudaErrorInvalidConfiguration);
  }
  if (d.smem > max_dynamic_smem) {
    add_report(report_kind::bad_launch, d.kernel, "too much shared memory: " + cfg.str());
    return set_error(cudaErrorInvalidValue);
  }
  const bool serial = current_schedule() == schedule::serial;
  // Dynamic shared memory with guard zones, poisoned (the device leaves it uninitialised).
  std::vector<unsigned char> dyn_store(d.smem + 2 * guard_bytes + 256);
  unsigned char* dyn = dyn_store.data() + guard_bytes;
  dyn += (256 - reinterpret_cast<std::uintptr_t>(dyn) % 256) % 256;
  bool ok = true;
  for (unsigned bz = 0; bz < d.grid.z && ok; ++bz)
    for (unsigned by = 0; by < d.grid.y && ok; ++by)
      for (unsigned bx = 0; bx < d.grid.x && ok; ++bx) {
        std::memset(dyn - guard_bytes, guard_byte, d.smem + 2 * guard_bytes);
        std::memset(dyn, 0xcd, d.smem);
        const uint3 bidx{bx, by, bz};
        block b(d, bidx, static_cast<int>(nthreads), serial, dyn, d.smem);
        if (serial) run_fibers(b, static_cast<int>(nthreads), body, d.grid, d.block, bidx);
        else pool::get().run(static_cast<int>(nthreads), [&](int t) {
          const unsigned ut = static_cast<unsigned>(t);
          threadIdx = uint3{ut % d.block.x, (ut / d.block.x) % d.block.y, ut / (d.block.x * d.block.y)};
          blockIdx = bidx;
          blockDim = d.block;
          gridDim = d.grid;
          t_block = &b;
          t_tid = t;
          b.run_thread(t, body);
          t_block = nullptr;
        });
        const std::string where =
            "block (" + std::to_string(bx) + "," + std::to_string(by) + "," + std::to_string(bz) + ") ";
        std::size_t f = 0, l = 0;
        if (guard_damage(dyn + d.smem, guard_bytes, f, l)) {
          std::ostringstream os;
          os << where << "wrote bytes " << f << ".." << l << " past the end of its " << d.smem
             << " bytes of dynamic shared memory";
          add_report(report_kind::out_of_bounds, d.kernel, os.str());
          ok = false;
        }
        if (!check_guards(d.kernel, where)) ok = false;
        if (b.failed()) ok = false;
      }
  if (!ok) {
    g_sticky_error.store(cudaErrorLaunchFailure);
    return set_error(cudaErrorLaunchFailure);
  }
  return cudaSuccess;
}

}  // namespace

std::vector<report> reports() {
  std::lock_guard<std::mutex> lk(g_reports_m);
  return g_reports;
}
void clear_reports() {
  std::lock_guard<std::mutex> lk(g_reports_m);
  g_reports.clear();
}
void clear_sticky_error() {
  g_sticky_error.store(cudaSuccess);
  g_last_error.store(cudaSuccess);
}

schedule current_schedule() {
  int s = g_schedule.load();
  if (s < 0) {
    const char* e = std::getenv("GCPO_SIM_SCHEDULE");
    if (e && std::strcmp(e, "serial") == 0) {
#if defined(GCPO_SIM_TSAN)
      std::fprintf(stderr, "gcpo-sim: GCPO_SIM_SCHEDULE=serial runs fibers, which ThreadSanitizer cannot follow\n");
      std::abort();
#endif
      s = 1;
    }
    else if (e && std::strcmp(e, "concurrent") == 0) s = 0;
    else if (e && *e) {
      std::fprintf(stderr, "gcpo-sim: GCPO_SIM_SCHEDULE=%s: expected serial or concurrent\n", e);
      std::abort();
    } else {
#if defined(GCPO_SIM_TSAN)
      s = 0;  // ThreadSanitizer needs the threads to run freely
#else
      s = 1;  // deterministic
#endif
    }
    g_schedule.store(s);
  }
  return s == 1 ? schedule::serial : schedule::concurrent;
}
#if defined(GCPO_SIM_TSAN)
namespace {
std::atomic<int> g_races{0};
}
bool under_thread_sanitizer() { return true; }
int race_reports() { return g_races.load(); }
#else
bool under_thread_sanitizer() { return false; }
int race_reports() { return 0; }
#endif

void set_grid_limit(unsigned blocks) { g_grid_limit.store(blocks); }
unsigned grid_limit() { return g_grid_limit.load(); }
unsigned long long launch_count() { return g_launches.load(); }
void reset_launch_count() { g_launches.store(0); }

void set_schedule(schedule s) { g_schedule.store(s == schedule::serial ? 1 : 0); }

namespace detail {

void launch(const launch_desc& d, std::function<void()> body) {
  const launch_desc copy = d;
  const cudaError_t e = submit(d.stream, [copy, body]() { return run_launch(copy, body); });
  set_error(e);
}

int barrier(bar_op op, int pred, site s) { return current(bar_name(op)).barrier(t_tid, op, pred, s); }

std::uint64_t warp_collective(warp_op op, unsigned mask, std::uint64_t bits, int arg, int width, site s) {
  return current(op_name(op)).warp(t_tid, op, mask, bits, arg, width, s);
}

void* dynamic_shared_memory(std::size_t* bytes) {
  block& b = current("dynamic shared memory");
  if (bytes) *bytes = b.dynamic_bytes();
  return b.dynamic_shared();
}

}  // namespace detail
}  // namespace gcpo_sim

// --- the runtime API -------------------------------------------------------------------------------

using gcpo_sim::add_report;
using gcpo_sim::report_kind;

cudaError_t cudaGetDeviceCount(int* count) {
  const char* e = std::getenv("GCPO_SIM_NO_DEVICE");
  *count = (e && *e && std::strcmp(e, "0") != 0) ? 0 : 1;
  return *count ? cudaSuccess : gcpo_sim::set_error(cudaErrorNoDevice);
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : gcpo_sim::set_error(cudaErrorInvalidValue); }
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return gcpo_sim::set_error(cudaErrorInvalidValue);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(gcpo_sim::max_dynamic_smem); break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: return gcpo_sim::set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return static_cast<cudaError_t>(gcpo_sim::g_sticky_error.load()); }
cudaError_t cudaDeviceReset() {
  gcpo_sim::clear_sticky_error();
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const int sticky = gcpo_sim::g_sticky_error.load();
  const int e = gcpo_sim::g_last_error.exchange(cudaSuccess);
  return static_cast<cudaError_t>(sticky != cudaSuccess ? sticky : e);
}
cudaError_t cudaPeekAtLastError() {
  const int sticky = gcpo_sim::g_sticky_error.load();
  return static_cast<cudaError_t>(sticky != cudaSuccess ? sticky : gcpo_sim::g_last_error.load());
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (simulator: GCPO_SIM_NO_DEVICE)";
    case cudaErrorLaunchFailure: return "unspecified launch failure (simulator: see the gcpo-sim report)";
    default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  *ptr = nullptr;
  const std::size_t total = gcpo_sim::guard_bytes + bytes + gcpo_sim::guard_bytes;
  auto* raw = static_cast<unsigned char*>(std::aligned_alloc(256, (total + 255) / 256 * 256));
  if (raw == nullptr) return gcpo_sim::set_error(cudaErrorMemoryAllocation);
  unsigned char* user = raw + gcpo_sim::guard_bytes;
  std::memset(user, 0xcc, bytes);  // the device's memory is uninitialised
  gcpo_sim::poison_guards(user, bytes);
  {
    std::lock_guard<std::mutex> lk(gcpo_sim::g_alloc_m);
    gcpo_sim::g_allocs[reinterpret_cast<std::uintptr_t>(user)] = gcpo_sim::allocation{raw, bytes};
  }
  *ptr = user;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  gcpo_sim::check_guards("cudaFree", "");
  std::lock_guard<std::mutex> lk(gcpo_sim::g_alloc_m);
  auto it = gcpo_sim::g_allocs.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == gcpo_sim::g_allocs.end()) {
    add_report(report_kind::bad_argument, "cudaFree", "pointer not returned by cudaMalloc");
    return gcpo_sim::set_error(cudaErrorInvalidDevicePointer);
  }
#if defined(GCPO_SIM_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(it->second.raw, it->second.bytes + 2 * gcpo_sim::guard_bytes);
#endif
  std::free(it->second.raw);
  gcpo_sim::g_allocs.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, std::size_t bytes, cudaStream_t stream) {
  if (!gcpo_sim::check_range(ptr, bytes, "cudaMemset")) return gcpo_sim::set_error(cudaErrorInvalidValue);
  return gcpo_sim::set_error(gcpo_sim::submit(stream, [ptr, value, bytes]() {
    if (bytes) std::memset(ptr, value, bytes);
    return cudaSuccess;
  }));
}
cudaError_t cudaMemset(void* ptr, int value, std::size_t bytes) { return cudaMemsetAsync(ptr, value, bytes, nullptr); }
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind, cudaStream_t stream) {
  if (!gcpo_sim::check_range(dst, bytes, "cudaMemcpy (destination)") ||
      !gcpo_sim::check_range(src, bytes, "cudaMemcpy (source)"))
    return gcpo_sim::set_error(cudaErrorInvalidValue);
  return gcpo_sim::set_error(gcpo_sim::submit(stream, [dst, src, bytes]() {
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
  }));
}
cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = new CUstream_st();
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) { return cudaStreamCreate(stream); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (stream == nullptr) return gcpo_sim::set_error(cudaErrorInvalidResourceHandle);
  delete stream->capture;
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream && stream->capture) return gcpo_sim::set_error(cudaErrorStreamCaptureUnsupported);
  return static_cast<cudaError_t>(gcpo_sim::g_sticky_error.load());
}
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  if (stream == nullptr) return gcpo_sim::set_error(cudaErrorStreamCaptureUnsupported);  // the legacy stream
  if (stream->capture) return gcpo_sim::set_error(cudaErrorInvalidValue);
  stream->capture = new CUgraph_st();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (stream == nullptr || stream->capture == nullptr) return gcpo_sim::set_error(cudaErrorInvalidValue);
  *graph = stream->capture;
  stream->capture = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (stream && stream->capture) return gcpo_sim::set_error(cudaErrorStreamCaptureUnsupported);
  for (const auto& n : exec->nodes) {
    const cudaError_t e = gcpo_sim::submit(stream, n);
    if (e != cudaSuccess) return gcpo_sim::set_error(e);
  }
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

#if defined(GCPO_SIM_TSAN)
// ThreadSanitizer calls this (a weak hook in its runtime) for every report it prints.
extern "C" void __tsan_on_report(void*) { gcpo_sim::g_races.fetch_add(1); }
#endif
