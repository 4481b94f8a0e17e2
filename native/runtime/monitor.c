// tsnet-monitor: the per-container process (conmon's role) and the exec helper.
//
//   tsnet-monitor run PLAN     fd 3: the sync pipe to the tsnet that started it
//   tsnet-monitor create PLAN  the OCI runtime's helper (see "create (OCI)" below)
//   tsnet-monitor exec PLAN    joins a running container and runs a process in it
//   tsnet-runc ARGS            (this binary under that name) the native OCI client, client.c
//
// run: clones the container (new namespaces), puts it in its cgroups, lets it set
// itself up from the plan (setup.c), reports "pid N" and then "started" (or
// "error CODE MESSAGE") on fd 3, and stays its parent and subreaper: it holds the
// container's stdio, writes the json-file log, serves attach clients on a unix
// socket, records the exit status, and runs the plan's cleanup command at the end.
// It decides nothing: every choice was made by TypeScript in the plan.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "plan.h"
#include "setup.h"
#include "client.h"

#define MAX_CLIENTS 16
#define LOG_LINE_MAX 16384

static const struct plan *P;
static int syncfd = -1;

static void container_console(int csock, int bind_console);

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  if (syncfd < 0) return;
  char buf[1200];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) (void)!write(syncfd, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

static void write_all(int fd, const char *b, size_t n) {
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    b += w, n -= (size_t)w;
  }
}

// ---------------------------------------------------------------- json-file log

struct logfile {
  const char *path;
  long long max_size; // 0: no rotation
  int max_files;
  int fd;
  long long size;
};
struct linebuf {
  const char *stream;
  char buf[LOG_LINE_MAX];
  size_t len;
};
static struct logfile logf_ = {.fd = -1};
static struct linebuf lines[2] = {{.stream = "stdout"}, {.stream = "stderr"}};

static void log_open(void) {
  logf_.fd = open(logf_.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st;
  logf_.size = logf_.fd >= 0 && fstat(logf_.fd, &st) == 0 ? st.st_size : 0;
}

static void log_rotate(void) {
  close(logf_.fd);
  char from[4096], to[4096];
  for (int i = logf_.max_files - 1; i >= 1; i--) {
    if (i == 1) snprintf(from, sizeof from, "%s", logf_.path);
    else snprintf(from, sizeof from, "%s.%d", logf_.path, i - 1);
    snprintf(to, sizeof to, "%s.%d", logf_.path, i);
    rename(from, to);
  }
  if (logf_.max_files <= 1) truncate(logf_.path, 0);
  log_open();
}

static void now_rfc3339(char *out, size_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%09ldZ", ts.tv_nsec);
}

static void log_record(struct linebuf *l) {
  if (!logf_.path || logf_.fd < 0 || !l->len) {
    l->len = 0;
    return;
  }
  static char rec[LOG_LINE_MAX * 6 + 128];
  size_t k = 0;
  k += (size_t)snprintf(rec + k, sizeof rec - k, "{\"log\":\"");
  for (size_t i = 0; i < l->len; i++) {
    unsigned char c = (unsigned char)l->buf[i];
    if (c == '"' || c == '\\') rec[k++] = '\\', rec[k++] = (char)c;
    else if (c == '\n') rec[k++] = '\\', rec[k++] = 'n';
    else if (c == '\r') rec[k++] = '\\', rec[k++] = 'r';
    else if (c == '\t') rec[k++] = '\\', rec[k++] = 't';
    else if (c < 0x20) k += (size_t)snprintf(rec + k, sizeof rec - k, "\\u%04x", c);
    else rec[k++] = (char)c;
  }
  char t[64];
  now_rfc3339(t, sizeof t);
  k += (size_t)snprintf(rec + k, sizeof rec - k, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n", l->stream, t);
  if (logf_.max_size > 0 && logf_.size > 0 && logf_.size + (long long)k > logf_.max_size) log_rotate();
  if (logf_.fd >= 0) {
    write_all(logf_.fd, rec, k);
    logf_.size += (long long)k;
  }
  l->len = 0;
}

// Docker's json-file: one record per line; a line longer than 16K is split.
static void log_data(struct linebuf *l, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    l->buf[l->len++] = b[i];
    if (b[i] == '\n' || l->len == LOG_LINE_MAX) log_record(l);
  }
}

// ---------------------------------------------------------------- attach clients
// Frames: a type byte and a 4-byte big-endian length. To clients: 1 stdout,
// 2 stderr, 3 exit (the code in decimal). From clients: 0 stdin, 4 close stdin,
// 5 resize ("ROWS COLS").

struct client {
  int fd;
  unsigned char in[65536 + 5];
  size_t inlen;
};
static struct client clients[MAX_CLIENTS];
static int nclients;

static void drop_client(int i) {
  close(clients[i].fd);
  clients[i] = clients[--nclients];
}

static int send_all(int fd, const void *b, size_t n) {
  const char *p = b;
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

static void broadcast(unsigned char type, const char *b, size_t n) {
  unsigned char h[5] = {type, (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
  for (int i = nclients - 1; i >= 0; i--)
    if (send_all(clients[i].fd, h, 5) < 0 || send_all(clients[i].fd, b, n) < 0) drop_client(i);
}

static void add_client(int listenfd) {
  int fd = accept4(listenfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  if (nclients == MAX_CLIENTS) {
    close(fd);
    return;
  }
  // A reader that stops reading for 10 s is let go rather than stalling the container.
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  clients[nclients].fd = fd;
  clients[nclients].inlen = 0;
  nclients++;
}

static int stdin_fd = -1, tty_master = -1;

// Consumes whole frames from a client; returns -1 when it should go.
static int client_input(struct client *c) {
  ssize_t n = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
  if (n <= 0) return -1;
  c->inlen += (size_t)n;
  size_t off = 0;
  while (c->inlen - off >= 5) {
    unsigned char *h = c->in + off;
    size_t len = ((size_t)h[1] << 24) | ((size_t)h[2] << 16) | ((size_t)h[3] << 8) | h[4];
    if (len > 65536) return -1;
    if (c->inlen - off < 5 + len) break;
    const char *data = (const char *)h + 5;
    if (h[0] == 0 && stdin_fd >= 0) {
      write_all(stdin_fd, data, len);
    } else if (h[0] == 4 && stdin_fd >= 0 && tty_master < 0) {
      close(stdin_fd);
      stdin_fd = -1;
    } else if (h[0] == 5 && tty_master >= 0) {
      char tmp[32];
      snprintf(tmp, sizeof tmp, "%.*s", (int)(len < 31 ? len : 31), data);
      struct winsize ws = {0};
      if (sscanf(tmp, "%hu %hu", &ws.ws_row, &ws.ws_col) == 2) ioctl(tty_master, TIOCSWINSZ, &ws);
    }
    off += 5 + len;
  }
  memmove(c->in, c->in + off, c->inlen - off);
  c->inlen -= off;
  return 0;
}

// ---------------------------------------------------------------- helpers

static long long oom_count(void) {
  const struct directive *d = plan_find(P, "oom");
  if (!d || d->argc < 3) return 0;
  FILE *f = fopen(d->argv[1], "re");
  if (!f) return 0;
  char key[64];
  long long v, found = 0;
  while (fscanf(f, "%63s %lld", key, &v) == 2)
    if (strcmp(key, d->argv[2]) == 0) found = v;
  fclose(f);
  return found;
}

static void write_exit(int code, int sig, int oom) {
  const char *path = plan_get(P, "exitfile");
  if (!path) return;
  char tmp[4200], t[64], body[256];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  now_rfc3339(t, sizeof t);
  int n = snprintf(body, sizeof body, "exitcode %d\nsignal %d\noomkilled %d\nfinished %s\n", code, sig, oom, t);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  write_all(fd, body, (size_t)n);
  fsync(fd);
  close(fd);
  rename(tmp, path);
}

static void run_cleanup(void) {
  const struct directive *d = plan_find(P, "cleanup");
  if (!d || d->argc < 2) return;
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
    setsid();
    execv(d->argv[1], d->argv + 1);
    _exit(127);
  }
  // We are the subreaper: reap everything until the cleanup itself is done.
  for (int st; pid > 0;) {
    pid_t w = waitpid(-1, &st, 0);
    if (w == pid || (w < 0 && errno != EINTR)) break;
  }
}

// Reads the byte `ready` ('R', or 'N' for namespaces made) or "E..." (a setup
// failure) from the child; 1 ready, 0 EOF, -1 error in msg.
static int read_child(int fd, char *msg, size_t n, char ready) {
  size_t k = 0;
  for (;;) {
    ssize_t r = read(fd, msg + k, n - 1 - k);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    k += (size_t)r;
    if (msg[0] == ready) return 1;
    if (k == n - 1 || msg[k - 1] == '\n') break;
  }
  msg[k] = 0;
  if (!k) return 0;
  if (msg[k - 1] == '\n') msg[k - 1] = 0;
  memmove(msg, msg + 1, k); // drop the 'E'
  return -1;
}

// Puts pid into each of the plan's cgroups; says why not on the sync fd.
static int join_cgroups(pid_t pid) {
  for (int i = 0; i < P->count; i++) {
    const struct directive *d = &P->d[i];
    if (strcmp(d->argv[0], "cgroup") != 0 || d->argc < 2) continue;
    char path[4200], num[32];
    snprintf(path, sizeof path, "%s/cgroup.procs", d->argv[1]);
    int n = snprintf(num, sizeof num, "%d", pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, num, (size_t)n) != n) {
      say("error 125 join cgroup %s: %s\n", d->argv[1], strerror(errno));
      if (fd >= 0) close(fd);
      return -1;
    }
    close(fd);
  }
  return 0;
}

// A file descriptor sent over a unix socket (SCM_RIGHTS), or -1.
static int recv_fd(int s) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  if (recvmsg(s, &m, MSG_CMSG_CLOEXEC) <= 0) return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

static int exit_code_of(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

// ---------------------------------------------------------------- run

static int cmd_run(void) {
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  if (getsid(0) != getpid()) setsid();
  const char *cl = plan_get(P, "clone");
  unsigned long flags = cl ? strtoul(cl, NULL, 0) : 0;
  int tty = plan_find(P, "tty") != NULL, want_stdin = plan_find(P, "stdin") != NULL;
  const struct directive *ld = plan_find(P, "log");
  if (ld && ld->argc >= 4) {
    logf_.path = ld->argv[1];
    logf_.max_size = atoll(ld->argv[2]);
    logf_.max_files = atoi(ld->argv[3]);
    log_open();
  }

  int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1};
  // A terminal is made by the container in its own devpts (so tty(1) names /dev/pts/N
  // there, as under Docker) and its master passed back to us over this socket pair.
  int ptys[2] = {-1, -1};
  if (tty) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ptys) < 0) {
      say("error 125 socketpair: %s\n", strerror(errno));
      return 1;
    }
  } else {
    if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || (want_stdin && pipe2(inp, O_CLOEXEC) < 0)) {
      say("error 125 pipes: %s\n", strerror(errno));
      return 1;
    }
    if (want_stdin) stdin_fd = inp[1];
  }

  int listenfd = -1;
  const char *sock = plan_get(P, "attach");
  if (sock) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof a.sun_path) {
      say("error 125 attach socket path too long: %s\n", sock);
      return 1;
    }
    strcpy(a.sun_path, sock);
    unlink(sock);
    listenfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listenfd < 0 || bind(listenfd, (struct sockaddr *)&a, sizeof a) < 0 || chmod(sock, 0600) < 0 || listen(listenfd, 8) < 0) {
      say("error 125 attach socket %s: %s\n", sock, strerror(errno));
      return 1;
    }
  }

  int go[2], rep[2];
  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
    say("error 125 pipes: %s\n", strerror(errno));
    return 1;
  }
  pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
  if (pid < 0) {
    say("error 125 clone: %s\n", strerror(errno));
    return 1;
  }
  if (pid == 0) {
    report_to(rep[1]);
    char b;
    if (read(go[0], &b, 1) != 1) _exit(125);
    setup_namespaces(P);
    if (!tty) {
      int null = open("/dev/null", O_RDWR | O_CLOEXEC);
      dup2(want_stdin ? inp[0] : null, 0), dup2(outp[1], 1), dup2(errp[1], 2);
    }
    setup_rootfs(P, NULL);
    if (tty) close(ptys[0]), container_console(ptys[1], 1);
    setup_process(P);
    if (write(rep[1], "R", 1) != 1) _exit(125);
    if (read(go[0], &b, 1) != 1) _exit(125);
    // The container gets default signal handling whatever we inherited.
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    exec_process(P);
  }
  close(go[0]), close(rep[1]);
  if (ptys[1] >= 0) close(ptys[1]);
  if (outp[1] >= 0) close(outp[1]);
  if (errp[1] >= 0) close(errp[1]);
  if (inp[0] >= 0) close(inp[0]);

  long long oom_before = oom_count();
  char msg[1100];
  if (join_cgroups(pid) < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 1;
  }
  (void)!write(go[1], "1", 1);
  int r = read_child(rep[0], msg, sizeof msg, 'R');
  if (r == 1 && tty && (tty_master = recv_fd(ptys[0])) < 0) {
    kill(pid, SIGKILL);
    r = 0;
  }
  if (r != 1) {
    int st = 0;
    waitpid(pid, &st, 0);
    say("error %d %s\n", exit_code_of(st) == 0 || exit_code_of(st) == 137 ? 125 : exit_code_of(st), r < 0 ? msg : "container setup failed");
    return 1;
  }
  if (tty) close(ptys[0]), stdin_fd = tty_master;
  say("pid %d\n", pid);
  if (plan_find(P, "waitattach") && listenfd >= 0) {
    // Wait for the starting tsnet to attach (or to go away).
    struct pollfd w[2] = {{.fd = listenfd, .events = POLLIN}, {.fd = syncfd, .events = 0}};
    while (poll(w, 2, -1) < 0 && errno == EINTR) {
    }
    if (w[0].revents & POLLIN) add_client(listenfd);
  }
  (void)!write(go[1], "1", 1);
  close(go[1]);
  r = read_child(rep[0], msg, sizeof msg, 'R');
  close(rep[0]);
  int st = 0, exited = 0;
  if (r < 0) {
    // exec failed: nothing ran, so nothing to record or clean up (the starter undoes the rest).
    waitpid(pid, &st, 0);
    say("error %d %s\n", exit_code_of(st), msg);
    if (listenfd >= 0) unlink(sock);
    return 1;
  }
  say("started\n");
  close(syncfd);
  syncfd = -1;

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  int outs[2] = {tty ? tty_master : outp[0], tty ? -1 : errp[0]};
  struct timespec deadline = {0};
  char buf[65536];
  for (;;) {
    if (!exited) {
      pid_t w;
      while ((w = waitpid(-1, &st, WNOHANG)) > 0)
        if (w == pid) {
          exited = 1;
          break;
        }
      if (exited) clock_gettime(CLOCK_MONOTONIC, &deadline), deadline.tv_sec += 2;
    }
    if (exited && outs[0] < 0 && outs[1] < 0) break;
    struct pollfd fds[4 + MAX_CLIENTS];
    int nf = 0;
    fds[nf++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    fds[nf++] = (struct pollfd){.fd = listenfd, .events = POLLIN};
    fds[nf++] = (struct pollfd){.fd = outs[0], .events = POLLIN};
    fds[nf++] = (struct pollfd){.fd = outs[1], .events = POLLIN};
    for (int i = 0; i < nclients; i++) fds[nf++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
    int timeout = -1;
    if (exited) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long ms = (deadline.tv_sec - now.tv_sec) * 1000 + (deadline.tv_nsec - now.tv_nsec) / 1000000;
      if (ms <= 0) break; // something outside the namespace still holds the pipes
      timeout = (int)ms;
    }
    int n = poll(fds, (nfds_t)nf, timeout);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) continue;
    if (fds[0].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) add_client(listenfd);
    for (int s = 0; s < 2; s++) {
      if (!fds[2 + s].revents) continue;
      ssize_t k = read(outs[s], buf, sizeof buf);
      if (k > 0) {
        log_data(&lines[s], buf, (size_t)k);
        broadcast((unsigned char)(1 + s), buf, (size_t)k);
      } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        log_record(&lines[s]);
        if (outs[s] != tty_master) close(outs[s]);
        outs[s] = -1;
      }
    }
    for (int i = nclients - 1; i >= 0; i--)
      if (fds[4 + i].revents && client_input(&clients[i]) < 0) drop_client(i);
  }
  log_record(&lines[0]);
  log_record(&lines[1]);
  int code = exit_code_of(st);
  int oom = oom_count() > oom_before;
  write_exit(code, WIFSIGNALED(st) ? WTERMSIG(st) : 0, oom);
  char c[16];
  int cn = snprintf(c, sizeof c, "%d", code);
  broadcast(3, c, (size_t)cn);
  // Half-close and let each client go first: a client that writes (a resize, stdin)
  // after we are gone would lose what it has not read yet.
  for (int i = 0; i < nclients; i++) shutdown(clients[i].fd, SHUT_WR);
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += 2;
  while (nclients) {
    struct pollfd cf[MAX_CLIENTS];
    for (int i = 0; i < nclients; i++) cf[i] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ms = (until.tv_sec - t.tv_sec) * 1000 + (until.tv_nsec - t.tv_nsec) / 1000000;
    if (ms <= 0 || poll(cf, (nfds_t)nclients, (int)ms) <= 0) break;
    for (int i = nclients - 1; i >= 0; i--) {
      if (!cf[i].revents) continue;
      char sink[4096];
      if (read(clients[i].fd, sink, sizeof sink) <= 0) drop_client(i);
    }
  }
  while (nclients) drop_client(0);
  if (listenfd >= 0) close(listenfd), unlink(sock);
  if (logf_.fd >= 0) close(logf_.fd);
  if (tty_master >= 0) close(tty_master);
  run_cleanup();
  return 0;
}

static pid_t exec_child;
static void forward(int sig) {
  if (exec_child > 0) kill(exec_child, sig);
}

// ---------------------------------------------------------------- create (OCI)
// The runc-shaped path: no monitor stays. The child sets itself up and waits on a
// pipe it holds both ends of; `start` writes a byte to /proc/PID/fd/W. The helper
// exits once the child is ready, so the child is reparented to the caller's
// subreaper (containerd's shim, conmon), as runc's init is. With "foreground"
// the helper stays its parent instead and exits with its status (`run` without -d).
// Sync on fd 3 (a socket): "pid N" (namespaces made), then it waits for a line
// ("go" after the hooks), then "created W" or "error CODE MESSAGE".

static int connect_unix(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) return errno = ENAMETOOLONG, -1;
  strcpy(a.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = errno;
    close(s);
    return errno = e, -1;
  }
  return s;
}

// Sends fd over the connected unix socket s (SCM_RIGHTS).
static int send_fd(int s, int fd) {
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS, c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return sendmsg(s, &m, 0) < 0 ? -1 : 0;
}

// In the container, after pivot_root (or exec's setns): a pty from its own devpts
// (so tty(1) names /dev/pts/N there), made the controlling terminal and stdio,
// for the first process bound over /dev/console, its master sent to the console
// socket, as runc does.
static void container_console(int csock, int bind_console) {
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  char path[128];
  if (master < 0 || unlockpt(master) < 0 || ptsname_r(master, path, sizeof path) != 0) fail(125, "allocate a pty in the container: %s", strerror(errno));
  const struct directive *ws = plan_find(P, "winsize");
  if (ws && ws->argc >= 3) {
    struct winsize w = {.ws_row = (unsigned short)atoi(ws->argv[1]), .ws_col = (unsigned short)atoi(ws->argv[2])};
    ioctl(master, TIOCSWINSZ, &w);
  }
  int slave = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) fail(125, "open %s: %s", path, strerror(errno));
  if (bind_console) {
    int cfd = open("/dev/console", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (cfd >= 0) close(cfd);
    if (mount(path, "/dev/console", NULL, MS_BIND, NULL) < 0) fail(125, "bind the console: %s", strerror(errno));
  }
  setsid();
  if (ioctl(slave, TIOCSCTTY, 0) < 0) fail(125, "controlling terminal: %s", strerror(errno));
  dup2(slave, 0), dup2(slave, 1), dup2(slave, 2);
  close(slave);
  if (send_fd(csock, master) < 0) fail(125, "send the console: %s", strerror(errno));
  close(master);
  close(csock);
}

static int read_line(int fd, char *buf, size_t n) {
  size_t k = 0;
  while (k < n - 1) {
    ssize_t r = read(fd, buf + k, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (buf[k] == '\n') break;
    k++;
  }
  buf[k] = 0;
  return (int)k;
}

static int cmd_create(void) {
  const char *cl = plan_get(P, "clone");
  unsigned long flags = cl ? strtoul(cl, NULL, 0) : 0;
  const char *console_sock = plan_get(P, "consolesocket");
  int foreground = plan_find(P, "foreground") != NULL;
  for (int i = 0; i < P->count; i++) {
    const struct directive *d = &P->d[i];
    if (strcmp(d->argv[0], "nsjoin") != 0 || d->argc < 3 || strcmp(d->argv[1], "pid") != 0) continue;
    int fd = open(d->argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWPID) < 0) {
      say("error 125 join the pid namespace %s: %s\n", d->argv[2], strerror(errno));
      return 1;
    }
    close(fd);
  }
  int csock = -1;
  if (console_sock && (csock = connect_unix(console_sock)) < 0) {
    say("error 125 connect to the console socket %s: %s\n", console_sock, strerror(errno));
    return 1;
  }
  int go[2], rep[2], sp[2];
  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0 || pipe2(sp, O_CLOEXEC) < 0) {
    say("error 125 pipes: %s\n", strerror(errno));
    return 1;
  }
  pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
  if (pid < 0) {
    say("error 125 clone: %s\n", strerror(errno));
    return 1;
  }
  if (pid == 0) {
    report_to(rep[1]);
    close(syncfd);
    char b;
    if (read(go[0], &b, 1) != 1) _exit(125);
    setup_namespaces(P);
    if (write(rep[1], "N", 1) != 1) _exit(125);
    if (read(go[0], &b, 1) != 1) _exit(125);
    setup_rootfs(P, NULL);
    if (csock >= 0) container_console(csock, 1);
    setup_process(P);
    const char *file = resolve_exec(P);
    if (write(rep[1], "R", 1) != 1) _exit(125);
    close(rep[1]);
    // Created: wait for `start`.
    for (;;) {
      ssize_t r = read(sp[0], &b, 1);
      if (r == 1) break;
      if (r < 0 && errno == EINTR) continue;
      _exit(125);
    }
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    exec_resolved(P, file);
  }
  close(go[0]), close(rep[1]), close(sp[0]);
  if (csock >= 0) close(csock);
  if (join_cgroups(pid) < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 1;
  }
  char msg[1100];
  int st = 0;
  (void)!write(go[1], "1", 1);
  int r = read_child(rep[0], msg, sizeof msg, 'N');
  if (r != 1) {
    waitpid(pid, &st, 0);
    say("error %d %s\n", exit_code_of(st) == 0 ? 125 : exit_code_of(st), r < 0 ? msg : "container setup failed");
    return 1;
  }
  say("pid %d\n", pid);
  char line[64];
  if (read_line(syncfd, line, sizeof line) <= 0 || strcmp(line, "go") != 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 1;
  }
  (void)!write(go[1], "1", 1);
  close(go[1]);
  r = read_child(rep[0], msg, sizeof msg, 'R');
  close(rep[0]);
  if (r != 1) {
    waitpid(pid, &st, 0);
    say("error %d %s\n", exit_code_of(st) == 0 ? 125 : exit_code_of(st), r < 0 ? msg : "container setup failed");
    return 1;
  }
  say("created %d\n", sp[1]);
  close(sp[1]);
  if (!foreground) return 0;
  // run without -d: we are its parent until it ends; signals to us are its.
  exec_child = pid;
  struct sigaction sa = {.sa_handler = forward};
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return 125;
  say("exited %d\n", exit_code_of(st));
  return exit_code_of(st);
}

// ---------------------------------------------------------------- exec

static int cmd_exec(void) {
  const char *target = plan_get(P, "join");
  if (!target) fail(125, "plan: exec needs join PID");
  static const struct { const char *name; int type; } kinds[] = {
      {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"cgroup", CLONE_NEWCGROUP}, {"mnt", CLONE_NEWNS}};
  int fds[6];
  for (int i = 0; i < 6; i++) {
    char path[64], mine[64];
    snprintf(path, sizeof path, "/proc/%s/ns/%s", target, kinds[i].name);
    fds[i] = open(path, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0) fail(125, "container process %s: %s", target, strerror(errno));
    // A namespace the container shares with us (an OCI config may keep the host's) is not joined.
    snprintf(mine, sizeof mine, "/proc/self/ns/%s", kinds[i].name);
    struct stat a, b;
    if (fstat(fds[i], &a) == 0 && stat(mine, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) close(fds[i]), fds[i] = -1;
  }
  for (int i = 0; i < P->count; i++) {
    const struct directive *d = &P->d[i];
    if (strcmp(d->argv[0], "cgroup") != 0 || d->argc < 2) continue;
    char path[4200], num[32];
    snprintf(path, sizeof path, "%s/cgroup.procs", d->argv[1]);
    int n = snprintf(num, sizeof num, "%d", getpid());
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, num, (size_t)n) != n) fail(125, "join cgroup %s: %s", d->argv[1], strerror(errno));
    close(fd);
  }
  // The console socket is the caller's path too: connected before we enter the container's mounts.
  const char *console_sock = plan_get(P, "consolesocket");
  int csock = -1;
  if (console_sock && (csock = connect_unix(console_sock)) < 0) fail(125, "connect to the console socket %s: %s", console_sock, strerror(errno));
  // The pid file is the caller's path: its directory is opened before we enter the container's mounts.
  const char *pidfile = plan_get(P, "pidfile");
  int piddir = -1;
  char pidbase[4096] = {0};
  if (pidfile) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", pidfile);
    char *slash = strrchr(dir, '/');
    snprintf(pidbase, sizeof pidbase, "%s", slash ? slash + 1 : dir);
    if (slash) *slash = 0;
    piddir = open(slash ? (*dir ? dir : "/") : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (piddir < 0 || !*pidbase) fail(125, "pid file %s: %s", pidfile, strerror(errno));
  }
  for (int i = 0; i < 6; i++) {
    if (fds[i] < 0) continue;
    if (setns(fds[i], kinds[i].type) < 0) fail(125, "join the %s namespace: %s", kinds[i].name, strerror(errno));
    close(fds[i]);
  }
  // detach: exit once the process has exec'd (a CLOEXEC pipe tells), leaving it to our parent's subreaper.
  int detach = plan_find(P, "detach") != NULL;
  int ep[2] = {-1, -1};
  if (detach && pipe2(ep, O_CLOEXEC) < 0) fail(125, "pipe: %s", strerror(errno));
  exec_child = fork();
  if (exec_child < 0) fail(125, "fork: %s", strerror(errno));
  if (exec_child == 0) {
    if (detach) close(ep[0]), report_to(ep[1]);
    if (chdir("/") < 0) fail(125, "chdir /: %s", strerror(errno));
    if (csock >= 0) container_console(csock, 0);
    setup_process(P);
    exec_process(P);
  }
  if (csock >= 0) close(csock);
  if (pidfile) {
    char tmp[4200], num[32];
    snprintf(tmp, sizeof tmp, ".%s.tmp", pidbase);
    int n = snprintf(num, sizeof num, "%d", exec_child);
    int fd = openat(piddir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, num, (size_t)n) != n || renameat(piddir, tmp, piddir, pidbase) < 0) fail(125, "pid file %s: %s", pidfile, strerror(errno));
    close(fd);
    close(piddir);
  }
  if (detach) {
    close(ep[1]);
    char msg[1100];
    ssize_t k = read(ep[0], msg, sizeof msg - 1);
    if (k <= 0) return 0; // exec'd
    msg[k] = 0;
    if (k > 1 && msg[k - 1] == '\n') msg[k - 1] = 0;
    fprintf(stderr, "tsnet: %s\n", msg[0] == 'E' ? msg + 1 : msg);
    int st;
    waitpid(exec_child, &st, 0);
    return exit_code_of(st);
  }
  struct sigaction sa = {.sa_handler = forward};
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  int st;
  while (waitpid(exec_child, &st, 0) < 0)
    if (errno != EINTR) return 125;
  return exit_code_of(st);
}

int monitor_create(const struct plan *p, int sync) {
  P = p;
  syncfd = sync;
  signal(SIGPIPE, SIG_IGN);
  return cmd_create();
}

int monitor_exec(const struct plan *p) {
  P = p;
  return cmd_exec();
}

int main(int argc, char **argv) {
  const char *self = strrchr(argv[0], '/');
  if (strcmp(self ? self + 1 : argv[0], "tsnet-runc") == 0) return runc_client(argc, argv);
  if (argc != 3 || (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "exec") != 0 && strcmp(argv[1], "create") != 0)) {
    fprintf(stderr, "usage: tsnet-monitor run|create|exec PLAN (started by tsnet, not by hand)\n");
    return 2;
  }
  static struct plan plan;
  if (plan_load(argv[2], &plan) < 0) return 125;
  P = &plan;
  if (strcmp(argv[1], "exec") == 0) return cmd_exec();
  syncfd = 3;
  if (fcntl(syncfd, F_GETFD) < 0) syncfd = -1;
  else fcntl(syncfd, F_SETFD, FD_CLOEXEC);
  signal(SIGPIPE, SIG_IGN);
  if (strcmp(argv[1], "create") == 0) return cmd_create();
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  return cmd_run();
}
