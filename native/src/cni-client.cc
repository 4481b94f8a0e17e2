// tsnet CNI plugin client: the executable an orchestrator runs as tsnet-bridge,
// tsnet-ipam, tsnet-portmap or tsnet-loopback (`tsnet cni install` writes one copy
// per plugin and patches CONFIG below with the plugin's name and where this tsnet
// installation lives).
//
// A Node process costs ~25 ms before it runs a line and ~60 ms more to load a
// plugin bundle, per call. This client costs ~1 ms: it hands its environment and
// stdin to a warm tsnet CNI server over a unix socket and prints the answer.
//
// Who it talks to. The socket lives in RUN/cni, a directory that must belong to
// root (or to the caller) and be writable by nobody else, so no other user can
// put a socket there; its name is a hash of the caller's uid, network and mount
// namespaces and the server bundle's identity, so a caller only ever reaches a
// server that sees what it sees and runs the installed code. Before it sends a
// byte, the client also checks the listening process's credentials (SO_PEERCRED):
// root or the caller's own uid, or it does not talk to it.
//
// When no server answers, the client starts one in the background (it exits after
// an idle period; not when the caller's mount namespace was made for this call
// alone, as `ip netns exec` does) and runs this call itself: it execs Node on the plugin's own
// bundle with the same stdin. Any failure talking to a server ends the same way,
// so the server is an accelerator, never a single point of failure
// (TSNET_CNI_SERVER=0 turns it off).
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

// Patched by `tsnet cni install`: "plugin=NAME\nnode=PATH\ndir=BUNDLEDIR\nrun=RUNDIR\n".
// volatile: the compiler must not assume the zeros it was built with.
extern "C" {
__attribute__((used)) volatile char tsnet_cni_config[1024] = "@@TSNET-CNI-CONFIG@@";
}

namespace {

std::string ConfigValue(const std::string& conf, const char* key) {
  std::string k = std::string(key) + "=";
  size_t pos = 0;
  while (pos < conf.size()) {
    size_t end = conf.find('\n', pos);
    if (end == std::string::npos) end = conf.size();
    if (conf.compare(pos, k.size(), k) == 0) return conf.substr(pos + k.size(), end - pos - k.size());
    pos = end + 1;
  }
  return "";
}

// Moves exactly len bytes (false on EOF or error), in either direction.
bool Transfer(int fd, char* p, size_t len, bool out) {
  while (len > 0) {
    ssize_t n = out ? write(fd, p, len) : read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}
bool WriteAll(int fd, const void* buf, size_t len) { return Transfer(fd, const_cast<char*>(static_cast<const char*>(buf)), len, true); }
bool ReadAll(int fd, void* buf, size_t len) { return Transfer(fd, static_cast<char*>(buf), len, false); }

void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void PutBytes(std::string& out, const std::string& s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

[[noreturn]] void Fail(const char* what) {
  // The spec's error object: code 999 is ours ("plugin-specific"); stdout carries it.
  printf("{\"cniVersion\":\"1.1.0\",\"code\":999,\"msg\":\"tsnet CNI client: %s: %s\"}\n", what, strerror(errno));
  exit(1);
}

// Runs this call in-process: Node on the plugin's bundle, stdin from a memfd.
[[noreturn]] void RunDirect(const std::string& node, const std::string& bundle, const std::string& input) {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "tsnet-cni-stdin", 0));
  if (fd < 0 || !WriteAll(fd, input.data(), input.size()) || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) Fail("preparing stdin");
  close(fd);
  char* argv[] = {const_cast<char*>(node.c_str()), const_cast<char*>(bundle.c_str()), nullptr};
  execv(node.c_str(), argv);
  Fail(("exec " + node).c_str());
}

// Starts a server in the background, detached from this process and its output.
void SpawnServer(const std::string& node, const std::string& bundle, const std::string& name) {
  pid_t pid = fork();
  if (pid < 0) return;
  if (pid == 0) {
    setsid();
    if (fork() != 0) _exit(0);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    if (chdir("/") != 0) _exit(1);
    char* argv[] = {const_cast<char*>(node.c_str()), const_cast<char*>(bundle.c_str()), const_cast<char*>(name.c_str()), nullptr};
    execv(node.c_str(), argv);
    _exit(127);
  }
  waitpid(pid, nullptr, 0);
}

// FNV-1a, 64 bits: names the socket after the caller's identity (not a secret:
// only root can create sockets in the directory).
uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// A directory nobody but root (or the caller) can add entries to.
bool PrivateDir(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  if (st.st_uid != 0 && st.st_uid != getuid()) return false;
  return (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

// The listening process is root or the caller itself.
bool TrustedPeer(int s) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == 0 || cred.uid == getuid();
}

}  // namespace

int main() {
  signal(SIGPIPE, SIG_IGN);
  std::string conf(const_cast<const char*>(tsnet_cni_config));
  std::string plugin = ConfigValue(conf, "plugin");
  std::string node = ConfigValue(conf, "node");
  std::string dir = ConfigValue(conf, "dir");
  if (plugin.empty() || node.empty() || dir.empty()) {
    errno = EINVAL;
    Fail("not configured (install it with tsnet cni install)");
  }
  const std::string pluginBundle = dir + "/" + plugin + ".bundle.mjs";
  const std::string serverBundle = dir + "/tsnet-cni-server.bundle.mjs";

  // stdin: the network configuration (empty for VERSION).
  std::string input;
  char buf[65536];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    input.append(buf, static_cast<size_t>(n));
  }

  std::string run = ConfigValue(conf, "run");
  if (run.empty()) run = "/run/tsnet";
  // The plugins (direct or in the server) keep their locks and marks under the same run directory.
  setenv("TSNET_RUN", run.c_str(), 1);

  const char* off = getenv("TSNET_CNI_SERVER");
  struct stat sb, mnt, net;
  if ((off && strcmp(off, "0") == 0) || stat(serverBundle.c_str(), &sb) != 0 || stat("/proc/self/ns/mnt", &mnt) != 0 ||
      stat("/proc/self/ns/net", &net) != 0)
    RunDirect(node, pluginBundle, input);

  char identity[200];
  snprintf(identity, sizeof identity, "%u/%lu:%lu/%lu/%lu.%ld.%ld", static_cast<unsigned>(getuid()), static_cast<unsigned long>(net.st_dev),
           static_cast<unsigned long>(net.st_ino), static_cast<unsigned long>(mnt.st_ino), static_cast<unsigned long>(sb.st_ino),
           static_cast<long>(sb.st_mtim.tv_sec), static_cast<long>(sb.st_mtim.tv_nsec));
  char leaf[40];
  snprintf(leaf, sizeof leaf, "/%016llx.sock", static_cast<unsigned long long>(Fnv1a(identity)));
  const std::string sockDir = run + "/cni";
  const std::string sockPath = sockDir + leaf;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (sockPath.size() >= sizeof addr.sun_path) RunDirect(node, pluginBundle, input);  // too long a run directory: no server
  memcpy(addr.sun_path, sockPath.c_str(), sockPath.size());

  // A mount namespace made for this one call (`ip netns exec` makes one per exec)
  // would get a server per call: start one only when the parent shares ours.
  auto spawnIfShared = [&]() {
    char parentMnt[64];
    snprintf(parentMnt, sizeof parentMnt, "/proc/%d/ns/mnt", static_cast<int>(getppid()));
    struct stat pm;
    if (stat(parentMnt, &pm) == 0 && pm.st_ino == mnt.st_ino) SpawnServer(node, serverBundle, sockPath);
  };
  // A directory someone else could write to is never trusted (the server refuses it too).
  struct stat dirSt;
  if (lstat(sockDir.c_str(), &dirSt) != 0) {
    spawnIfShared();  // the server makes it
    RunDirect(node, pluginBundle, input);
  }
  // The run directory too: whoever can write there could swap cni/ for a directory of their own.
  if (!PrivateDir(sockDir) || !PrivateDir(run)) RunDirect(node, pluginBundle, input);

  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) RunDirect(node, pluginBundle, input);
  if (connect(s, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    close(s);
    if (e == ENOENT || e == ECONNREFUSED) spawnIfShared();
    RunDirect(node, pluginBundle, input);
  }
  // Not a byte to a process that is neither root nor us.
  if (!TrustedPeer(s)) {
    close(s);
    RunDirect(node, pluginBundle, input);
  }

  // A wedged server must not hang the orchestrator: past this, the call runs here.
  const char* t = getenv("TSNET_CNI_TIMEOUT");
  struct timeval tv = {t ? atol(t) : 120, 0};
  if (tv.tv_sec <= 0) tv.tv_sec = 120;
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

  // Request: "TSC1", plugin, environment entries, stdin.
  std::string req = "TSC1";
  PutBytes(req, plugin);
  std::vector<std::string> env;
  for (char** e = environ; *e; e++) env.emplace_back(*e);
  PutU32(req, static_cast<uint32_t>(env.size()));
  for (const auto& e : env) PutBytes(req, e);
  PutBytes(req, input);
  // Reply: exit code, stdout bytes, stderr bytes.
  uint32_t code = 0, outLen = 0, errLen = 0;
  std::string out, err;
  bool ok = WriteAll(s, req.data(), req.size()) && shutdown(s, SHUT_WR) == 0 && ReadAll(s, &code, 4) && ReadAll(s, &outLen, 4);
  if (ok) {
    out.resize(outLen);
    ok = ReadAll(s, &out[0], outLen) && ReadAll(s, &errLen, 4);
  }
  if (ok) {
    err.resize(errLen);
    ok = ReadAll(s, &err[0], errLen);
  }
  close(s);
  if (!ok) RunDirect(node, pluginBundle, input);  // the server went away: do it here (every command may be repeated)
  WriteAll(2, err.data(), err.size());
  if (!WriteAll(1, out.data(), out.size())) return 1;
  return static_cast<int>(code);
}
