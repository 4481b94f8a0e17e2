#include "plan.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (*r == '\\' && r[1]) {
      r++;
      *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r;
    } else {
      *w++ = *r;
    }
  }
  *w = 0;
}

int plan_load(const char *path, struct plan *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "tsnet-monitor: open plan %s: %s\n", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || st.st_size > (16 << 20)) {
    fprintf(stderr, "tsnet-monitor: plan %s unreadable or too large\n", path);
    close(fd);
    return -1;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  size_t got = 0;
  while (buf && got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fd);
  if (!buf || got != (size_t)st.st_size) {
    fprintf(stderr, "tsnet-monitor: read plan %s failed\n", path);
    return -1;
  }
  buf[got] = 0;
  return plan_parse(buf, got, out);
}

int plan_parse(char *buf, size_t got, struct plan *out) {
  int lines = 0;
  for (size_t i = 0; i < got; i++) lines += buf[i] == '\n';
  out->d = calloc((size_t)lines + 1, sizeof(struct directive));
  out->count = 0;
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    int fields = 1;
    for (char *c = line; *c; c++) fields += *c == '\t';
    struct directive *d = &out->d[out->count++];
    d->argv = calloc((size_t)fields + 1, sizeof(char *));
    d->argc = 0;
    char *start = line;
    for (char *c = line;; c++) {
      if (*c == '\t' || *c == 0) {
        int end = *c == 0;
        *c = 0;
        unescape(start);
        d->argv[d->argc++] = start;
        if (end) break;
        start = c + 1;
      }
    }
  }
  return 0;
}

const struct directive *plan_find(const struct plan *p, const char *name) {
  for (int i = 0; i < p->count; i++)
    if (strcmp(p->d[i].argv[0], name) == 0) return &p->d[i];
  return NULL;
}

const char *plan_get(const struct plan *p, const char *name) {
  const struct directive *d = plan_find(p, name);
  return d && d->argc > 1 ? d->argv[1] : NULL;
}
