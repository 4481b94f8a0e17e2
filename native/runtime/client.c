// tsnet-runc, native (tsnet-monitor under the name tsnet-runc): runc's command
// line without a cold Node start per call. It hands its arguments and working
// directory to a warm tsnet OCI server listening in the state root
// (ROOT/.tsnet-runc.sock) and does what the server answers:
//   'o' / 'e'  bytes for stdout / stderr      'x'  exit with this code
//   'p'  a create plan: run the create helper here, with the socket as its sync
//        line channel (the container must be our child, so that it is reparented
//        to our caller's subreaper as runc's init is)
//   'q'  an exec plan: run it here and exit with its code
//   'f'  fall back: run this call in Node
// Frames are a type byte, a 4-byte little-endian length and the payload.
//
// Who it talks to: a socket in the state root (a directory of root's), whose peer
// is root or our own uid (SO_PEERCRED) and sees our mount and pid namespaces (it
// reads our paths and signals our pids). Otherwise, or when no server answers, or
// with TSNET_RUNC_SERVER=0 or TSNET_FAULT set, this call runs in Node (bin/tsnet-runc.js)
// and, when none answered, a server is started in the background for the next calls.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"

static char repo[PATH_MAX];

// The repository this binary was built in: /proc/self/exe is REPO/native/build/Release/tsnet-monitor.
static int find_repo(void) {
  ssize_t n = readlink("/proc/self/exe", repo, sizeof repo - 1);
  if (n <= 0) return -1;
  repo[n] = 0;
  for (int i = 0; i < 4; i++) {
    char *slash = strrchr(repo, '/');
    if (!slash) return -1;
    *slash = 0;
  }
  return 0;
}

static const char *node_path(void) {
  static char node[PATH_MAX];
  char file[PATH_MAX + 32];
  snprintf(file, sizeof file, "%s/dist/node-path", repo);
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, node, sizeof node - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return "node";
  node[n] = 0;
  char *nl = strchr(node, '\n');
  if (nl) *nl = 0;
  return node;
}

// This call in Node: the same arguments, the same stdio.
__attribute__((noreturn)) static void cold(int argc, char **argv) {
  char entry[PATH_MAX + 32];
  snprintf(entry, sizeof entry, "%s/bin/tsnet-runc.js", repo);
  const char *node = node_path();
  char **args = calloc((size_t)argc + 3, sizeof(char *));
  args[0] = (char *)node;
  args[1] = entry;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  execvp(node, args);
  fprintf(stderr, "tsnet-runc: cannot run %s: %s\n", node, strerror(errno));
  exit(1);
}

// A server for root, in the background, detached from us (it exits when idle).
static void start_server(const char *root) {
  pid_t pid = fork();
  if (pid != 0) {
    if (pid > 0) waitpid(pid, NULL, 0);
    return;
  }
  setsid();
  if (fork() != 0) _exit(0);
  // Not the caller's directory: a bundle (or a mount under it) must not stay busy because of us.
  if (chdir("/") < 0) _exit(127);
  int null = open("/dev/null", O_RDWR);
  dup2(null, 0), dup2(null, 1), dup2(null, 2);
  char entry[PATH_MAX + 32];
  snprintf(entry, sizeof entry, "%s/bin/tsnet-runc.js", repo);
  const char *node = node_path();
  execlp(node, node, entry, "--root", root, "--serve", (char *)NULL);
  _exit(127);
}

// The --root among runc's global flags (they come before the command word).
static const char *root_of(int argc, char **argv) {
  for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if ((strcmp(a, "--root") == 0 || strcmp(a, "-root") == 0) && i + 1 < argc) return argv[i + 1];
    if (strncmp(a, "--root=", 7) == 0) return a + 7;
    if (strncmp(a, "-root=", 6) == 0) return a + 6;
  }
  return "/run/tsnet/runtime";
}

static int same_ns(pid_t peer, const char *kind) {
  char a[64], b[64], la[128] = {0}, lb[128] = {0};
  snprintf(a, sizeof a, "/proc/%d/ns/%s", peer, kind);
  snprintf(b, sizeof b, "/proc/self/ns/%s", kind);
  return readlink(a, la, sizeof la - 1) > 0 && readlink(b, lb, sizeof lb - 1) > 0 && strcmp(la, lb) == 0;
}

static int transfer(int fd, char *p, size_t n, int out) {
  while (n) {
    ssize_t k = out ? write(fd, p, n) : read(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k, n -= (size_t)k;
  }
  return 0;
}

int runc_client(int argc, char **argv) {
  if (find_repo() < 0) {
    fprintf(stderr, "tsnet-runc: cannot find the tsnet installation from /proc/self/exe\n");
    return 1;
  }
  const char *off = getenv("TSNET_RUNC_SERVER");
  if ((off && strcmp(off, "0") == 0) || getenv("TSNET_FAULT")) cold(argc, argv);
  const char *root = root_of(argc, argv);
  char rootabs[PATH_MAX];
  if (!realpath(root, rootabs)) cold(argc, argv); // no state root yet: Node makes it
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (snprintf(a.sun_path, sizeof a.sun_path, "%s/.tsnet-runc.sock", rootabs) >= (int)sizeof a.sun_path) cold(argc, argv);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) cold(argc, argv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    start_server(rootabs);
    cold(argc, argv);
  }
  struct ucred cred;
  socklen_t cl = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || (cred.uid != 0 && cred.uid != getuid()) || !same_ns(cred.pid, "mnt") || !same_ns(cred.pid, "pid")) {
    close(fd);
    cold(argc, argv);
  }
  // The request: cwd, then each argument, NUL-terminated.
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/");
  size_t len = strlen(cwd) + 1;
  for (int i = 1; i < argc; i++) len += strlen(argv[i]) + 1;
  char *req = malloc(len + 4);
  uint32_t l32 = (uint32_t)len;
  memcpy(req, &l32, 4);
  size_t k = 4;
  memcpy(req + k, cwd, strlen(cwd) + 1), k += strlen(cwd) + 1;
  for (int i = 1; i < argc; i++) memcpy(req + k, argv[i], strlen(argv[i]) + 1), k += strlen(argv[i]) + 1;
  if (transfer(fd, req, k, 1) < 0) cold(argc, argv);
  free(req);
  int answered = 0;
  for (;;) {
    unsigned char h[5];
    if (transfer(fd, (char *)h, 5, 0) < 0) {
      if (!answered) cold(argc, argv); // the server went away before it did anything
      fprintf(stderr, "tsnet-runc: the tsnet OCI server went away\n");
      return 1;
    }
    answered = 1;
    uint32_t n;
    memcpy(&n, h + 1, 4);
    if (n > (64u << 20)) return 1;
    char *body = malloc((size_t)n + 1);
    if (!body || transfer(fd, body, n, 0) < 0) return 1;
    body[n] = 0;
    switch (h[0]) {
      case 'o':
      case 'e':
        transfer(h[0] == 'o' ? 1 : 2, body, n, 1);
        free(body);
        break;
      case 'x':
        return atoi(body);
      case 'f':
        close(fd);
        cold(argc, argv);
      case 'p': {
        static struct plan plan;
        if (plan_parse(body, n, &plan) < 0) return 1;
        monitor_create(&plan, fd); // its outcome goes to the server as lines; the server answers
        break;
      }
      case 'q': {
        static struct plan plan;
        if (plan_parse(body, n, &plan) < 0) return 1;
        close(fd);
        return monitor_exec(&plan);
      }
      default:
        fprintf(stderr, "tsnet-runc: unexpected answer from the tsnet OCI server\n");
        return 1;
    }
  }
}
