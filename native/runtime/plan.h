// A container plan as TypeScript wrote it: one directive per line, fields split by
// tabs, "\\", "\t" and "\n" escaped. The C side only reads it; every decision in it
// was made in TypeScript (src/runtime/plan.ts renders it).
#pragma once
#include <stddef.h>

struct directive {
  int argc;
  char **argv; // argv[0] is the directive's name
};

struct plan {
  int count;
  struct directive *d;
};

// Reads and parses path; on failure prints why on stderr and returns -1.
int plan_load(const char *path, struct plan *out);
// Parses a plan held in memory (buf is kept and modified; NUL-terminated at len).
int plan_parse(char *buf, size_t len, struct plan *out);
// The first directive with this name, or NULL.
const struct directive *plan_find(const struct plan *p, const char *name);
// The first argument of the first directive with this name, or NULL.
const char *plan_get(const struct plan *p, const char *name);
