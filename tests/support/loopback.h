/* A tiny HTTP/1.1 server on 127.0.0.1 for transport tests: one thread, poll()
 * over every connection, keep-alive, a canned reply after an optional delay.
 * It records the last request and counts connections and requests. */
#ifndef BASALT_TEST_LOOPBACK_H
#define BASALT_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LB_MAX_CONN 16
#define LB_BUF      (256 * 1024)

typedef struct lb_conn {
    int fd;
    char *buf;
    size_t len;
    int64_t reply_at_ms; /* >= 0: a full request is in, reply at this time */
} lb_conn;

typedef struct lb_server {
    int lfd;
    int port;
    pthread_t thread;
    _Atomic int stop;
    /* Set before requests arrive (read by the server thread under lock). */
    pthread_mutex_t lock;
    char *reply; /* whole raw response (status line, headers, body) */
    size_t reply_len;
    int delay_ms; /* wait before replying */
    /* Observed, under lock. */
    int connections, requests;
    char last_request[LB_BUF];
    size_t last_len;
    lb_conn conns[LB_MAX_CONN];
} lb_server;

static inline int64_t lb_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sets the reply: status line + headers (CRLF-separated, no trailing CRLF) and a body. */
static inline void lb_set_reply(lb_server *s, const char *status_and_headers, const char *body,
                                size_t body_len) {
    pthread_mutex_lock(&s->lock);
    free(s->reply);
    size_t hl = strlen(status_and_headers);
    s->reply = malloc(hl + body_len + 64);
    int n = sprintf(s->reply, "%s\r\nContent-Length: %zu\r\n\r\n", status_and_headers, body_len);
    memcpy(s->reply + n, body, body_len);
    s->reply_len = (size_t)n + body_len;
    pthread_mutex_unlock(&s->lock);
}

/* Length of a complete request at the start of buf, or 0. */
static inline size_t lb_request_len(const char *buf, size_t len) {
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            end = buf + i + 4;
            break;
        }
    if (end == NULL) return 0;
    size_t clen = 0;
    for (const char *p = buf; p < end; p++) {
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            clen = (size_t)strtoul(p + 15, NULL, 10);
            break;
        }
    }
    size_t total = (size_t)(end - buf) + clen;
    return total <= len ? total : 0;
}

static inline void lb_close(lb_conn *c) {
    close(c->fd);
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
}

static inline void *lb_main(void *arg) {
    lb_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pf[LB_MAX_CONN + 1];
        int map[LB_MAX_CONN + 1];
        int n = 0;
        pf[n].fd = s->lfd;
        pf[n].events = POLLIN;
        map[n++] = -1;
        for (int i = 0; i < LB_MAX_CONN; i++) {
            if (s->conns[i].fd < 0) continue;
            pf[n].fd = s->conns[i].fd;
            pf[n].events = POLLIN;
            map[n++] = i;
        }
        poll(pf, (nfds_t)n, 10);
        for (int k = 0; k < n; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (map[k] < 0) {
                int fd = accept(s->lfd, NULL, NULL);
                if (fd < 0) continue;
                pthread_mutex_lock(&s->lock);
                s->connections++;
                pthread_mutex_unlock(&s->lock);
                int slot = -1;
                for (int i = 0; i < LB_MAX_CONN && slot < 0; i++)
                    if (s->conns[i].fd < 0) slot = i;
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                s->conns[slot].fd = fd;
                s->conns[slot].buf = malloc(LB_BUF);
                s->conns[slot].len = 0;
                s->conns[slot].reply_at_ms = -1;
                continue;
            }
            lb_conn *c = &s->conns[map[k]];
            if (c->len == LB_BUF) {
                lb_close(c);
                continue;
            }
            ssize_t r = read(c->fd, c->buf + c->len, LB_BUF - c->len);
            if (r <= 0) {
                lb_close(c);
                continue;
            }
            c->len += (size_t)r;
        }
        /* Full requests get their reply once the delay has passed. */
        for (int i = 0; i < LB_MAX_CONN; i++) {
            lb_conn *c = &s->conns[i];
            if (c->fd < 0) continue;
            size_t rl = lb_request_len(c->buf, c->len);
            if (rl == 0) continue;
            pthread_mutex_lock(&s->lock);
            if (c->reply_at_ms < 0) {
                c->reply_at_ms = lb_now_ms() + s->delay_ms;
                s->requests++;
                memcpy(s->last_request, c->buf, rl);
                s->last_len = rl;
            }
            if (lb_now_ms() >= c->reply_at_ms) {
                ssize_t w = write(c->fd, s->reply, s->reply_len);
                (void)w;
                memmove(c->buf, c->buf + rl, c->len - rl);
                c->len -= rl;
                c->reply_at_ms = -1;
            }
            pthread_mutex_unlock(&s->lock);
        }
    }
    return NULL;
}

/* Starts a server on a free port with a 200 "{}" reply. */
static inline lb_server *lb_start(void) {
    lb_server *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    for (int i = 0; i < LB_MAX_CONN; i++)
        s->conns[i].fd = -1;
    lb_set_reply(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json", "{}", 2);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s->lfd, (struct sockaddr *)&a, sizeof a);
    listen(s->lfd, 16);
    socklen_t al = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->thread, NULL, lb_main, s);
    return s;
}

static inline void lb_stop(lb_server *s) {
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < LB_MAX_CONN; i++)
        if (s->conns[i].fd >= 0) lb_close(&s->conns[i]);
    close(s->lfd);
    free(s->reply);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static inline void lb_url(const lb_server *s, char *out, size_t cap, const char *path) {
    snprintf(out, cap, "http://127.0.0.1:%d%s", s->port, path);
}

/* A port with nothing listening (bound then closed). */
static inline int lb_dead_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

#endif
