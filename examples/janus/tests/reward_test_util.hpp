// examples/janus/tests/reward_test_util.hpp - helpers of the pickle and reward-client tests:
// scratch directories, running python3, free ports, and the loopback reward server as an RAII
// child process (killed when the test ends, also when it fails).
#pragma once

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.hpp"

#ifndef JANUS_PYTHON3
#error "JANUS_PYTHON3 must be defined (path of the python3 interpreter)"
#endif

namespace janus_rw_test {

using janus_test::TempDir;  // a scratch directory (test_support.hpp)

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

struct RunResult {
  int status = -1;  ///< exit status, or -1 when it did not exit normally
  std::string output;  ///< stdout and stderr together
};

/// Run python3 on a script file with arguments; output captured.
inline RunResult run_python(const std::string& script_path, const std::vector<std::string>& args = {}) {
  std::string cmd = std::string("'") + JANUS_PYTHON3 + "' '" + script_path + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  RunResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed for " + cmd);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released): nothing listens there.
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) { ::close(fd); throw std::runtime_error("bind() failed"); }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// examples/janus/tools/loopback_reward_server.py as a child process on a free port of 127.0.0.1.
/// Its stderr goes to `stderr_path` (shown by log() when a test fails). Killed in the destructor.
class LoopbackServer {
 public:
  explicit LoopbackServer(std::vector<std::string> args, std::string stderr_path) : stderr_path_(std::move(stderr_path)) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe() failed");
    std::vector<std::string> argv_s = {JANUS_PYTHON3, JANUS_LOOPBACK_SERVER, "--port", "0"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork() failed");
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      const int err = ::open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) ::dup2(err, 2);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<char*> argv;
      for (auto& s : argv_s) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::perror("execv");
      ::_exit(127);
    }
    ::close(out[1]);
    // The first stdout line is the port; Flask's import takes a moment.
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      pollfd pf{out[0], POLLIN, 0};
      if (left <= 0 || ::poll(&pf, 1, static_cast<int>(left)) <= 0) break;
      char c[256];
      const ssize_t n = ::read(out[0], c, sizeof c);
      if (n <= 0) break;
      line.append(c, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    try {
      port_ = std::stoi(line);
    } catch (...) {
      port_ = 0;
    }
    if (port_ <= 0) {
      stop();
      throw std::runtime_error("the loopback reward server did not print its port (got '" + line + "'); its stderr:\n" + log());
    }
  }
  ~LoopbackServer() { stop(); }
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const {
    try {
      return read_file(stderr_path_);
    } catch (...) {
      return "(no stderr file)";
    }
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string stderr_path_;

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {  // up to 2 s, then SIGKILL
      int st;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) { pid_ = -1; return; }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }
};

}  // namespace janus_rw_test
