#define _GNU_SOURCE
#include "setup.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sched.h>
#include <unistd.h>

extern char **environ;
static int report_fd = 2;

void report_to(int fd) { report_fd = fd; }

void fail(int code, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + 1, sizeof buf - 2, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > (int)sizeof buf - 3) n = (int)sizeof buf - 3;
  // "E" + message: the monitor tells it apart from the ready byte.
  buf[0] = 'E';
  buf[n + 1] = '\n';
  if (report_fd == 2) {
    (void)!write(2, "tsnet: ", 7);
    (void)!write(2, buf + 1, (size_t)n + 1);
  } else {
    (void)!write(report_fd, buf, (size_t)n + 2);
  }
  _exit(code);
}

static long num(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 0);
  if (errno || *end) fail(125, "plan: bad number for %s: %s", what, s);
  return v;
}

static unsigned long long unum(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || *end) fail(125, "plan: bad number for %s: %s", what, s);
  return v;
}

// ---------------------------------------------------------------- paths in the root

static int open_in_root(int rootfd, const char *rel) {
  struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  while (*rel == '/') rel++;
  if (!*rel) rel = ".";
  return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
}

// mkdir -p of rel inside the root, every component resolved inside it (a symlink
// in the image can never lead a mount out of the rootfs). isFile: the last
// component is made a file. Returns an O_PATH fd of the target.
static int make_in_root(int rootfd, const char *rel, int isFile) {
  int fd = open_in_root(rootfd, rel);
  if (fd >= 0) return fd;
  if (errno != ENOENT) return -1;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", rel);
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/') path[--len] = 0;
  for (char *c = path + 1;; c++) {
    if (*c != '/' && *c != 0) continue;
    int last = *c == 0;
    char saved = *c;
    *c = 0;
    char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    int parent;
    if (slash) {
      *slash = 0;
      parent = open_in_root(rootfd, path);
      *slash = '/';
    } else {
      parent = open_in_root(rootfd, ".");
    }
    if (parent < 0) return -1;
    // An O_PATH fd cannot be a *at() base for creation: reopen the directory.
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", parent);
    int dir = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(parent);
    if (dir < 0) return -1;
    int r;
    if (last && isFile) {
      r = openat(dir, name, O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (r >= 0) close(r);
      else if (errno == EEXIST) r = 0;
    } else {
      r = mkdirat(dir, name, 0755);
      if (r < 0 && errno == EEXIST) r = 0;
    }
    int e = errno;
    close(dir);
    if (r < 0) {
      errno = e;
      return -1;
    }
    *c = saved;
    if (last) break;
  }
  return open_in_root(rootfd, rel);
}

static void fdpath(char *buf, size_t n, int fd) { snprintf(buf, n, "/proc/self/fd/%d", fd); }

// mount KIND SRC DST TYPE FLAGS DATA (KIND: dir|file, the shape DST is made in).
static void do_mount(int rootfd, const struct directive *d) {
  if (d->argc < 7) fail(125, "plan: mount needs 6 fields");
  const char *src = d->argv[2], *dst = d->argv[3], *type = d->argv[4], *data = d->argv[6];
  unsigned long flags = (unsigned long)unum(d->argv[5], "mount flags");
  int fd = make_in_root(rootfd, dst, strcmp(d->argv[1], "file") == 0);
  if (fd < 0) fail(125, "mount %s: cannot make the mount point %s: %s", src, dst, strerror(errno));
  char target[64];
  fdpath(target, sizeof target, fd);
  const char *t = strcmp(type, "none") == 0 ? NULL : type;
  const char *dt = *data ? data : NULL;
  if (flags & MS_BIND) {
    if (mount(src, target, NULL, flags & (MS_BIND | MS_REC), NULL) < 0) fail(125, "bind mount %s on %s: %s", src, dst, strerror(errno));
    unsigned long extra = flags & ~(MS_BIND | MS_REC);
    if (extra) {
      // The bind is new: reopen the target so the remount hits the new mount.
      close(fd);
      fd = open_in_root(rootfd, dst);
      fdpath(target, sizeof target, fd);
      if (fd < 0 || mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0) fail(125, "remount %s (flags %#lx): %s", dst, extra, strerror(errno));
    }
  } else if (mount(*src ? src : type, target, t, flags, dt) < 0) {
    fail(125, "mount %s on %s: %s", type, dst, strerror(errno));
  }
  close(fd);
}

static void do_symlink(int rootfd, const char *target, const char *rel) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", rel);
  char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  if (slash) *slash = 0;
  int parent = slash ? make_in_root(rootfd, path, 0) : open_in_root(rootfd, ".");
  if (parent < 0) fail(125, "symlink %s: parent: %s", rel, strerror(errno));
  char proc[64];
  fdpath(proc, sizeof proc, parent);
  int dir = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0 || (symlinkat(target, dir, name) < 0 && errno != EEXIST)) fail(125, "symlink %s -> %s: %s", rel, target, strerror(errno));
  close(dir);
  close(parent);
}

// mknod PATH TYPE(c|b|p) MAJOR MINOR MODE UID GID: an OCI device node in the rootfs.
static void do_mknod(int rootfd, const struct directive *d) {
  const char *rel = d->argv[1];
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", rel);
  char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  if (slash) *slash = 0;
  int parent = slash && slash != path ? make_in_root(rootfd, path, 0) : open_in_root(rootfd, ".");
  if (parent < 0) fail(125, "device %s: parent: %s", rel, strerror(errno));
  char proc[64];
  fdpath(proc, sizeof proc, parent);
  int dir = open(proc, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  close(parent);
  if (dir < 0) fail(125, "device %s: parent: %s", rel, strerror(errno));
  mode_t type = d->argv[2][0] == 'b' ? S_IFBLK : d->argv[2][0] == 'p' ? S_IFIFO : S_IFCHR;
  mode_t mode = (mode_t)unum(d->argv[5], "device mode") & 07777;
  dev_t dev = makedev((unsigned)unum(d->argv[3], "major"), (unsigned)unum(d->argv[4], "minor"));
  unlinkat(dir, name, 0); // a node the image or a default put there: the config's wins
  if (mknodat(dir, name, type | mode, dev) < 0) fail(125, "mknod %s: %s", rel, strerror(errno));
  if (fchownat(dir, name, (uid_t)num(d->argv[6], "uid"), (gid_t)num(d->argv[7], "gid"), AT_SYMLINK_NOFOLLOW) < 0) fail(125, "chown %s: %s", rel, strerror(errno));
  if (fchmodat(dir, name, mode, 0) < 0) fail(125, "chmod %s: %s", rel, strerror(errno));
  close(dir);
}

void setup_namespaces(const struct plan *p) {
  static const struct { const char *name; int type; } kinds[] = {
      {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"net", CLONE_NEWNET}, {"cgroup", CLONE_NEWCGROUP}};
  for (int i = 0; i < p->count; i++) {
    const struct directive *d = &p->d[i];
    if (strcmp(d->argv[0], "nsjoin") != 0 || d->argc < 3) continue;
    int type = -1;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
      if (strcmp(kinds[k].name, d->argv[1]) == 0) type = kinds[k].type;
    if (type < 0) continue; // pid is joined by the parent, before clone
    int fd = open(d->argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, type) < 0) fail(125, "join the %s namespace %s: %s", d->argv[1], d->argv[2], strerror(errno));
    close(fd);
  }
  if (plan_find(p, "cgroupns") && unshare(CLONE_NEWCGROUP) < 0) fail(125, "cgroup namespace: %s", strerror(errno));
  // sysctl KEY VALUE: in the container's namespaces (a net.* key is its network's).
  for (int i = 0; i < p->count; i++) {
    const struct directive *d = &p->d[i];
    if (strcmp(d->argv[0], "sysctl") != 0 || d->argc < 3) continue;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "/proc/sys/%s", d->argv[1]);
    for (char *c = path + 10; c < path + n; c++)
      if (*c == '.') *c = '/';
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, d->argv[2], strlen(d->argv[2])) < 0) fail(125, "sysctl %s=%s: %s", d->argv[1], d->argv[2], strerror(errno));
    close(fd);
  }
  const char *adj = plan_get(p, "oomscoreadj");
  if (adj) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, adj, strlen(adj)) < 0) fail(125, "oom_score_adj %s: %s", adj, strerror(errno));
    close(fd);
  }
}

void setup_rootfs(const struct plan *p, const char *console) {
  const char *root = plan_get(p, "root");
  if (!root) fail(125, "plan: no root");
  const char *prop = plan_get(p, "propagation");
  if (mount(NULL, "/", NULL, prop ? (unsigned long)unum(prop, "propagation") : MS_REC | MS_PRIVATE, NULL) < 0) fail(125, "make / private: %s", strerror(errno));
  if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0) fail(125, "bind the rootfs %s: %s", root, strerror(errno));
  int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) fail(125, "open rootfs %s: %s", root, strerror(errno));
  for (int i = 0; i < p->count; i++) {
    const struct directive *d = &p->d[i];
    const char *n = d->argv[0];
    if (strcmp(n, "mount") == 0) {
      do_mount(rootfd, d);
    } else if (strcmp(n, "mkdir") == 0 && d->argc >= 2) {
      int fd = make_in_root(rootfd, d->argv[1], 0);
      if (fd < 0) fail(125, "mkdir %s: %s", d->argv[1], strerror(errno));
      close(fd);
    } else if (strcmp(n, "symlink") == 0 && d->argc >= 3) {
      do_symlink(rootfd, d->argv[1], d->argv[2]);
    } else if (strcmp(n, "mknod") == 0 && d->argc >= 8) {
      do_mknod(rootfd, d);
    } else if (strcmp(n, "propagate") == 0 && d->argc >= 3) {
      int fd = open_in_root(rootfd, d->argv[1]);
      char target[64];
      fdpath(target, sizeof target, fd);
      if (fd < 0 || mount(NULL, target, NULL, (unsigned long)unum(d->argv[2], "propagation"), NULL) < 0) fail(125, "set propagation of %s: %s", d->argv[1], strerror(errno));
      close(fd);
    } else if (strcmp(n, "console") == 0 && d->argc >= 2 && console) {
      int fd = make_in_root(rootfd, d->argv[1], 1);
      char target[64];
      fdpath(target, sizeof target, fd);
      if (fd < 0 || mount(console, target, NULL, MS_BIND, NULL) < 0) fail(125, "bind the console: %s", strerror(errno));
      close(fd);
    }
  }
  close(rootfd);
  // pivot_root with the old root stacked under the new one, then detached.
  if (chdir(root) < 0) fail(125, "chdir %s: %s", root, strerror(errno));
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail(125, "pivot_root: %s", strerror(errno));
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) fail(125, "old root slave: %s", strerror(errno));
  if (umount2(".", MNT_DETACH) < 0) fail(125, "detach the old root: %s", strerror(errno));
  if (chdir("/") < 0) fail(125, "chdir /: %s", strerror(errno));
  for (int i = 0; i < p->count; i++) {
    const struct directive *d = &p->d[i];
    const char *n = d->argv[0];
    if (strcmp(n, "mask") == 0 && d->argc >= 2) {
      struct stat st;
      if (lstat(d->argv[1], &st) < 0) continue; // nothing there to hide
      int r = S_ISDIR(st.st_mode) ? mount("tmpfs", d->argv[1], "tmpfs", MS_RDONLY, NULL) : mount("/dev/null", d->argv[1], NULL, MS_BIND, NULL);
      if (r < 0) fail(125, "mask %s: %s", d->argv[1], strerror(errno));
    } else if (strcmp(n, "readonly") == 0 && d->argc >= 2) {
      if (access(d->argv[1], F_OK) < 0) continue;
      if (mount(d->argv[1], d->argv[1], NULL, MS_BIND | MS_REC, NULL) < 0 ||
          mount(NULL, d->argv[1], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail(125, "read-only %s: %s", d->argv[1], strerror(errno));
    }
  }
  if (plan_find(p, "rootreadonly") && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) fail(125, "read-only rootfs: %s", strerror(errno));
  const char *host = plan_get(p, "hostname");
  if (host && sethostname(host, strlen(host)) < 0) fail(125, "sethostname %s: %s", host, strerror(errno));
  const char *domain = plan_get(p, "domainname");
  if (domain && setdomainname(domain, strlen(domain)) < 0) fail(125, "setdomainname %s: %s", domain, strerror(errno));
}

// ---------------------------------------------------------------- the process

static int last_cap(void) {
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  char buf[16] = {0};
  if (fd >= 0) {
    (void)!read(fd, buf, sizeof buf - 1);
    close(fd);
  }
  int v = atoi(buf);
  return v > 0 ? v : 40;
}

static uint32_t scmp_errno_action(const char *a) {
  if (strcmp(a, "allow") == 0) return SCMP_ACT_ALLOW;
  if (strcmp(a, "kill") == 0) return SCMP_ACT_KILL_PROCESS;
  if (strcmp(a, "killthread") == 0) return SCMP_ACT_KILL_THREAD;
  if (strcmp(a, "trap") == 0) return SCMP_ACT_TRAP;
  if (strcmp(a, "log") == 0) return SCMP_ACT_LOG;
  if (strncmp(a, "errno:", 6) == 0) return SCMP_ACT_ERRNO((uint16_t)num(a + 6, "errno"));
  fail(125, "plan: unknown seccomp action %s", a);
}

static enum scmp_compare scmp_op(const char *o) {
  static const struct { const char *n; enum scmp_compare c; } ops[] = {
      {"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT}, {"le", SCMP_CMP_LE}, {"eq", SCMP_CMP_EQ},
      {"ge", SCMP_CMP_GE}, {"gt", SCMP_CMP_GT}, {"me", SCMP_CMP_MASKED_EQ}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strcmp(o, ops[i].n) == 0) return ops[i].c;
  fail(125, "plan: unknown seccomp operator %s", o);
}

// seccomp DEFAULT; then: syscall NAME ACTION [INDEX OP VALUE VALUE2]...
static void load_seccomp(const struct plan *p) {
  const char *def = plan_get(p, "seccomp");
  if (!def) return;
  scmp_filter_ctx ctx = seccomp_init(scmp_errno_action(def));
  if (!ctx) fail(125, "seccomp_init failed");
  // The filter must not stop the process from going on into exec when NNP is unset.
  seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  for (int i = 0; i < p->count; i++) {
    const struct directive *d = &p->d[i];
    if (strcmp(d->argv[0], "syscall") != 0 || d->argc < 3) continue;
    int nr = seccomp_syscall_resolve_name(d->argv[1]);
    if (nr == __NR_SCMP_ERROR) continue; // not a syscall of this kernel/arch
    struct scmp_arg_cmp args[6];
    unsigned n = 0;
    for (int a = 3; a + 3 < d->argc + 0 && n < 6; a += 4) {
      args[n].arg = (unsigned)num(d->argv[a], "seccomp arg index");
      args[n].op = scmp_op(d->argv[a + 1]);
      args[n].datum_a = unum(d->argv[a + 2], "seccomp value");
      args[n].datum_b = unum(d->argv[a + 3], "seccomp value");
      n++;
    }
    int r = seccomp_rule_add_array(ctx, scmp_errno_action(d->argv[2]), nr, n, args);
    if (r < 0 && r != -EEXIST) fail(125, "seccomp rule for %s: %s", d->argv[1], strerror(-r));
  }
  int r = seccomp_load(ctx);
  if (r < 0) fail(125, "seccomp load: %s", strerror(-r));
  seccomp_release(ctx);
}

void setup_process(const struct plan *p) {
  int nnp = plan_find(p, "nnp") != NULL;
  for (int i = 0; i < p->count; i++) {
    const struct directive *d = &p->d[i];
    if (strcmp(d->argv[0], "rlimit") != 0 || d->argc < 4) continue;
    struct rlimit rl = {.rlim_cur = (rlim_t)unum(d->argv[2], "rlimit"), .rlim_max = (rlim_t)unum(d->argv[3], "rlimit")};
    if (setrlimit((int)num(d->argv[1], "rlimit resource"), &rl) < 0) fail(125, "setrlimit %s %s:%s: %s", d->argv[1], d->argv[2], d->argv[3], strerror(errno));
  }
  // Without no_new_privs, only a privileged process may load a filter: load it while
  // this one still is (the profile lets the remaining setup calls through), as runc does.
  if (!nnp) load_seccomp(p);
  const struct directive *caps = plan_find(p, "caps");
  uint64_t bnd = 0, eff = 0, prm = 0, inh = 0, amb = 0;
  if (caps) {
    if (caps->argc < 6) fail(125, "plan: caps needs 5 masks");
    bnd = unum(caps->argv[1], "caps"), eff = unum(caps->argv[2], "caps"), prm = unum(caps->argv[3], "caps");
    inh = unum(caps->argv[4], "caps"), amb = unum(caps->argv[5], "caps");
    int last = last_cap();
    for (int c = 0; c <= last; c++)
      if (!(bnd & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) fail(125, "drop capability %d: %s", c, strerror(errno));
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail(125, "keepcaps: %s", strerror(errno));
  }
  const struct directive *user = plan_find(p, "user");
  if (user) {
    if (user->argc < 4) fail(125, "plan: user needs uid gid groups");
    uid_t uid = (uid_t)num(user->argv[1], "uid");
    gid_t gid = (gid_t)num(user->argv[2], "gid");
    gid_t groups[64];
    int ng = 0;
    char list[1024];
    snprintf(list, sizeof list, "%s", user->argv[3]);
    char *save = NULL;
    for (char *g = strtok_r(list, ",", &save); g && ng < 64; g = strtok_r(NULL, ",", &save))
      if (strcmp(g, "-") != 0) groups[ng++] = (gid_t)num(g, "group");
    if (setgroups((size_t)ng, groups) < 0) fail(125, "setgroups: %s", strerror(errno));
    if (setresgid(gid, gid, gid) < 0) fail(125, "setgid %u: %s", gid, strerror(errno));
    if (setresuid(uid, uid, uid) < 0) fail(125, "setuid %u: %s", uid, strerror(errno));
  }
  if (caps) {
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2] = {
        {.effective = (uint32_t)eff, .permitted = (uint32_t)prm, .inheritable = (uint32_t)inh},
        {.effective = (uint32_t)(eff >> 32), .permitted = (uint32_t)(prm >> 32), .inheritable = (uint32_t)(inh >> 32)}};
    if (syscall(SYS_capset, &hdr, data) < 0) fail(125, "capset: %s", strerror(errno));
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for (int c = 0; c < 64; c++)
      // The kernel takes an ambient capability only when it is permitted and inheritable; runc skips the others too.
      if ((amb & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0 && errno != EPERM) fail(125, "ambient capability %d: %s", c, strerror(errno));
  }
  const char *um = plan_get(p, "umask");
  if (um) umask((mode_t)unum(um, "umask") & 0777);
  const char *cwd = plan_get(p, "cwd");
  if (cwd && chdir(cwd) < 0) fail(125, "chdir to the working directory %s: %s", cwd, strerror(errno));
  if (nnp) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(125, "no_new_privs: %s", strerror(errno));
    load_seccomp(p);
  }
}

// The command as execvp would find it, with the container's PATH; failing as exec would.
const char *resolve_exec(const struct plan *p) {
  const struct directive *args = plan_find(p, "args");
  if (!args || args->argc < 2) fail(125, "plan: no command");
  const char *cmd = args->argv[1];
  static char found[PATH_MAX];
  if (strchr(cmd, '/')) {
    if (access(cmd, F_OK) < 0) fail(127, "exec: \"%s\": %s", cmd, strerror(errno));
    if (access(cmd, X_OK) < 0) fail(126, "exec: \"%s\": %s", cmd, strerror(errno));
    return cmd;
  }
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (int i = 0; i < p->count; i++)
    if (strcmp(p->d[i].argv[0], "env") == 0 && p->d[i].argc > 1 && strncmp(p->d[i].argv[1], "PATH=", 5) == 0) path = p->d[i].argv[1] + 5;
  char dirs[8192];
  snprintf(dirs, sizeof dirs, "%s", path);
  char *save = NULL;
  for (char *dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    snprintf(found, sizeof found, "%s/%s", *dir ? dir : ".", cmd);
    struct stat st;
    if (stat(found, &st) == 0 && S_ISREG(st.st_mode) && access(found, X_OK) == 0) return found;
  }
  fail(127, "exec: \"%s\": executable file not found in $PATH", cmd);
}

// The plan's env directives as an environment block.
static char **plan_env(const struct plan *p) {
  int ne = 0;
  for (int i = 0; i < p->count; i++) ne += strcmp(p->d[i].argv[0], "env") == 0 && p->d[i].argc > 1;
  char **env = calloc((size_t)ne + 1, sizeof(char *));
  ne = 0;
  for (int i = 0; i < p->count; i++)
    if (strcmp(p->d[i].argv[0], "env") == 0 && p->d[i].argc > 1) env[ne++] = p->d[i].argv[1];
  return env;
}

// execve of a resolved path with the plan's args and env.
void exec_resolved(const struct plan *p, const char *file) {
  const struct directive *args = plan_find(p, "args");
  execve(file, args->argv + 1, plan_env(p));
  int e = errno;
  fail(e == EACCES || e == ENOEXEC ? 126 : 127, "exec %s: %s", file, strerror(e));
}

void exec_process(const struct plan *p) {
  const struct directive *args = plan_find(p, "args");
  if (!args || args->argc < 2) fail(125, "plan: no command");
  environ = plan_env(p); // execvp searches the container's PATH, not ours
  execvp(args->argv[1], args->argv + 1);
  int e = errno;
  if (e == ENOENT) fail(127, "exec: \"%s\": executable file not found in $PATH", args->argv[1]);
  fail(e == EACCES || e == ENOEXEC ? 126 : 127, "exec %s: %s", args->argv[1], strerror(e));
}
