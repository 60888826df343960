/* Starts and stops the shared OTLP sink (node otlp-sink/sink.js) on a free
 * 127.0.0.1 port for end-to-end tests, and runs its proto-check.js. The shared
 * folder is $BASALT_SHARED_DIR, else $BASALT_SOURCE_DIR/../shared. */
#ifndef BASALT_TEST_SINK_H
#define BASALT_TEST_SINK_H

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct sink_proc {
    pid_t pid;
    int port;
    char out[256];    /* spans JSONL */
    char errlog[256]; /* its stderr: the counters line at the end */
    char url[128];    /* http://127.0.0.1:PORT/v1/traces */
} sink_proc;

static inline const char *sink_shared_dir(void) {
    static char dir[512];
    const char *s = getenv("BASALT_SHARED_DIR");
    if (s && *s) return s;
    const char *src = getenv("BASALT_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/../shared", src && *src ? src : ".");
    return dir;
}

/* True when node and the sink (with its --proto packages) are there. */
static inline bool sink_available(void) {
    char path[700];
    snprintf(path, sizeof path, "%s/bench/otlp-sink/node_modules/protobufjs", sink_shared_dir());
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "  (sink packages missing: run npm ci in %s/bench/otlp-sink)\n",
                sink_shared_dir());
        return false;
    }
    return system("node --version >/dev/null 2>&1") == 0;
}

/* Starts `node sink.js 0 --strict --proto --quiet --out FILE ARGS...` (args
 * space-separated, no quoting) and waits for the port line. */
static inline bool sink_start(sink_proc *s, const char *extra_args) {
    static int seq = 0;
    memset(s, 0, sizeof *s);
    snprintf(s->out, sizeof s->out, "/tmp/basalt-sink-%d-%d.jsonl", (int)getpid(), seq);
    snprintf(s->errlog, sizeof s->errlog, "/tmp/basalt-sink-%d-%d.err", (int)getpid(), seq++);
    unlink(s->out);
    char script[700];
    snprintf(script, sizeof script, "%s/bench/otlp-sink/sink.js", sink_shared_dir());
    char argbuf[512];
    snprintf(argbuf, sizeof argbuf, "%s", extra_args ? extra_args : "");
    const char *argv[32];
    int argc = 0;
    argv[argc++] = "node";
    argv[argc++] = script;
    argv[argc++] = "0";
    argv[argc++] = "--strict";
    argv[argc++] = "--proto";
    argv[argc++] = "--out";
    argv[argc++] = s->out;
    for (char *save = NULL, *t = strtok_r(argbuf, " ", &save); t && argc < 30;
         t = strtok_r(NULL, " ", &save))
        argv[argc++] = t;
    argv[argc] = NULL;
    int pfd[2];
    if (pipe(pfd) != 0) return false;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        dup2(pfd[1], 1);
        int efd = open(s->errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (efd >= 0) dup2(efd, 2);
        close(pfd[0]);
        execvp("node", (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    s->pid = pid;
    char line[64];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(pfd[0], line + n, 1);
        if (r <= 0) break;
        if (line[n] == '\n') break;
        n++;
    }
    line[n] = '\0';
    close(pfd[0]);
    s->port = atoi(line);
    if (s->port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return false;
    }
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d/v1/traces", s->port);
    return true;
}

/* Stops the sink (SIGTERM) and returns its counters (cJSON object, caller
 * frees). */
static inline cJSON *sink_stop(sink_proc *s) {
    kill(s->pid, SIGTERM);
    int st;
    waitpid(s->pid, &st, 0);
    FILE *f = fopen(s->errlog, "r");
    cJSON *counters = NULL;
    if (f) {
        char line[8192];
        while (fgets(line, sizeof line, f)) {
            if (line[0] != '{') continue;
            cJSON *j = cJSON_Parse(line);
            if (j && cJSON_GetObjectItem(j, "requests")) {
                cJSON_Delete(counters);
                counters = j;
            } else {
                cJSON_Delete(j);
            }
        }
        fclose(f);
    }
    unlink(s->errlog);
    return counters;
}

static inline long sink_counter(const cJSON *counters, const char *name) {
    const cJSON *v = cJSON_GetObjectItem(counters, name);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

/* Runs proto-check.js --strict on a saved request body; true when accepted. */
static inline bool sink_proto_check(const char *file) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "node %s/bench/otlp-sink/proto-check.js %s --strict 1>&2",
             sink_shared_dir(), file);
    return system(cmd) == 0;
}

#endif
