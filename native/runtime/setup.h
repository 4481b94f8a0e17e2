// The container side of a plan: what runs after clone (or after setns for exec),
// in the order the plan gives. Every function reports a failure with report() and
// does not return then.
#pragma once
#include "plan.h"

// Where failures go (a pipe to the monitor, or stderr for exec) and how they end.
void report_to(int fd);
__attribute__((noreturn, format(printf, 2, 3))) void fail(int code, const char *fmt, ...);

// Joins the plan's namespaces by path (nsjoin, but pid), a new cgroup namespace,
// sysctls and the OOM score: the OCI steps that come before the rootfs.
void setup_namespaces(const struct plan *p);
// Mounts (relative to the plan's root), pivot_root, masked and read-only paths, hostname.
// console: the pty slave to bind over /dev/console, or NULL.
void setup_rootfs(const struct plan *p, const char *console);
// rlimits, groups/gid/uid, capabilities, no_new_privs, seccomp, working directory.
void setup_process(const struct plan *p);
// Finds the command as exec would (the container's PATH), failing with 127/126 as exec would.
const char *resolve_exec(const struct plan *p);
__attribute__((noreturn)) void exec_resolved(const struct plan *p, const char *file);
// Replaces the process with the plan's args and env (exit 127 not found, 126 not executable).
__attribute__((noreturn)) void exec_process(const struct plan *p);
