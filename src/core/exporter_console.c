/* Console exporter: the default when nothing is configured. Buffers finished
 * records per trace and, when the trace's local root ends, prints the trace as
 * an indented tree (one line per span: name, kind, duration, key attributes).
 *
 * Synchronous: the sync processor calls it at span end on the ending thread,
 * and serialises every call under its own lock. The exporter keeps a lock of
 * its own anyway (uncontended, so cheap) because nothing stops a host from
 * handing one exporter to two processors. */
#include "basalt/attrs.h"
#include "basalt/exporter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bound on buffered records: a trace whose root never ends (lost span, leaked
 * handle) must not grow memory forever. Past it the oldest trace is printed as
 * incomplete to make room. */
#define CONSOLE_MAX_BUFFERED 10000
/* Deeper levels are drawn flat with a depth marker: the tree stays readable and
 * the line width bounded. */
#define CONSOLE_MAX_DRAWN_DEPTH 32
/* Tree drawing (UTF-8 box drawing, which every current terminal shows). */
#define TREE_MID   "\xe2\x94\x9c\xe2\x94\x80 " /* "├─ " */
#define TREE_LAST  "\xe2\x94\x94\xe2\x94\x80 " /* "└─ " */
#define TREE_BAR   "\xe2\x94\x82  "            /* "│  " */
#define TREE_SPACE "   "
/* Longest text shown for one value (names, messages); longer is cut with "...". */
#define CONSOLE_MAX_TEXT 200

typedef struct trace_buf {
    uint8_t trace_id[16];
    const basalt_span_record **recs; /* retained, in end order */
    size_t n, cap;
} trace_buf;

typedef struct console_exporter {
    basalt_exporter base;
    FILE *out; /* NULL: stdout, resolved at print time; never closed by us */
    bool color;
    pthread_mutex_t lock; /* guards traces/ntraces/buffered */
    trace_buf *traces;    /* open traces, oldest first */
    size_t ntraces, cap;
    size_t buffered; /* records over all traces */
} console_exporter;

static FILE *console_out(const console_exporter *c) {
    return c->out ? c->out : stdout;
}

/* ---- one line ---------------------------------------------------------------- */

/* ANSI styles, used only on a terminal without NO_COLOR. */
#define STYLE_DIM   "\033[2m"
#define STYLE_BOLD  "\033[1m"
#define STYLE_RED   "\033[31m"
#define STYLE_RESET "\033[0m"

static void style(const console_exporter *c, FILE *f, const char *s) {
    if (c->color) fputs(s, f);
}

/* Writes text with control characters escaped (a newline or an escape sequence
 * in a span name must not break the tree or drive the terminal) and cut at
 * CONSOLE_MAX_TEXT bytes on a UTF-8 boundary. */
static void put_text(FILE *f, const char *s, size_t len) {
    size_t n = len;
    if (n > CONSOLE_MAX_TEXT) {
        n = CONSOLE_MAX_TEXT;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
    if (n < len) fputs("...", f);
}

static void put_cstr(FILE *f, const char *s) {
    put_text(f, s, strlen(s));
}

static const basalt_value *attr_of(const basalt_span_record *r, const char *key) {
    return r ? basalt_record_attr(r, key) : NULL;
}

static const basalt_value *str_attr(const basalt_span_record *r, const char *key) {
    const basalt_value *v = attr_of(r, key);
    return v && v->type == BASALT_VAL_STRING ? v : NULL;
}

static bool same_value(const basalt_value *a, const basalt_value *b) {
    if (a == NULL || b == NULL || a->type != b->type) return false;
    switch (a->type) {
    case BASALT_VAL_STRING:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
    case BASALT_VAL_BOOL:
        return a->u.b == b->u.b;
    case BASALT_VAL_ARRAY:
        if (a->u.arr.n != b->u.arr.n) return false;
        for (size_t i = 0; i < a->u.arr.n; i++)
            if (!same_value(&a->u.arr.items[i], &b->u.arr.items[i])) return false;
        return true;
    default:
        return false;
    }
}

/* A propagated value is shown where it appears or changes, not repeated on
 * every descendant that merely inherited it. */
static bool shown(const basalt_value *v, const basalt_span_record *parent, const char *key) {
    return v && !same_value(v, attr_of(parent, key));
}

static void put_str_field(FILE *f, const char *label, const basalt_value *v) {
    fprintf(f, " %s=", label);
    put_text(f, v->u.s.ptr, v->u.s.len);
}

/* The exception event's message, when the span recorded one. */
static const basalt_value *exception_message(const basalt_span_record *r) {
    for (uint32_t i = 0; i < r->nevents; i++) {
        const basalt_event *e = &r->events[i];
        if (e->name == NULL || strcmp(e->name, BASALT_EVENT_EXCEPTION) != 0) continue;
        for (uint32_t j = 0; j < e->nattrs; j++)
            if (strcmp(e->attrs[j].key, BASALT_ATTR_EXCEPTION_MESSAGE) == 0 &&
                e->attrs[j].value.type == BASALT_VAL_STRING)
                return &e->attrs[j].value;
    }
    return NULL;
}

static void put_error(const console_exporter *c, FILE *f, const basalt_span_record *r) {
    const basalt_value *exc = exception_message(r);
    if (r->status_code != BASALT_STATUS_ERROR && exc == NULL) return;
    style(c, f, STYLE_RED);
    fputs(" error", f);
    const char *msg = r->status_message;
    if (r->status_code == BASALT_STATUS_ERROR && msg && *msg) {
        fputs("=\"", f);
        put_cstr(f, msg);
        fputc('"', f);
    }
    /* record_exception writes "<type>: <message>" as the status: the event's
     * message is only worth repeating when it says something else. */
    if (exc && exc->u.s.len > 0 &&
        !(r->status_code == BASALT_STATUS_ERROR && msg && strstr(msg, exc->u.s.ptr))) {
        fputs(" exception=\"", f);
        put_text(f, exc->u.s.ptr, exc->u.s.len);
        fputc('"', f);
    }
    style(c, f, STYLE_RESET);
}

static void put_span_line(const console_exporter *c, FILE *f, const basalt_span_record *r,
                          const basalt_span_record *parent) {
    style(c, f, STYLE_BOLD);
    put_cstr(f, r->name ? r->name : "");
    style(c, f, STYLE_RESET);
    const basalt_value *kind = str_attr(r, BASALT_ATTR_SPAN_KIND);
    if (kind) {
        fputs(" [", f);
        put_text(f, kind->u.s.ptr, kind->u.s.len);
        fputc(']', f);
    }
    uint64_t dur = r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0;
    fprintf(f, " %.2f ms", (double)dur / 1e6);

    style(c, f, STYLE_DIM);
    const basalt_value *v = str_attr(r, BASALT_ATTR_FEATURE_SLUG);
    if (shown(v, parent, BASALT_ATTR_FEATURE_SLUG)) put_str_field(f, "feature", v);
    v = str_attr(r, BASALT_ATTR_USER_ID);
    if (shown(v, parent, BASALT_ATTR_USER_ID)) put_str_field(f, "user", v);
    v = str_attr(r, BASALT_ATTR_ORG_ID);
    if (shown(v, parent, BASALT_ATTR_ORG_ID)) put_str_field(f, "org", v);
    v = attr_of(r, BASALT_ATTR_EVALUATORS);
    if (v && v->type == BASALT_VAL_ARRAY && v->u.arr.n > 0 &&
        shown(v, parent, BASALT_ATTR_EVALUATORS)) {
        fputs(" evaluators=[", f);
        for (size_t i = 0; i < v->u.arr.n; i++) {
            const basalt_value *it = &v->u.arr.items[i];
            if (i) fputs(", ", f);
            if (it->type == BASALT_VAL_STRING) put_text(f, it->u.s.ptr, it->u.s.len);
        }
        fputc(']', f);
    }
    v = str_attr(r, BASALT_ATTR_PROMPT_SLUG);
    if (shown(v, parent, BASALT_ATTR_PROMPT_SLUG)) {
        put_str_field(f, "prompt", v);
        const basalt_value *ver = str_attr(r, BASALT_ATTR_PROMPT_VERSION);
        if (ver) {
            fputc('@', f);
            put_text(f, ver->u.s.ptr, ver->u.s.len);
        }
    }
    v = attr_of(r, BASALT_ATTR_SHOULD_EVALUATE);
    if (v && v->type == BASALT_VAL_BOOL && shown(v, parent, BASALT_ATTR_SHOULD_EVALUATE))
        fprintf(f, " should_evaluate=%s", v->u.b ? "true" : "false");
    style(c, f, STYLE_RESET);

    put_error(c, f, r);
    fputc('\n', f);
}

/* ---- the tree ------------------------------------------------------------------ */

/* Links of a set of records: parent index and first-child/next-sibling lists
 * with children in start order. */
typedef struct tree {
    const basalt_span_record **recs;
    size_t n;
    size_t *parent, *first, *last, *next; /* SIZE_MAX: none */
    bool *done;
} tree;

#define NONE SIZE_MAX

/* qsort has no context argument: sort index arrays through a file-static is not
 * thread-safe, so sort (record, index) pairs instead. */
typedef struct keyed {
    const basalt_span_record *r;
    size_t i;
} keyed;

static int by_span_id(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    int c = memcmp(x->r->span_id, y->r->span_id, 8);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

static int by_start(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->r->start_ns != y->r->start_ns) return x->r->start_ns < y->r->start_ns ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static size_t find_span(const keyed *sorted, size_t n, const uint8_t id[8]) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(sorted[mid].r->span_id, id, 8);
        if (c == 0) return sorted[mid].i;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NONE;
}

static void tree_free(tree *t) {
    free(t->parent);
    free(t->first);
    free(t->last);
    free(t->next);
    free(t->done);
}

/* Links recs; false when out of memory. *order_out receives the records in
 * start order (the caller frees it). */
static bool tree_build(tree *t, const basalt_span_record **recs, size_t n, keyed **order_out) {
    memset(t, 0, sizeof *t);
    t->recs = recs;
    t->n = n;
    size_t sz = n ? n : 1;
    keyed *k = malloc(sizeof *k * sz);
    t->parent = malloc(sizeof(size_t) * sz);
    t->first = malloc(sizeof(size_t) * sz);
    t->last = malloc(sizeof(size_t) * sz);
    t->next = malloc(sizeof(size_t) * sz);
    t->done = calloc(sz, sizeof(bool));
    if (!k || !t->parent || !t->first || !t->last || !t->next || !t->done) {
        free(k);
        tree_free(t);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        k[i].r = recs[i];
        k[i].i = i;
        t->first[i] = t->last[i] = t->next[i] = NONE;
    }
    qsort(k, n, sizeof *k, by_span_id);
    for (size_t i = 0; i < n; i++) {
        const basalt_span_record *r = recs[i];
        size_t p =
            r->has_parent && !r->parent_is_remote ? find_span(k, n, r->parent_span_id) : NONE;
        t->parent[i] = p == i ? NONE : p;
    }
    /* Appending in start order leaves every child list in start order. */
    qsort(k, n, sizeof *k, by_start);
    for (size_t j = 0; j < n; j++) {
        size_t i = k[j].i, p = t->parent[i];
        if (p == NONE) continue;
        if (t->last[p] == NONE)
            t->first[p] = i;
        else
            t->next[t->last[p]] = i;
        t->last[p] = i;
    }
    *order_out = k;
    return true;
}

/* Prints the subtree under root (depth-first, iteratively: traces can be deep)
 * and marks its records done. */
static void print_subtree(const console_exporter *c, FILE *f, tree *t, size_t root) {
    size_t cap = 16, depth = 0;
    size_t *stack = malloc(sizeof *stack * cap); /* node at each depth */
    bool *last = malloc(sizeof *last * cap);     /* node is its parent's last child */
    if (!stack || !last) {
        free(stack);
        free(last);
        return;
    }
    stack[0] = root;
    last[0] = true;
    for (;;) {
        size_t node = stack[depth];
        if (!t->done[node]) {
            t->done[node] = true;
            if (depth > 0) {
                size_t drawn = depth < CONSOLE_MAX_DRAWN_DEPTH ? depth : CONSOLE_MAX_DRAWN_DEPTH;
                style(c, f, STYLE_DIM);
                for (size_t d = 1; d < drawn; d++)
                    fputs(last[d] ? TREE_SPACE : TREE_BAR, f);
                fputs(last[depth] ? TREE_LAST : TREE_MID, f);
                if (depth > drawn) fprintf(f, "[+%zu] ", depth - drawn);
                style(c, f, STYLE_RESET);
            }
            size_t p = t->parent[node];
            put_span_line(c, f, t->recs[node], p == NONE ? NULL : t->recs[p]);
            /* Descend to the first child not yet printed. */
            size_t ch = t->first[node];
            while (ch != NONE && t->done[ch])
                ch = t->next[ch];
            if (ch != NONE) {
                if (depth + 1 == cap) {
                    size_t ncap = cap * 2;
                    size_t *ns = realloc(stack, sizeof *ns * ncap);
                    if (ns) stack = ns;
                    bool *nl = ns ? realloc(last, sizeof *nl * ncap) : NULL;
                    if (nl) last = nl;
                    if (!ns || !nl) break;
                    cap = ncap;
                }
                size_t after = t->next[ch];
                while (after != NONE && t->done[after])
                    after = t->next[after];
                stack[++depth] = ch;
                last[depth] = after == NONE;
                continue;
            }
        }
        /* Go to the next unprinted sibling, climbing as needed. */
        for (;;) {
            if (depth == 0) goto out;
            size_t sib = t->next[stack[depth]];
            while (sib != NONE && t->done[sib])
                sib = t->next[sib];
            if (sib != NONE) {
                size_t after = t->next[sib];
                while (after != NONE && t->done[after])
                    after = t->next[after];
                stack[depth] = sib;
                last[depth] = after == NONE;
                break;
            }
            depth--;
        }
    }
out:
    free(stack);
    free(last);
}

/* Number of records under root (root included). Each record has one parent,
 * so none is pushed twice and n slots of stack suffice. */
static size_t subtree_size(const tree *t, size_t root) {
    size_t *stack = malloc(sizeof(size_t) * (t->n ? t->n : 1));
    if (stack == NULL) return 0;
    size_t top = 0, count = 0;
    stack[top++] = root;
    while (top > 0) {
        size_t node = stack[--top];
        count++;
        for (size_t ch = t->first[node]; ch != NONE && top < t->n; ch = t->next[ch])
            stack[top++] = ch;
    }
    free(stack);
    return count;
}

static void put_trace_header(const console_exporter *c, FILE *f, const uint8_t trace_id[16],
                             size_t nspans, bool complete) {
    char hex[33];
    basalt_hex_encode(trace_id, 16, hex);
    style(c, f, STYLE_DIM);
    fprintf(f, "trace %s (%zu span%s%s)\n", hex, nspans, nspans == 1 ? "" : "s",
            complete ? "" : ", incomplete: its root has not ended");
    style(c, f, STYLE_RESET);
}

/* Prints the records of tb under the local root at index root (NONE: every
 * record, as a forest: the trace is being flushed unfinished), releases them
 * and removes them from tb. */
static void print_trace(console_exporter *c, trace_buf *tb, size_t root) {
    FILE *f = console_out(c);
    tree t;
    keyed *order = NULL;
    if (!tree_build(&t, tb->recs, tb->n, &order)) {
        /* Out of memory: say what is lost rather than nothing. */
        fprintf(f, "basalt: console exporter out of memory, %zu spans not shown\n", tb->n);
        for (size_t i = 0; i < tb->n; i++)
            basalt_record_release(tb->recs[i]);
        c->buffered -= tb->n;
        tb->n = 0;
        return;
    }
    if (root != NONE) {
        put_trace_header(c, f, tb->trace_id, subtree_size(&t, root), true);
        print_subtree(c, f, &t, root);
    } else {
        put_trace_header(c, f, tb->trace_id, tb->n, false);
        /* Roots first (in start order), then whatever a parent cycle hid. */
        for (size_t j = 0; j < tb->n; j++)
            if (t.parent[order[j].i] == NONE) print_subtree(c, f, &t, order[j].i);
        for (size_t j = 0; j < tb->n; j++)
            if (!t.done[order[j].i]) print_subtree(c, f, &t, order[j].i);
    }
    size_t kept = 0;
    for (size_t i = 0; i < tb->n; i++) {
        if (t.done[i])
            basalt_record_release(tb->recs[i]);
        else
            tb->recs[kept++] = tb->recs[i];
    }
    c->buffered -= tb->n - kept;
    tb->n = kept;
    free(order);
    tree_free(&t);
}

/* ---- buffering ------------------------------------------------------------------- */

static trace_buf *trace_find(console_exporter *c, const uint8_t trace_id[16]) {
    /* Newest first: the trace ending spans now is most often the latest one. */
    for (size_t i = c->ntraces; i-- > 0;)
        if (memcmp(c->traces[i].trace_id, trace_id, 16) == 0) return &c->traces[i];
    return NULL;
}

static trace_buf *trace_add(console_exporter *c, const uint8_t trace_id[16]) {
    if (c->ntraces == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        trace_buf *p = realloc(c->traces, sizeof *p * cap);
        if (p == NULL) return NULL;
        c->traces = p;
        c->cap = cap;
    }
    trace_buf *tb = &c->traces[c->ntraces++];
    memset(tb, 0, sizeof *tb);
    memcpy(tb->trace_id, trace_id, 16);
    return tb;
}

/* Drops empty trace buffers, keeping the others in age order. */
static void traces_compact(console_exporter *c) {
    size_t kept = 0;
    for (size_t i = 0; i < c->ntraces; i++) {
        if (c->traces[i].n == 0)
            free(c->traces[i].recs);
        else
            c->traces[kept++] = c->traces[i];
    }
    c->ntraces = kept;
}

static bool trace_push(trace_buf *tb, const basalt_span_record *r) {
    if (tb->n == tb->cap) {
        size_t cap = tb->cap ? tb->cap * 2 : 8;
        const basalt_span_record **p = realloc(tb->recs, sizeof *p * cap);
        if (p == NULL) return false;
        tb->recs = p;
        tb->cap = cap;
    }
    basalt_record_retain(r);
    tb->recs[tb->n++] = r;
    return true;
}

/* Prints every buffered trace as it stands (oldest first). */
static void print_all(console_exporter *c) {
    for (size_t i = 0; i < c->ntraces; i++)
        if (c->traces[i].n) print_trace(c, &c->traces[i], NONE);
    traces_compact(c);
}

static bool is_local_root(const basalt_span_record *r) {
    return !r->has_parent || r->parent_is_remote;
}

static bool console_one(console_exporter *c, const basalt_span_record *r) {
    /* At the cap, the oldest trace goes out unfinished rather than growing memory. */
    while (c->buffered >= CONSOLE_MAX_BUFFERED && c->ntraces > 0) {
        print_trace(c, &c->traces[0], NONE);
        traces_compact(c);
    }
    trace_buf *tb = trace_find(c, r->trace_id);
    if (tb == NULL) tb = trace_add(c, r->trace_id);
    if (tb == NULL || !trace_push(tb, r)) {
        traces_compact(c);
        return false;
    }
    c->buffered++;
    if (is_local_root(r)) {
        print_trace(c, tb, tb->n - 1);
        traces_compact(c);
    }
    return true;
}

/* ---- exporter operations --------------------------------------------------------- */

static basalt_export_result console_export(basalt_exporter *e, const basalt_resource *res,
                                           const basalt_span_record *const *recs, size_t n,
                                           uint64_t deadline_ns) {
    (void)res;
    (void)deadline_ns; /* writing to a FILE is not interruptible anyway */
    console_exporter *c = (console_exporter *)e;
    bool ok = true;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < n; i++)
        ok = console_one(c, recs[i]) && ok;
    pthread_mutex_unlock(&c->lock);
    return ok ? BASALT_EXPORT_OK : BASALT_EXPORT_FAILURE;
}

/* Flush prints traces whose root has not ended yet too: a flush is asked for
 * so that what happened so far becomes visible. */
static bool console_flush(basalt_exporter *e, uint64_t deadline_ns) {
    (void)deadline_ns;
    console_exporter *c = (console_exporter *)e;
    pthread_mutex_lock(&c->lock);
    print_all(c);
    bool ok = fflush(console_out(c)) == 0;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

static void console_shutdown(basalt_exporter *e, uint64_t deadline_ns) {
    console_flush(e, deadline_ns);
}

static void console_destroy(basalt_exporter *e) {
    console_exporter *c = (console_exporter *)e;
    /* Without a shutdown nothing is printed any more: just let go. */
    for (size_t i = 0; i < c->ntraces; i++) {
        for (size_t j = 0; j < c->traces[i].n; j++)
            basalt_record_release(c->traces[i].recs[j]);
        free(c->traces[i].recs);
    }
    free(c->traces);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static const basalt_exporter_ops console_ops = {
    .type = "console",
    .export_spans = console_export,
    .flush = console_flush,
    .shutdown = console_shutdown,
    .destroy = console_destroy,
};

basalt_exporter *basalt_console_exporter_new(void *file) {
    console_exporter *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    basalt_exporter_init(&c->base, &console_ops, true);
    pthread_mutex_init(&c->lock, NULL);
    c->out = file;
    /* Colour only for a person at a terminal (https://no-color.org). */
    const char *no_color = getenv("NO_COLOR");
    c->color = isatty(fileno(console_out(c))) && !(no_color && *no_color);
    return &c->base;
}
