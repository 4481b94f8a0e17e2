// tsnet-runc, native: the client of a warm tsnet OCI server (client.c), and the
// helper entry points it runs plans with (monitor.c).
#pragma once
#include "plan.h"

int runc_client(int argc, char **argv);
// The create helper with sync on fd sync (a line protocol: see monitor.c).
int monitor_create(const struct plan *p, int sync);
// An exec plan, run here; returns the process's exit code.
int monitor_exec(const struct plan *p);
