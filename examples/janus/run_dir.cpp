// examples/janus/run_dir.cpp - see run_dir.hpp.
#include "run_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace janus {
namespace fs = std::filesystem;

namespace {

constexpr const char* kTmpTag = ".janus-tmp-";
constexpr const char* kOldTag = ".janus-old-";

std::string errno_text() { return std::strerror(errno); }

std::string parent_of(const std::string& path) {
  const fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

/// "<base><tag><pid>" -> base and pid; false when `name` is not of that form.
bool split_tagged(const std::string& name, const char* tag, std::string& base, long& pid) {
  const std::size_t at = name.rfind(tag);
  if (at == std::string::npos || at == 0) return false;
  const std::string digits = name.substr(at + std::strlen(tag));
  if (digits.empty() || digits.size() > 9) return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  base = name.substr(0, at);
  pid = std::strtol(digits.c_str(), nullptr, 10);
  return pid > 0;
}

bool process_alive(long pid) {
  if (pid == static_cast<long>(::getpid())) return true;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

void rename_or_throw(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw std::runtime_error("cannot rename " + from + " to " + to + ": " + errno_text());
}

}  // namespace

// ---- failure injection -------------------------------------------------------------------------

bool failure_injected(const char* point) {
  const char* spec = std::getenv("GCPO_TRAINER_FAIL_AT");
  if (spec == nullptr || *spec == '\0') return false;
  std::string name = spec;
  long want = 1;
  const std::size_t at = name.find('@');
  if (at != std::string::npos) {
    want = std::strtol(name.c_str() + at + 1, nullptr, 10);
    name.resize(at);
  }
  if (name != point) return false;
  static std::mutex mu;
  static std::map<std::string, long> visits;
  std::lock_guard<std::mutex> lock(mu);
  return ++visits[name] == want;
}

void crash_point(const char* point) {
  if (!failure_injected(point)) return;
  const std::string line = std::string("janus_trainer: GCPO_TRAINER_FAIL_AT: simulated crash at '") + point + "'\n";
  (void)!::write(2, line.data(), line.size());
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached
}

// ---- atomic files --------------------------------------------------------------------------------

std::string temporary_name(const std::string& path) { return path + kTmpTag + std::to_string(::getpid()); }

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_(temporary_name(path)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot create " + tmp_ + ": " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot write " + tmp_ + ": " + errno_text());
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) throw std::runtime_error("cannot flush " + tmp_ + ": " + errno_text());
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    throw std::runtime_error("cannot close " + tmp_ + ": " + errno_text());
  }
  crash_point("write-before-rename");
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp_.c_str());
    throw std::runtime_error("cannot rename " + tmp_ + " to " + path_ + ": " + why);
  }
  fsync_directory(parent_of(path_));
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

AppendLog::AppendLog(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + errno_text());
  struct stat sb;
  if (::fstat(fd_, &sb) == 0 && sb.st_size > 0) {
    char last = '\n';
    if (::pread(fd_, &last, 1, sb.st_size - 1) == 1 && last != '\n') append_line("");
  }
  fsync_directory(parent_of(path));
}

AppendLog::~AppendLog() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendLog::append_line(const std::string& line) {
  const std::string s = line + "\n";
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t w = ::write(fd_, s.data() + done, s.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot append to " + path_ + ": " + errno_text());
    }
    done += static_cast<std::size_t>(w);
  }
}

void AppendLog::sync() {
  if (::fsync(fd_) != 0) throw std::runtime_error("cannot flush " + path_ + ": " + errno_text());
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open directory " + dir + ": " + errno_text());
  const int rc = ::fsync(fd);
  const std::string why = rc != 0 ? errno_text() : std::string();
  ::close(fd);
  // Some file systems do not support fsync on a directory (EINVAL): nothing more can be done there.
  if (rc != 0 && why != std::strerror(EINVAL)) throw std::runtime_error("cannot flush directory " + dir + ": " + why);
}

// ---- directory replacement -------------------------------------------------------------------------

std::string replace_directory(const std::string& staged, const std::string& final_dir) {
  const std::string parent = parent_of(final_dir);
  fsync_directory(staged);
  std::string aside;
  std::error_code ec;
  if (fs::exists(final_dir, ec)) {
    aside = final_dir + kOldTag + std::to_string(::getpid());
    fs::remove_all(aside, ec);
    rename_or_throw(final_dir, aside);
    fsync_directory(parent);
    crash_point("checkpoint-between-renames");
  }
  rename_or_throw(staged, final_dir);
  fsync_directory(parent);
  crash_point("checkpoint-renamed");
  return aside;
}

void remove_aside(const std::string& aside) {
  if (aside.empty()) return;
  crash_point("checkpoint-before-cleanup");
  std::error_code ec;
  fs::remove_all(aside, ec);
  if (ec) throw std::runtime_error("cannot remove " + aside + ": " + ec.message());
  fsync_directory(parent_of(aside));
}

std::string clean_stale_temporaries(const std::string& dir) {
  std::vector<fs::path> tmps, olds;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::string base;
    long pid = 0;
    if (split_tagged(name, kTmpTag, base, pid) && !process_alive(pid)) {
      tmps.push_back(it->path());
      it.disable_recursion_pending();
    } else if (split_tagged(name, kOldTag, base, pid) && !process_alive(pid)) {
      olds.push_back(it->path());
      it.disable_recursion_pending();
    }
  }
  if (ec) throw std::runtime_error("cannot list " + dir + ": " + ec.message());
  std::string report;
  for (const auto& p : tmps) {
    fs::remove_all(p, ec);
    if (ec) throw std::runtime_error("cannot remove the stale temporary " + p.string() + ": " + ec.message());
    report += "removed the unfinished temporary " + p.string() + "\n";
    fsync_directory(p.parent_path().string());
  }
  for (const auto& p : olds) {
    std::string base;
    long pid = 0;
    split_tagged(p.filename().string(), kOldTag, base, pid);
    const fs::path target = p.parent_path() / base;
    if (fs::exists(target)) {
      fs::remove_all(p, ec);
      if (ec) throw std::runtime_error("cannot remove " + p.string() + ": " + ec.message());
      report += "removed " + p.string() + " (replaced by " + target.string() + ")\n";
    } else {
      rename_or_throw(p.string(), target.string());
      report += "restored " + target.string() + " from " + p.string() + " (a replacement was interrupted)\n";
    }
    fsync_directory(p.parent_path().string());
  }
  return report;
}

// ---- lock ----------------------------------------------------------------------------------------------

namespace {

/// The pid holding a flock() on the file open as `fd`, from /proc/locks (Linux); 0 if unknown.
long flock_holder(int fd) {
  struct stat sb;
  if (::fstat(fd, &sb) != 0) return 0;
  char id[64];
  std::snprintf(id, sizeof id, "%02x:%02x:%lu", major(sb.st_dev), minor(sb.st_dev), static_cast<unsigned long>(sb.st_ino));
  std::FILE* f = std::fopen("/proc/locks", "r");
  if (f == nullptr) return 0;
  char line[512];
  long pid = 0;
  while (pid == 0 && std::fgets(line, sizeof line, f) != nullptr) {
    // "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234 0 EOF"
    char kind[16], mode[16], rw[16], dev[64];
    long p = 0;
    if (std::sscanf(line, "%*[^:]: %15s %15s %15s %ld %63s", kind, mode, rw, &p, dev) == 5 &&
        std::strcmp(kind, "FLOCK") == 0 && std::strcmp(dev, id) == 0)
      pid = p;
  }
  std::fclose(f);
  return pid;
}

}  // namespace

RunLock::RunLock(const std::string& dir) {
  // The lock file is created empty and never written: taking the lock changes no file of the
  // run (the holder's pid is looked up in /proc/locks when the lock is busy).
  const std::string path = (fs::path(dir) / kLockFileName).string();
  fd_ = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot open the lock file " + path + ": " + errno_text());
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const long holder = err == EWOULDBLOCK ? flock_holder(fd_) : 0;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw std::runtime_error("the run directory " + dir + " is in use by another janus_trainer" +
                               (holder > 0 ? " (pid " + std::to_string(holder) + ")" : std::string()) +
                               ": it holds the lock " + path + "; wait for it to finish or use another --out");
    throw std::runtime_error("cannot lock " + path + ": " + std::strerror(err));
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays (removing it would race)
}

}  // namespace janus
