// examples/janus/tests/launch_util.hpp - starting ranks as torchrun does, for the tests of data
// parallelism (test_distributed.cpp, test_data_parallel.cpp): a free loopback port, fork + exec
// with torchrun's variables, and waiting with a deadline. Catch2 assertions inside.
#pragma once

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace janus_launch {

using Clock = std::chrono::steady_clock;

struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = "/tmp/janus_dist_test.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  close(fd);
  return ntohs(addr.sin_port);
}

// fork + exec `argv` with `env_set` added to the environment, stdout and stderr into `log`.
inline pid_t spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env_set,
            const std::string& log) {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);  // its own process group: a deadline kills it with everything it started
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                             "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"}) {
      unsetenv(name);
    }
    for (const auto& [k, v] : env_set) setenv(k.c_str(), v.c_str(), 1);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(120);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(121);
  }
  return pid;
}

// torchrun's variables for rank `rank` of `world` on this host.
inline std::map<std::string, std::string> torchrun_env(int rank, int world, int port) {
  return {{"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(world)},
          {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
          {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", std::to_string(port)},
          {"GROUP_RANK", "0"},                  {"ROLE_RANK", std::to_string(rank)},
          {"ROLE_NAME", "default"},             {"TORCHELASTIC_USE_AGENT_STORE", "False"},
          {"TORCHELASTIC_RESTART_COUNT", "0"},  {"OMP_NUM_THREADS", "1"}};
}

struct Exit {
  bool exited = false;  // false: still running at the deadline (then killed)
  int status = 0;
  double seconds = 0;   // from the start of waiting
  int code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
  bool killed_by(int sig) const { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
};

// Waits up to `limit_s` for `pid`; past that SIGKILLs its process group and reaps it.
inline Exit wait_for(pid_t pid, double limit_s) {
  const auto start = Clock::now();
  Exit e;
  for (;;) {
    const pid_t r = waitpid(pid, &e.status, WNOHANG);
    e.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (r == pid) {
      e.exited = true;
      return e;
    }
    if (e.seconds > limit_s) {
      kill(-pid, SIGKILL);
      waitpid(pid, &e.status, 0);
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace janus_launch
