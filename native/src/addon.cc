// tsnet native addon: the few syscalls Node cannot make itself.
//
// Every function here is synchronous and leaves the calling thread exactly as it
// found it: a call that enters a network namespace returns to the original one
// before it returns to JavaScript, whatever happens in between. That is the only
// safe way to use setns(CLONE_NEWNET) from Node's main thread (DESIGN.md).
#define _GNU_SOURCE 1
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <cstring>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <netinet/tcp.h>
#include <poll.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <condition_variable>
#include <deque>
#include <chrono>

namespace {

// Throws a JS Error carrying errno, its symbolic name and the syscall, the same
// shape as Node's own system errors (err.code === 'EEXIST', err.errno, err.syscall).
void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& detail = "") {
  const char* name = strerrorname_np(err);
  std::string msg = std::string(syscall) + ": " + strerror(err);
  if (!detail.empty()) msg += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

int OpenCurrentNetns() {
  return open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
}

// withNetns(fd, fn): enter the network namespace behind fd, call fn(), return to
// the original namespace, and return fn's result (or rethrow its exception).
Napi::Value WithNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "withNetns(fd: number, fn: () => T)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int target = info[0].As<Napi::Number>().Int32Value();
  int orig = OpenCurrentNetns();
  if (orig < 0) { ThrowErrno(env, errno, "open", "/proc/thread-self/ns/net"); return env.Undefined(); }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(orig);
    ThrowErrno(env, err, "setns");
    return env.Undefined();
  }
  Napi::Value result = info[1].As<Napi::Function>().Call({});
  // Always go back, even when fn threw (the exception stays pending).
  if (setns(orig, CLONE_NEWNET) != 0) {
    // Staying in the wrong namespace would silently corrupt every later call.
    abort();
  }
  close(orig);
  if (env.IsExceptionPending()) return env.Undefined();
  return result;
}

// createNetns(path): make a new network namespace and keep it alive by bind
// mounting it on path (an existing empty file), as `ip netns add` does. The
// calling thread stays in its original namespace.
Napi::Value CreateNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "createNetns(path: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int orig = OpenCurrentNetns();
  if (orig < 0) { ThrowErrno(env, errno, "open", "/proc/thread-self/ns/net"); return env.Undefined(); }
  if (unshare(CLONE_NEWNET) != 0) {
    int err = errno;
    close(orig);
    ThrowErrno(env, err, "unshare");
    return env.Undefined();
  }
  int mountErr = 0;
  if (mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) mountErr = errno;
  if (setns(orig, CLONE_NEWNET) != 0) abort();
  close(orig);
  if (mountErr) { ThrowErrno(env, mountErr, "mount", path); return env.Undefined(); }
  return env.Undefined();
}

// bindMount(src, dst): bind mount src on dst (used to pin /proc/PID/ns/net).
Napi::Value BindMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "bindMount(src: string, dst: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string src = info[0].As<Napi::String>().Utf8Value();
  std::string dst = info[1].As<Napi::String>().Utf8Value();
  if (mount(src.c_str(), dst.c_str(), "none", MS_BIND, nullptr) != 0) {
    ThrowErrno(env, errno, "mount", src + " -> " + dst);
  }
  return env.Undefined();
}

// umount(path, detach): unmount path; EINVAL (not a mount point) and ENOENT are
// reported as false so that teardown can be repeated.
Napi::Value Umount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "umount(path: string, detach?: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  bool detach = info.Length() > 1 && info[1].ToBoolean().Value();
  if (umount2(path.c_str(), detach ? MNT_DETACH : 0) != 0) {
    int err = errno;
    if (err == EINVAL || err == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, err, "umount2", path);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// flock(fd, op): op is 'ex' | 'sh' | 'un', with nonBlocking returning false
// instead of waiting when the lock is held elsewhere.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) {
    Napi::TypeError::New(env, "flock(fd: number, op: 'ex'|'sh'|'un', nonBlocking?: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string op = info[1].As<Napi::String>().Utf8Value();
  bool nb = info.Length() > 2 && info[2].ToBoolean().Value();
  int how = op == "ex" ? LOCK_EX : op == "sh" ? LOCK_SH : op == "un" ? LOCK_UN : -1;
  if (how < 0) { Napi::TypeError::New(env, "flock: bad op").ThrowAsJavaScriptException(); return env.Undefined(); }
  if (nb) how |= LOCK_NB;
  for (;;) {
    if (flock(fd, how) == 0) return Napi::Boolean::New(env, true);
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK && nb) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "flock");
    return env.Undefined();
  }
}

// netnsInode(fd): the inode number that identifies a namespace (st_ino of nsfs).
Napi::Value FdInode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct stat st;
  if (fstat(fd, &st) != 0) { ThrowErrno(env, errno, "fstat"); return env.Undefined(); }
  return Napi::Number::New(env, static_cast<double>(st.st_ino));
}

// peerUid(fd): the uid of the process at the other end of a unix socket (SO_PEERCRED).
Napi::Value PeerUid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) { ThrowErrno(env, errno, "getsockopt(SO_PEERCRED)"); return env.Undefined(); }
  return Napi::Number::New(env, static_cast<double>(cred.uid));
}

// bindSocket(family, type, address, port): a socket bound but not listening, so a
// port can be held before firewall rules exist and served only once they do.
// Returns the fd (close-on-exec, non-blocking), ready for net.Server#listen({fd})
// or dgram's bind({fd}).
Napi::Value BindSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsString() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "bindSocket(family: 4|6, type: 'tcp'|'udp', address: string, port: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int family = info[0].As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
  std::string type = info[1].As<Napi::String>().Utf8Value();
  std::string addr = info[2].As<Napi::String>().Utf8Value();
  int port = info[3].As<Napi::Number>().Int32Value();
  int fd = socket(family, (type == "udp" ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { ThrowErrno(env, errno, "socket"); return env.Undefined(); }
  int one = 1;
  if (type != "udp") setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int rc;
  if (family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    struct sockaddr_in6 sa {};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    if (inet_pton(AF_INET6, addr.c_str(), &sa.sin6_addr) != 1) { close(fd); ThrowErrno(env, EINVAL, "inet_pton", addr); return env.Undefined(); }
    rc = bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa));
  } else {
    struct sockaddr_in sa {};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) { close(fd); ThrowErrno(env, EINVAL, "inet_pton", addr); return env.Undefined(); }
    rc = bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof(sa));
  }
  if (rc != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "bind", addr + ":" + std::to_string(port));
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// ---------------------------------------------------------------------------
// Zero-copy TCP relay for the userland proxy. A listener runs an accept loop on a
// native thread; each connection gets a thread that connects to the target and
// moves bytes socket -> pipe -> socket with splice(2) in both directions, never
// copying them into user space and never touching JavaScript. The threads own
// their fds; the registry below is the only shared state, behind a mutex.

namespace splice_relay {

constexpr size_t kChunk = 1 << 16;

bool SetNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

// Moves bytes both ways until both directions reached EOF (half-close honoured)
// or an error occurs.
// Each worker thread keeps its two pipes across connections (they are empty after
// a clean relay); a relay that ends with bytes still in a pipe drops them.
struct Pipes {
  int p1[2] = {-1, -1};  // a -> b
  int p2[2] = {-1, -1};  // b -> a
  bool Ok() {
    if (p1[0] < 0 && pipe2(p1, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    if (p2[0] < 0 && pipe2(p2, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    return true;
  }
  void Reset() {
    for (int* p : {p1, p2}) {
      if (p[0] >= 0) { close(p[0]); close(p[1]); p[0] = p[1] = -1; }
    }
  }
  ~Pipes() { Reset(); }
};
thread_local Pipes pipes;

void Relay(int a, int b) {
  if (!pipes.Ok()) return;
  int* p1 = pipes.p1;
  int* p2 = pipes.p2;
  SetNonBlocking(b);  // a (accepted with SOCK_NONBLOCK) already is
  size_t in1 = 0, in2 = 0;
  bool eofA = false, eofB = false, shutA = false, shutB = false;
  const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
  auto pump = [&](int from, int to, int* pipe, size_t& in, bool& eof, bool& shut, bool& progress) -> bool {
    if (!eof && in < kChunk) {
      ssize_t n = splice(from, nullptr, pipe[1], nullptr, kChunk - in, flags);
      if (n > 0) { in += n; progress = true; }
      else if (n == 0) { eof = true; progress = true; }
      else if (errno != EAGAIN && errno != EINTR) return false;
    }
    if (in > 0) {
      ssize_t m = splice(pipe[0], nullptr, to, nullptr, in, flags);
      if (m > 0) { in -= m; progress = true; }
      else if (m < 0 && errno != EAGAIN && errno != EINTR) return false;
    }
    if (eof && in == 0 && !shut) { shutdown(to, SHUT_WR); shut = true; progress = true; }
    return true;
  };
  for (;;) {
    bool progress = false;
    if (!pump(a, b, p1, in1, eofA, shutB, progress)) break;
    if (!pump(b, a, p2, in2, eofB, shutA, progress)) break;
    if (shutA && shutB) break;
    if (progress) continue;
    struct pollfd pf[2] = {{a, 0, 0}, {b, 0, 0}};
    if (!eofA && in1 < kChunk) pf[0].events |= POLLIN;
    if (in2 > 0) pf[0].events |= POLLOUT;
    if (!eofB && in2 < kChunk) pf[1].events |= POLLIN;
    if (in1 > 0) pf[1].events |= POLLOUT;
    if (poll(pf, 2, -1) < 0 && errno != EINTR) break;
    if ((pf[0].revents | pf[1].revents) & (POLLERR | POLLNVAL)) break;
  }
  if (in1 || in2) pipes.Reset();
}

struct Listener {
  int fd;
  int stopPipe[2];  // written once to end the accept loop (no periodic wake-ups)
  sockaddr_storage target;
  socklen_t targetLen;
};

// Shared state lives on the heap and is never destroyed: at process exit, static
// destructors would run while pooled workers still wait on the condition variable,
// and glibc's pthread_cond_destroy blocks until its waiters wake (a hang at exit).
std::mutex& registryMu = *new std::mutex;
std::map<int, std::shared_ptr<Listener>>& registry = *new std::map<int, std::shared_ptr<Listener>>;
int nextId = 1;

void Serve(int client, std::shared_ptr<Listener> l) {
  int up = socket(l->target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (up >= 0 && connect(up, reinterpret_cast<sockaddr*>(&l->target), l->targetLen) == 0) {
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Relay(client, up);
  }
  if (up >= 0) close(up);
  close(client);
}

// Connection threads are pooled: a thread that finished a relay waits a while for
// the next accepted connection instead of exiting (thread creation is a visible
// part of short connections' cost).
struct Job {
  int client;
  std::shared_ptr<Listener> listener;
};
std::mutex& poolMu = *new std::mutex;
std::condition_variable& poolCv = *new std::condition_variable;
std::deque<Job>& jobs = *new std::deque<Job>;
int idleWorkers = 0;

void Worker() {
  std::unique_lock<std::mutex> lk(poolMu);
  for (;;) {
    idleWorkers++;
    bool got = poolCv.wait_for(lk, std::chrono::seconds(30), [] { return !jobs.empty(); });
    idleWorkers--;
    if (!got) return;  // idle for 30 s: let the thread go
    Job j = jobs.front();
    jobs.pop_front();
    lk.unlock();
    Serve(j.client, j.listener);
    lk.lock();
  }
}

void Dispatch(int client, std::shared_ptr<Listener> l) {
  std::lock_guard<std::mutex> g(poolMu);
  jobs.push_back({client, std::move(l)});
  if (idleWorkers > static_cast<int>(jobs.size()) - 1) {
    poolCv.notify_one();
  } else {
    std::thread(Worker).detach();
  }
}

void AcceptLoop(std::shared_ptr<Listener> l) {
  for (;;) {
    struct pollfd pf[2] = {{l->fd, POLLIN, 0}, {l->stopPipe[0], POLLIN, 0}};
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pf[1].revents) break;
    // Take every pending connection before polling again.
    for (;;) {
      int c = accept4(l->fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) break;
      Dispatch(c, l);
    }
  }
  close(l->fd);
  close(l->stopPipe[0]);
  close(l->stopPipe[1]);
}

}  // namespace splice_relay

// spliceListen(fd, targetIP, targetPort, backlog): listen on a bound socket (from
// bindSocket) and relay every connection to the target with splice(2) on native
// threads. Returns an id for spliceStop. The listener owns fd from here on.
Napi::Value SpliceListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "spliceListen(fd: number, targetIP: string, targetPort: number, backlog: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto l = std::make_shared<splice_relay::Listener>();
  l->fd = info[0].As<Napi::Number>().Int32Value();
  std::string ip = info[1].As<Napi::String>().Utf8Value();
  int port = info[2].As<Napi::Number>().Int32Value();
  int backlog = info[3].As<Napi::Number>().Int32Value();
  std::memset(&l->target, 0, sizeof(l->target));
  if (ip.find(':') != std::string::npos) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&l->target);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(port);
    if (inet_pton(AF_INET6, ip.c_str(), &sa->sin6_addr) != 1) { ThrowErrno(env, EINVAL, "inet_pton", ip); return env.Undefined(); }
    l->targetLen = sizeof(sockaddr_in6);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in*>(&l->target);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    if (inet_pton(AF_INET, ip.c_str(), &sa->sin_addr) != 1) { ThrowErrno(env, EINVAL, "inet_pton", ip); return env.Undefined(); }
    l->targetLen = sizeof(sockaddr_in);
  }
  if (listen(l->fd, backlog) != 0) { ThrowErrno(env, errno, "listen"); return env.Undefined(); }
  if (pipe2(l->stopPipe, O_CLOEXEC) != 0) { ThrowErrno(env, errno, "pipe2"); return env.Undefined(); }
  int id;
  {
    std::lock_guard<std::mutex> g(splice_relay::registryMu);
    id = splice_relay::nextId++;
    splice_relay::registry[id] = l;
  }
  std::thread(splice_relay::AcceptLoop, l).detach();
  return Napi::Number::New(env, id);
}

// spliceStop(id): stop accepting (the accept thread closes the listening socket;
// connections in flight finish on their own).
Napi::Value SpliceStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int id = info[0].As<Napi::Number>().Int32Value();
  std::shared_ptr<splice_relay::Listener> l;
  {
    std::lock_guard<std::mutex> g(splice_relay::registryMu);
    auto it = splice_relay::registry.find(id);
    if (it == splice_relay::registry.end()) return Napi::Boolean::New(env, false);
    l = it->second;
    splice_relay::registry.erase(it);
  }
  char b = 1;
  if (write(l->stopPipe[1], &b, 1) != 1) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, true);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("spliceListen", Napi::Function::New(env, SpliceListen));
  exports.Set("spliceStop", Napi::Function::New(env, SpliceStop));
  exports.Set("bindSocket", Napi::Function::New(env, BindSocket));
  exports.Set("withNetns", Napi::Function::New(env, WithNetns));
  exports.Set("createNetns", Napi::Function::New(env, CreateNetns));
  exports.Set("bindMount", Napi::Function::New(env, BindMount));
  exports.Set("umount", Napi::Function::New(env, Umount));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("fdInode", Napi::Function::New(env, FdInode));
  exports.Set("peerUid", Napi::Function::New(env, PeerUid));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsnet_native, Init)
