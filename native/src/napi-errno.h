// The one way tsnet's native modules report a failed system call to JavaScript:
// an Error shaped like Node's own (err.code === 'EEXIST', err.errno, err.syscall).
#pragma once
#include <napi.h>

#include <string.h>
#include <string>

inline void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& detail = "") {
  const char* name = strerrorname_np(err);
  std::string msg = std::string(syscall) + ": " + strerror(err);
  if (!detail.empty()) msg += " (" + detail + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}
