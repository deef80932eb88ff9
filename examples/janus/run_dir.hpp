// examples/janus/run_dir.hpp - the files of a run directory, safely: atomic writes (temporary
// file, fsync, rename, fsync of the directory), atomic replacement of a directory (checkpoints),
// the run directory's lock, the clean-up of what a crash left behind, and the failure-injection
// switch the trainer's tests use to simulate a crash at a named point. Plain C++17 + POSIX (no
// libtorch): the task library writes its PNG and JSONL files through it too.
//
// Temporary names. Everything the trainer writes is first written under a name that ends in
// ".janus-tmp-<pid>" (files and staged checkpoint directories) in the destination's directory;
// a checkpoint being replaced is renamed aside to "<name>.janus-old-<pid>" until its successor
// is in place. clean_stale_temporaries() removes the first kind and restores or removes the
// second; no other name is ever touched.
#pragma once

#include <cstdint>
#include <string>

namespace janus {

/// A file written under a temporary name next to `path` and renamed into place on commit()
/// (after fsync of the file; the directory is fsynced after the rename). Destroyed before
/// commit(), it removes the temporary file.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Appends bytes; throws std::runtime_error naming the file on an I/O error.
  void write(const void* data, std::size_t n);
  /// fsync, close, [failure point "write-before-rename"], rename over `path`, fsync the directory.
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

/// Writes `bytes` to `path` atomically (see AtomicFile).
void write_file_atomic(const std::string& path, const std::string& bytes);

/// A file only ever appended to (metrics.jsonl): opened with O_APPEND, one write() per line.
/// If the file's last line was cut short by a crash, a newline is appended first, so that the
/// next line starts on its own (the cut line stays: a reader skips what does not parse).
class AppendLog {
 public:
  explicit AppendLog(const std::string& path);
  ~AppendLog();
  AppendLog(const AppendLog&) = delete;
  AppendLog& operator=(const AppendLog&) = delete;
  /// Appends `line` and a newline.
  void append_line(const std::string& line);
  /// fsync: every appended line is on disk.
  void sync();

 private:
  std::string path_;
  int fd_ = -1;
};

/// fsync of a directory (makes renames and creations inside it durable). Throws on error.
void fsync_directory(const std::string& dir);

/// The temporary name of `path` for this process: "<path>.janus-tmp-<pid>".
std::string temporary_name(const std::string& path);

/// Replaces directory `final_dir` by the complete directory `staged` (same parent) so that a
/// complete one of the two exists at every moment: an existing `final_dir` is renamed aside to
/// "<final_dir>.janus-old-<pid>", `staged` renamed to `final_dir`, the parent fsynced. Returns
/// the aside path ("" when there was no `final_dir`): the caller removes it with
/// remove_aside() once nothing refers to it any more. Failure points "checkpoint-between-renames"
/// (old aside, new not yet in) and "checkpoint-renamed" (new in).
std::string replace_directory(const std::string& staged, const std::string& final_dir);
/// Removes a directory renamed aside by replace_directory (failure point "checkpoint-before-cleanup" first).
void remove_aside(const std::string& aside);

/// After a crash: under `dir` (recursively), removes the trainer's temporary files and staged
/// directories ("*.janus-tmp-<pid>") of processes that no longer run, and for every directory
/// renamed aside ("X.janus-old-<pid>", process gone) restores it as X when X is missing (the
/// crash came between the two renames) or removes it when X exists. Returns a description of
/// what it did, one line per entry ("" when nothing was left behind). The caller must hold the
/// run directory's lock.
std::string clean_stale_temporaries(const std::string& dir);

/// The exclusive lock of a run directory: flock() on "<dir>/.lock", held until destruction
/// (or the process's end, however it ends). The lock file stays empty (taking the lock changes
/// no file); a refused lock names the holder's pid (from /proc/locks).
class RunLock {
 public:
  /// Locks `dir` (which must exist) without waiting; throws std::runtime_error saying which
  /// process holds it when another one does.
  explicit RunLock(const std::string& dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

/// The name of the lock file inside a run directory.
constexpr const char* kLockFileName = ".lock";

/// Failure injection for the trainer's tests (never set it otherwise). GCPO_TRAINER_FAIL_AT
/// holds "<point>" or "<point>@<k>" (the k-th time the point is reached, 1-based; default 1).
/// failure_injected(point) counts the visits of `point` and returns true on the chosen one;
/// crash_point(point) then kills the process with SIGKILL (no clean-up, no flush, like a crash
/// or power loss), after one line on stderr.
bool failure_injected(const char* point);
void crash_point(const char* point);

}  // namespace janus
