// tsnet-proxy-keeper: keeps tsnet's one userland proxy running.
//
//   tsnet-proxy-keeper PIDFILE PROGRAM [ARG...]
//
// Runs PROGRAM (Node on the proxy's main) as its child and starts it again when it
// dies any other way than by finishing (exit 0: nothing left to hold; exit 3:
// another proxy already serves), after 100 ms, doubling to at most 5 s while it
// keeps dying young (a run of 10 s resets the delay). The restarted proxy reloads
// the bindings it held from its run directory, so published ports are held again
// within a fraction of a second without waiting for the next tsnet command.
// SIGTERM or SIGINT stop the child and the keeper. It is small and dumb on
// purpose: a few hundred kilobytes resident, no decisions beyond "restart".
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace {

volatile sig_atomic_t stopping = 0;
volatile pid_t child = -1;

void OnStop(int sig) {
  stopping = 1;
  if (child > 0) kill(child, sig);
}

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void Sleep(double seconds) {
  struct timespec ts = {static_cast<time_t>(seconds), static_cast<long>((seconds - static_cast<double>(static_cast<time_t>(seconds))) * 1e9)};
  while (!stopping && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void WritePid(const char* path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, static_cast<int>(getpid()));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d", static_cast<int>(getpid()));
  if (write(fd, buf, static_cast<size_t>(n)) != n || close(fd) != 0 || rename(tmp, path) != 0) unlink(tmp);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tsnet-proxy-keeper PIDFILE PROGRAM [ARG...] (started by tsnet)\n");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnStop;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  WritePid(argv[1]);

  double delay = 0.1;
  while (!stopping) {
    double started = Now();
    pid_t pid = fork();
    if (pid < 0) {
      Sleep(delay);
      continue;
    }
    if (pid == 0) {
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      signal(SIGPIPE, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, 0);
      execv(argv[2], argv + 2);
      fprintf(stderr, "tsnet-proxy-keeper: exec %s: %s\n", argv[2], strerror(errno));
      _exit(127);
    }
    child = pid;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    child = -1;
    if (stopping) break;
    if (WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 3)) break;  // done, or another serves
    fprintf(stderr, "tsnet-proxy-keeper: the proxy (pid %d) %s %d; starting it again\n", static_cast<int>(pid),
            WIFSIGNALED(status) ? "was killed by signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    delay = Now() - started >= 10 ? 0.1 : delay;
    Sleep(delay);
    delay = delay * 2 > 5 ? 5 : delay * 2;
  }
  // Only our own pid file: a keeper that found another proxy serving leaves that one's alone.
  char buf[32] = {0};
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && atoi(buf) == static_cast<int>(getpid())) unlink(argv[1]);
  }
  return 0;
}
