// tsnet native addon: the few syscalls Node cannot make itself (namespaces,
// mounts, locks, socket credentials). The userland proxy's relay is relay.cc, a
// module of its own, so the CLI and the CNI plugins never load it.
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
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>

#include "napi-errno.h"

namespace {

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

// bindMount(src, dst, readOnly?): bind mount src on dst (used to pin
// /proc/PID/ns/net). A read-only bind takes a second, remounting step; if that
// fails the bind is undone, so the caller sees either both or nothing.
Napi::Value BindMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "bindMount(src: string, dst: string, readOnly?: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string src = info[0].As<Napi::String>().Utf8Value();
  std::string dst = info[1].As<Napi::String>().Utf8Value();
  bool readOnly = info.Length() > 2 && info[2].ToBoolean().Value();
  if (mount(src.c_str(), dst.c_str(), "none", MS_BIND, nullptr) != 0) {
    ThrowErrno(env, errno, "mount", src + " -> " + dst);
    return env.Undefined();
  }
  if (readOnly && mount("none", dst.c_str(), "none", MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
    int err = errno;
    umount2(dst.c_str(), MNT_DETACH);
    ThrowErrno(env, err, "mount", "remount read-only " + dst);
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

// mountFs(source, target, fstype, flags, data): one mount(2) (an overlay rootfs).
Napi::Value MountFs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString() || !info[3].IsNumber() || !info[4].IsString()) {
    Napi::TypeError::New(env, "mountFs(source, target, fstype, flags, data)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string src = info[0].As<Napi::String>().Utf8Value(), dst = info[1].As<Napi::String>().Utf8Value();
  std::string type = info[2].As<Napi::String>().Utf8Value(), data = info[4].As<Napi::String>().Utf8Value();
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  if (mount(src.c_str(), dst.c_str(), type.c_str(), flags, data.empty() ? nullptr : data.c_str()) != 0) ThrowErrno(env, errno, "mount", type + " on " + dst);
  return env.Undefined();
}

// mknod(path, mode, major, minor): device nodes and overlay whiteouts (0/0) in image layers.
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString()) {
    Napi::TypeError::New(env, "mknod(path, mode, major, minor)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  mode_t mode = static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value());
  dev_t dev = makedev(info[2].As<Napi::Number>().Uint32Value(), info[3].As<Napi::Number>().Uint32Value());
  if (mknod(path.c_str(), mode, dev) != 0) ThrowErrno(env, errno, "mknod", path);
  return env.Undefined();
}

// lsetxattr(path, name, value: Buffer): opaque-directory marks and a layer's own xattrs.
Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsBuffer()) {
    Napi::TypeError::New(env, "lsetxattr(path, name, value: Buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value(), name = info[1].As<Napi::String>().Utf8Value();
  Napi::Buffer<char> value = info[2].As<Napi::Buffer<char>>();
  if (lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), 0) != 0) ThrowErrno(env, errno, "lsetxattr", path + " " + name);
  return env.Undefined();
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("withNetns", Napi::Function::New(env, WithNetns));
  exports.Set("createNetns", Napi::Function::New(env, CreateNetns));
  exports.Set("bindMount", Napi::Function::New(env, BindMount));
  exports.Set("umount", Napi::Function::New(env, Umount));
  exports.Set("mountFs", Napi::Function::New(env, MountFs));
  exports.Set("mknod", Napi::Function::New(env, Mknod));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("fdInode", Napi::Function::New(env, FdInode));
  exports.Set("peerUid", Napi::Function::New(env, PeerUid));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsnet_native, Init)
