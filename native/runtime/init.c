// tsnet-init: PID 1 for `tsnet run --init` (docker-init/tini's job). Runs its
// arguments as a child, forwards every signal it can catch to it, reaps every
// zombie the container makes, and exits with the child's status (128+N for a
// signal). Static, so it works in any image.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int first = 1;
  if (argc > 1 && strcmp(argv[1], "--") == 0) first = 2;
  if (argc <= first) {
    fprintf(stderr, "usage: tsnet-init [--] COMMAND [ARG...]\n");
    return 2;
  }
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  pid_t child = fork();
  if (child < 0) {
    perror("tsnet-init: fork");
    return 125;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    // Its own process group, so that a terminal's ^C reaches it as it would any shell job.
    setpgid(0, 0);
    execvp(argv[first], argv + first);
    fprintf(stderr, "tsnet-init: exec %s: %s\n", argv[first], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  for (;;) {
    siginfo_t si;
    struct timespec tick = {.tv_sec = 1};
    int sig = sigtimedwait(&all, &si, &tick);
    if (sig > 0 && sig != SIGCHLD) kill(child, sig);
    int st;
    pid_t w;
    while ((w = waitpid(-1, &st, WNOHANG)) > 0)
      if (w == child) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
}
