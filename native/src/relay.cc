// tsnet relay: the userland proxy's native half. bindSocket holds a host port
// before firewall rules exist; spliceListen serves it with a zero-copy relay on a
// few event-loop threads; spliceStop lets it go. Only the proxy process loads it.
#define _GNU_SOURCE 1
#include <napi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "napi-errno.h"

namespace {

// bindSocket(family, type, address, port): a socket that holds a port before
// firewall rules exist and is served only once they do (TCP: listening with the
// smallest backlog, nothing accepted yet).
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
  // A TCP socket that is only bound does not hold its port: another socket with
  // SO_REUSEADDR (Node's default) may bind it too and listen first. A listening one
  // does. Nothing is accepted until the relay serves it (connections wait in the
  // smallest queue), so "bound before rules, serving after" still holds.
  if (type != "udp" && listen(fd, 0) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "listen", addr + ":" + std::to_string(port));
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// ---------------------------------------------------------------------------
// Zero-copy TCP relay for the userland proxy. A few event-loop threads (one per
// core, at most four) each run an epoll set holding every listener (registered
// with EPOLLEXCLUSIVE, so a connection wakes one loop) and the connections that
// loop accepted. A connection never changes thread: the loop accepts it, connects
// to the target without blocking, and moves bytes socket -> pipe -> socket with
// splice(2) in both directions (edge-triggered; every event retries all four
// splices, so no readiness is lost), never copying them into user space and never
// touching JavaScript. Pipes are pooled per loop. Listeners are added and removed
// through a command queue each loop drains on an eventfd; the last loop to let go
// of a listener closes its socket.

namespace splice_relay {

constexpr size_t kChunk = 1 << 16;
enum Kind { kListener, kConn, kWake };
struct Item {
  Kind kind;
};

struct Listener {
  int fd = -1;
  sockaddr_storage target;
  socklen_t targetLen = 0;
  ~Listener() {
    if (fd >= 0) close(fd);
  }
};
struct ListenerItem : Item {
  std::shared_ptr<Listener> l;
};

struct Half {
  int pipe[2] = {-1, -1};
  size_t in = 0;
  bool eof = false;  // the source said EOF
  bool shut = false;  // we shut the destination's write side
};

struct Conn : Item {
  int c = -1, u = -1;  // client, upstream
  bool connecting = true;
  bool dead = false;
  Half cu, uc;  // client -> upstream, upstream -> client
};

struct Command {
  bool add;
  int id;
  std::shared_ptr<Listener> l;
};

struct Loop {
  int ep = -1;
  Item wakeItem{kWake};
  int wake = -1;  // eventfd
  std::mutex mu;
  std::vector<Command> commands;
  std::map<int, ListenerItem*> listeners;  // by id, this loop's registrations
  std::vector<std::array<int, 2>> pipePool;

  bool GetPipe(int p[2]) {
    if (!pipePool.empty()) {
      p[0] = pipePool.back()[0];
      p[1] = pipePool.back()[1];
      pipePool.pop_back();
      return true;
    }
    return pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0;
  }
  void PutPipe(Half& h) {
    if (h.pipe[0] < 0) return;
    if (h.in == 0 && pipePool.size() < 256) pipePool.push_back({h.pipe[0], h.pipe[1]});
    else { close(h.pipe[0]); close(h.pipe[1]); }
    h.pipe[0] = h.pipe[1] = -1;
  }
};

// Shared state lives on the heap and is never destroyed: at process exit, static
// destructors would run while loop threads still use it.
std::mutex& registryMu = *new std::mutex;
std::map<int, std::shared_ptr<Listener>>& registry = *new std::map<int, std::shared_ptr<Listener>>;
std::vector<Loop*>& loops = *new std::vector<Loop*>;
int nextId = 1;

void Close(Loop& loop, Conn* k, std::vector<Conn*>& graveyard) {
  if (k->dead) return;
  k->dead = true;
  if (k->c >= 0) close(k->c);  // closing removes the fds from the epoll set
  if (k->u >= 0) close(k->u);
  loop.PutPipe(k->cu);
  loop.PutPipe(k->uc);
  graveyard.push_back(k);  // freed after this batch of events: a later event may name it
}

// Moves what can move in one direction; false on a hard error.
bool Pump(Loop& loop, int from, int to, Half& h, bool& progress) {
  const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
  if (!h.eof && h.in < kChunk) {
    if (h.pipe[0] < 0 && !loop.GetPipe(h.pipe)) return false;
    ssize_t n = splice(from, nullptr, h.pipe[1], nullptr, kChunk - h.in, flags);
    if (n > 0) { h.in += n; progress = true; }
    else if (n == 0) { h.eof = true; progress = true; }
    else if (errno != EAGAIN && errno != EINTR) return false;
  }
  if (h.in > 0) {
    ssize_t m = splice(h.pipe[0], nullptr, to, nullptr, h.in, flags);
    if (m > 0) { h.in -= m; progress = true; }
    else if (m < 0 && errno != EAGAIN && errno != EINTR) return false;
  }
  if (h.eof && h.in == 0 && !h.shut) { shutdown(to, SHUT_WR); h.shut = true; progress = true; }
  return true;
}

// Runs one direction until it cannot move (edge-triggered: the source must be
// drained to EAGAIN, or the pipe be full with the destination at EAGAIN).
bool Drain(Loop& loop, int from, int to, Half& h) {
  for (;;) {
    bool progress = false;
    if (!Pump(loop, from, to, h, progress)) return false;
    if (!progress) return true;
  }
}

// An event on one side of a connection: only the directions it can unblock run,
// so the common events (initial writability, a read on one side) cost no wasted
// syscalls. side 0 = the client socket, 1 = the upstream socket.
void Service(Loop& loop, Conn* k, int side, uint32_t events, std::vector<Conn*>& graveyard) {
  if (k->dead) return;
  if (k->connecting) {
    if (side != 1 || !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(k->u, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return Close(loop, k, graveyard);
    k->connecting = false;
    int one = 1;
    setsockopt(k->u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    events = EPOLLIN | EPOLLOUT;  // the client may have sent already: run everything once
    if (!Drain(loop, k->c, k->u, k->cu)) return Close(loop, k, graveyard);
  }
  int self = side ? k->u : k->c, other = side ? k->c : k->u;
  Half& out = side ? k->uc : k->cu;  // self -> other
  Half& in = side ? k->cu : k->uc;   // other -> self
  bool ok = true;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ok = Drain(loop, self, other, out);
  if (ok && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && (in.in > 0 || (in.eof && !in.shut))) ok = Drain(loop, other, self, in);
  if (!ok || (k->cu.shut && k->uc.shut)) Close(loop, k, graveyard);
}

void Accept(Loop& loop, Listener& l, std::vector<Conn*>& graveyard) {
  for (int i = 0; i < 64; i++) {
    int c = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return;
    int u = socket(l.target.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (u < 0) { close(c); continue; }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(u, reinterpret_cast<sockaddr*>(&l.target), l.targetLen);
    if (rc != 0 && errno != EINPROGRESS) { close(c); close(u); continue; }
    auto* k = new Conn();
    k->kind = kConn;
    k->c = c;
    k->u = u;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = reinterpret_cast<uintptr_t>(static_cast<Item*>(k));
    epoll_event evu = ev;
    evu.data.u64 |= 1;  // the upstream side (Items are at least 8-byte aligned)
    if (epoll_ctl(loop.ep, EPOLL_CTL_ADD, c, &ev) != 0 || epoll_ctl(loop.ep, EPOLL_CTL_ADD, u, &evu) != 0) { Close(loop, k, graveyard); continue; }
    if (rc == 0) {
      k->connecting = false;
      setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
  }
}

void RunCommands(Loop& loop) {
  uint64_t n;
  if (read(loop.wake, &n, sizeof n) < 0) { /* nothing pending */ }
  std::vector<Command> cmds;
  {
    std::lock_guard<std::mutex> g(loop.mu);
    cmds.swap(loop.commands);
  }
  for (auto& c : cmds) {
    if (c.add) {
      auto* li = new ListenerItem();
      li->kind = kListener;
      li->l = c.l;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLEXCLUSIVE;
      ev.data.ptr = static_cast<Item*>(li);
      if (epoll_ctl(loop.ep, EPOLL_CTL_ADD, c.l->fd, &ev) == 0) loop.listeners[c.id] = li;
      else delete li;
    } else {
      auto it = loop.listeners.find(c.id);
      if (it == loop.listeners.end()) continue;
      epoll_ctl(loop.ep, EPOLL_CTL_DEL, it->second->l->fd, nullptr);
      delete it->second;  // drops this loop's reference; the last one closes the socket
      loop.listeners.erase(it);
    }
  }
}

void Run(Loop* loop) {
  epoll_event events[128];
  std::vector<Conn*> graveyard;
  for (;;) {
    int n = epoll_wait(loop->ep, events, 128, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    bool commands = false;
    for (int i = 0; i < n; i++) {
      uint64_t raw = events[i].data.u64;
      auto* item = reinterpret_cast<Item*>(static_cast<uintptr_t>(raw & ~uint64_t{1}));
      if (item->kind == kWake) commands = true;
      else if (item->kind == kListener) Accept(*loop, *static_cast<ListenerItem*>(item)->l, graveyard);
      else Service(*loop, static_cast<Conn*>(item), static_cast<int>(raw & 1), events[i].events, graveyard);
    }
    for (Conn* k : graveyard) delete k;
    graveyard.clear();
    // Commands last: a listener removed here may have had an event in this batch.
    if (commands) RunCommands(*loop);
  }
}

bool StartLoops() {
  if (!loops.empty()) return true;
  unsigned n = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  // TSNET_PROXY_THREADS overrides (benchmarks; a host that wants the relay on fewer cores).
  if (const char* t = getenv("TSNET_PROXY_THREADS")) {
    int v = atoi(t);
    if (v >= 1 && v <= 64) n = static_cast<unsigned>(v);
  }
  for (unsigned i = 0; i < n; i++) {
    auto* loop = new Loop();
    loop->ep = epoll_create1(EPOLL_CLOEXEC);
    loop->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->ep < 0 || loop->wake < 0) return false;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &loop->wakeItem;
    if (epoll_ctl(loop->ep, EPOLL_CTL_ADD, loop->wake, &ev) != 0) return false;
    loops.push_back(loop);
    std::thread(Run, loop).detach();
  }
  return true;
}

void Post(const Command& c) {
  for (Loop* loop : loops) {
    {
      std::lock_guard<std::mutex> g(loop->mu);
      loop->commands.push_back(c);
    }
    uint64_t one = 1;
    if (write(loop->wake, &one, sizeof one) < 0) { /* the counter is already non-zero */ }
  }
}

}  // namespace splice_relay

// spliceListen(fd, targetIP, targetPort, backlog): listen on a bound socket (from
// bindSocket) and relay every connection to the target with splice(2) on the
// native event loops. Returns an id for spliceStop. The relay owns fd from here on.
Napi::Value SpliceListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "spliceListen(fd: number, targetIP: string, targetPort: number, backlog: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto l = std::make_shared<splice_relay::Listener>();
  int fd = info[0].As<Napi::Number>().Int32Value();
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
  if (listen(fd, backlog) != 0) { ThrowErrno(env, errno, "listen"); return env.Undefined(); }
  int id;
  {
    std::lock_guard<std::mutex> g(splice_relay::registryMu);
    if (!splice_relay::StartLoops()) { ThrowErrno(env, errno, "epoll_create1"); return env.Undefined(); }
    l->fd = fd;
    id = splice_relay::nextId++;
    splice_relay::registry[id] = l;
    splice_relay::Post({true, id, l});
  }
  return Napi::Number::New(env, id);
}

// spliceStop(id): stop accepting (the listening socket closes once every loop has
// let go of it; connections in flight finish on their own).
Napi::Value SpliceStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int id = info[0].As<Napi::Number>().Int32Value();
  std::lock_guard<std::mutex> g(splice_relay::registryMu);
  auto it = splice_relay::registry.find(id);
  if (it == splice_relay::registry.end()) return Napi::Boolean::New(env, false);
  splice_relay::registry.erase(it);
  splice_relay::Post({false, id, nullptr});
  return Napi::Boolean::New(env, true);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("bindSocket", Napi::Function::New(env, BindSocket));
  exports.Set("spliceListen", Napi::Function::New(env, SpliceListen));
  exports.Set("spliceStop", Napi::Function::New(env, SpliceStop));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsnet_relay, Init)
