/* The file exporter: appends one OTLP JSON ExportTraceServiceRequest per line
 * (JSON Lines), so the file can be replayed to a collector or read line by line.
 * It is a batching exporter (not synchronous): file writes happen on the export
 * worker, never on the thread ending a span, and each batch is one line written
 * with one write(2) on an O_APPEND descriptor, so lines from a forked child or
 * another process never interleave. flush fsyncs. Used by one worker at a time. */
#include "basalt/exporter.h"
#include "basalt/otlp_json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct file_exporter {
    basalt_exporter base;
    int fd;
    char *path;
    basalt_buf line; /* reused between batches */
    bool failure_logged;
} file_exporter;

static void log_failure(file_exporter *f, const char *what, int err) {
    if (f->failure_logged) return;
    f->failure_logged = true;
    basalt_log(BASALT_LOG_WARN, "file exporter: %s %s failed: %s (further failures are counted)",
               what, f->path, strerror(err));
}

static bool write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static basalt_export_result file_export(basalt_exporter *e, const basalt_resource *res,
                                        const basalt_span_record *const *recs, size_t n,
                                        uint64_t deadline_ns) {
    file_exporter *f = (file_exporter *)e;
    (void)deadline_ns; /* a local write cannot be cut short meaningfully */
    basalt_buf_clear(&f->line);
    if (!basalt_otlp_encode(&f->line, res, recs, n) || !basalt_buf_putc(&f->line, '\n')) {
        log_failure(f, "encoding for", ENOMEM);
        return BASALT_EXPORT_FAILURE;
    }
    if (!write_all(f->fd, f->line.data, f->line.len)) {
        log_failure(f, "writing", errno);
        return BASALT_EXPORT_FAILURE;
    }
    return BASALT_EXPORT_OK;
}

static bool file_flush(basalt_exporter *e, uint64_t deadline_ns) {
    file_exporter *f = (file_exporter *)e;
    (void)deadline_ns;
    if (fsync(f->fd) != 0 && errno != EINVAL) {
        log_failure(f, "fsync of", errno);
        return false;
    }
    return true;
}

static void file_destroy(basalt_exporter *e) {
    file_exporter *f = (file_exporter *)e;
    close(f->fd);
    free(f->path);
    basalt_buf_free(&f->line);
    free(f);
}

static const basalt_exporter_ops file_ops = {
    .type = "file",
    .export_spans = file_export,
    .flush = file_flush,
    .shutdown = NULL, /* the worker flushes before shutdown */
    .destroy = file_destroy,
};

basalt_exporter *basalt_file_exporter_new(const char *path) {
    if (path == NULL || *path == '\0') {
        basalt_log(BASALT_LOG_ERROR, "file exporter: no path given");
        return NULL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        basalt_log(BASALT_LOG_ERROR, "file exporter: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    file_exporter *f = calloc(1, sizeof *f);
    char *p = strdup(path);
    if (f == NULL || p == NULL) {
        free(f);
        free(p);
        close(fd);
        return NULL;
    }
    f->fd = fd;
    f->path = p;
    basalt_exporter_init(&f->base, &file_ops, false);
    return &f->base;
}
