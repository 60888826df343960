/* The Jinja2 subset prompts use (Decision 13), in two phases: parse builds a
 * node tree once (so a wrong tag is reported even in a branch never taken),
 * render walks it with the variables. Anything outside the subset is an error
 * naming its line and column: a prompt must never render a silently wrong text. */
#include "basalt/otlp_json.h"
#include "basalt/prompts.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEGS  16 /* a.b.c... */
#define MAX_DEPTH 64 /* nested if/for blocks */

/* ---- arena: every node of a template lives in it, freed at once ----------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} chunk;

/* A dotted name, possibly negated: `not a.b`. Segments point into the source copy. */
typedef struct expr {
    unsigned nnot;
    size_t nsegs;
    const char *seg[MAX_SEGS];
    size_t seglen[MAX_SEGS];
    size_t off; /* source offset, for render-time errors */
} expr;

typedef enum ntype { N_TEXT, N_OUT, N_IF, N_FOR } ntype;

typedef struct node node;

/* One if/elif arm (has_cond) or the else arm. */
typedef struct branch {
    bool has_cond;
    expr cond;
    node *body;
    struct branch *next;
} branch;

struct node {
    ntype type;
    node *next;
    const char *text; /* N_TEXT */
    size_t len;
    expr e;          /* N_OUT value, N_FOR iterable */
    const char *var; /* N_FOR loop variable */
    size_t varlen;
    node *body;       /* N_FOR */
    branch *branches; /* N_IF, in order */
};

struct basalt_template {
    char *src; /* own copy: nodes point into it */
    size_t len;
    chunk *chunks;
    node *root;
};

static void *arena_alloc(basalt_template *t, size_t n) {
    n = (n + 15) & ~(size_t)15;
    chunk *c = t->chunks;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        c = malloc(sizeof *c + cap);
        if (c == NULL) return NULL;
        c->next = t->chunks;
        c->used = 0;
        c->cap = cap;
        t->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

/* ---- errors ----------------------------------------------------------------------------- */

/* Line and column (1-based, columns in characters) of a source offset. */
static void position(const char *s, size_t off, unsigned *line, unsigned *col) {
    unsigned l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void set_error(basalt_prompt_error *err, const char *code, const char *src, size_t off,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_error(basalt_prompt_error *err, const char *code, const char *src, size_t off,
                      const char *fmt, ...) {
    if (err == NULL) return;
    memset(err, 0, sizeof *err);
    snprintf(err->code, sizeof err->code, "%s", code);
    position(src, off, &err->line, &err->column);
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(err->message, sizeof err->message, "line %u, column %u: %s", err->line, err->column,
             what);
}

/* ---- parsing ------------------------------------------------------------------------------ */

typedef struct parser {
    basalt_template *t;
    const char *s;
    size_t len;
    size_t pos;
    unsigned depth;
    basalt_prompt_error *err;
} parser;

/* Which block a body belongs to, so a terminator is accepted or reported. */
typedef enum block { B_TOP, B_IF, B_ELSE, B_FOR } block;
typedef enum term { T_EOF, T_ELIF, T_ELSE, T_ENDIF, T_ENDFOR } term;

#define UNSUPPORTED BASALT_PERR_TEMPLATE_UNSUPPORTED
#define SYNTAX      BASALT_PERR_TEMPLATE_SYNTAX

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static bool is_ident_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_ident(char c) {
    return is_ident_start(c) || (c >= '0' && c <= '9');
}
static bool word_is(const char *w, size_t n, const char *kw) {
    return strlen(kw) == n && memcmp(w, kw, n) == 0;
}
static size_t skip_ws(const char *s, size_t a, size_t b) {
    while (a < b && is_space(s[a]))
        a++;
    return a;
}
static size_t ident_end(const char *s, size_t a, size_t b) {
    while (a < b && is_ident(s[a]))
        a++;
    return a;
}
/* Jinja literals would silently become undefined names here. */
static bool is_literal_word(const char *w, size_t n) {
    static const char *const lits[] = {"true", "false", "none", "True", "False", "None"};
    for (size_t i = 0; i < sizeof lits / sizeof *lits; i++)
        if (word_is(w, n, lits[i])) return true;
    return false;
}
static bool is_operator_word(const char *w, size_t n) {
    static const char *const ops[] = {"and", "or", "not", "in", "is", "if", "else"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (word_is(w, n, ops[i])) return true;
    return false;
}

/* Reports what follows a complete expression (always outside the subset). */
static bool fail_trailing(parser *p, size_t at, size_t b) {
    const char *s = p->s;
    char c = s[at];
    if (c == '|')
        set_error(p->err, UNSUPPORTED, s, at, "filters ('|') are not supported");
    else if (c == '(')
        set_error(p->err, UNSUPPORTED, s, at, "calls ('(') are not supported");
    else if (c == '[')
        set_error(p->err, UNSUPPORTED, s, at, "subscripts ('[') are not supported");
    else if (is_ident_start(c)) {
        size_t e = ident_end(s, at, b);
        if (word_is(s + at, e - at, "is"))
            set_error(p->err, UNSUPPORTED, s, at, "tests ('is') are not supported");
        else if (word_is(s + at, e - at, "if"))
            set_error(p->err, UNSUPPORTED, s, at, "conditional expressions are not supported");
        else
            set_error(p->err, UNSUPPORTED, s, at, "operator '%.*s' is not supported", (int)(e - at),
                      s + at);
    } else
        set_error(p->err, UNSUPPORTED, s, at,
                  "only a name, a dotted name or 'not name' is supported here, not '%c'", c);
    return false;
}

/* expr := {'not'} name {'.' name}, within s[a..b). */
static bool parse_expr(parser *p, size_t a, size_t b, bool allow_not, expr *e) {
    const char *s = p->s;
    memset(e, 0, sizeof *e);
    size_t i = skip_ws(s, a, b);
    e->off = i;
    for (;;) {
        if (i >= b) {
            set_error(p->err, SYNTAX, s, i < p->len ? i : a, "expected a name");
            return false;
        }
        if (!is_ident_start(s[i])) {
            char c = s[i];
            if ((c >= '0' && c <= '9') || c == '"' || c == '\'' || c == '-' || c == '[' || c == '{')
                set_error(p->err, UNSUPPORTED, s, i, "literals are not supported");
            else if (c == '(')
                set_error(p->err, UNSUPPORTED, s, i, "parentheses are not supported");
            else
                set_error(p->err, SYNTAX, s, i, "expected a name, found '%c'", c);
            return false;
        }
        size_t w = ident_end(s, i, b);
        if (word_is(s + i, w - i, "not")) {
            if (!allow_not) {
                set_error(p->err, UNSUPPORTED, s, i, "'not' is not supported here");
                return false;
            }
            if (w < b && !is_space(s[w])) return fail_trailing(p, w, b);
            e->nnot++;
            i = skip_ws(s, w, b);
            continue;
        }
        if (is_literal_word(s + i, w - i)) {
            set_error(p->err, UNSUPPORTED, s, i, "literals ('%.*s') are not supported",
                      (int)(w - i), s + i);
            return false;
        }
        if (is_operator_word(s + i, w - i)) {
            set_error(p->err, UNSUPPORTED, s, i, "operator '%.*s' is not supported", (int)(w - i),
                      s + i);
            return false;
        }
        e->seg[0] = s + i;
        e->seglen[0] = w - i;
        e->nsegs = 1;
        i = w;
        break;
    }
    for (;;) {
        size_t j = skip_ws(s, i, b);
        if (j >= b || s[j] != '.') {
            i = j;
            break;
        }
        j = skip_ws(s, j + 1, b);
        if (j >= b || !is_ident_start(s[j])) {
            if (j < b && s[j] >= '0' && s[j] <= '9')
                set_error(p->err, UNSUPPORTED, s, j, "numeric attributes are not supported");
            else
                set_error(p->err, SYNTAX, s, j < b ? j : b, "expected a name after '.'");
            return false;
        }
        size_t w = ident_end(s, j, b);
        if (e->nsegs == MAX_SEGS) {
            set_error(p->err, UNSUPPORTED, s, j, "names of more than %d parts are not supported",
                      MAX_SEGS);
            return false;
        }
        e->seg[e->nsegs] = s + j;
        e->seglen[e->nsegs] = w - j;
        e->nsegs++;
        i = w;
    }
    if (i < b) return fail_trailing(p, i, b);
    return true;
}

static node *new_node(parser *p, ntype type, node ***tail) {
    node *n = arena_alloc(p->t, sizeof *n);
    if (n == NULL) {
        set_error(p->err, UNSUPPORTED, p->s, 0, "out of memory");
        return NULL;
    }
    n->type = type;
    **tail = n;
    *tail = &n->next;
    return n;
}

/* Finds the two-character closer starting at or after `from`; returns len when absent. */
static size_t find2(const char *s, size_t from, size_t len, char a, char b) {
    for (size_t i = from; i + 1 < len; i++)
        if (s[i] == a && s[i + 1] == b) return i;
    return len;
}

static bool parse_body(parser *p, block blk, node **out, term *t, size_t *tag_a, size_t *tag_b,
                       size_t *tag_off);

static const char *block_opener(block blk) {
    return blk == B_FOR ? "for" : "if";
}

/* Parses {% if %} ... {% endif %}; content of the opening tag is s[a..b). */
static bool parse_if(parser *p, size_t a, size_t b, size_t open_off, node ***tail) {
    node *n = new_node(p, N_IF, tail);
    if (n == NULL) return false;
    branch **bt = &n->branches;
    bool has_cond = true;
    block blk = B_IF;
    for (;;) {
        branch *br = arena_alloc(p->t, sizeof *br);
        if (br == NULL) return false;
        br->has_cond = has_cond;
        if (has_cond && !parse_expr(p, a, b, true, &br->cond)) return false;
        *bt = br;
        bt = &br->next;
        term t;
        size_t off;
        if (!parse_body(p, blk, &br->body, &t, &a, &b, &off)) return false;
        if (t == T_ENDIF) return true;
        if (t == T_EOF) {
            unsigned l, c;
            position(p->s, open_off, &l, &c);
            set_error(p->err, SYNTAX, p->s, p->len, "missing {%% endif %%} for the 'if' at %u:%u",
                      l, c);
            return false;
        }
        has_cond = t == T_ELIF; /* T_ELSE otherwise; parse_body rejects the rest */
        if (!has_cond) blk = B_ELSE;
    }
}

/* Parses {% for v in list %} ... {% endfor %}. */
static bool parse_for(parser *p, size_t a, size_t b, size_t open_off, node ***tail) {
    const char *s = p->s;
    node *n = new_node(p, N_FOR, tail);
    if (n == NULL) return false;
    size_t i = skip_ws(s, a, b);
    if (i >= b || !is_ident_start(s[i])) {
        set_error(p->err, i < b && s[i] == '(' ? UNSUPPORTED : SYNTAX, s, i < b ? i : a,
                  "expected a loop variable name");
        return false;
    }
    size_t w = ident_end(s, i, b);
    if (is_operator_word(s + i, w - i) || is_literal_word(s + i, w - i) ||
        word_is(s + i, w - i, "loop")) {
        set_error(p->err, SYNTAX, s, i, "'%.*s' cannot be a loop variable", (int)(w - i), s + i);
        return false;
    }
    n->var = s + i;
    n->varlen = w - i;
    i = skip_ws(s, w, b);
    if (i < b && s[i] == ',') {
        set_error(p->err, UNSUPPORTED, s, i, "unpacking several loop variables is not supported");
        return false;
    }
    size_t in_end = ident_end(s, i, b);
    if (!word_is(s + i, in_end - i, "in") || in_end >= b || !is_space(s[in_end])) {
        set_error(p->err, SYNTAX, s, i < b ? i : b, "expected 'in' after the loop variable");
        return false;
    }
    if (!parse_expr(p, in_end, b, false, &n->e)) return false;
    term t;
    size_t ta, tb, off;
    if (!parse_body(p, B_FOR, &n->body, &t, &ta, &tb, &off)) return false;
    if (t == T_ENDFOR) return true;
    unsigned l, c;
    position(s, open_off, &l, &c);
    set_error(p->err, SYNTAX, s, p->len, "missing {%% endfor %%} for the 'for' at %u:%u", l, c);
    return false;
}

/* Tags Jinja has and this subset does not: named as unsupported, not unknown. */
static bool is_jinja_tag(const char *w, size_t n) {
    static const char *const tags[] = {
        "set",       "endset",  "macro",  "endmacro", "call",       "endcall",       "filter",
        "endfilter", "include", "import", "from",     "extends",    "block",         "endblock",
        "raw",       "endraw",  "with",   "endwith",  "autoescape", "endautoescape", "break",
        "continue",  "do",      "trans",  "endtrans", "pluralize"};
    for (size_t i = 0; i < sizeof tags / sizeof *tags; i++)
        if (word_is(w, n, tags[i])) return true;
    return false;
}

/* Parses nodes until EOF or a terminator tag valid for blk; *t says which. For
 * elif, s[*tag_a..*tag_b) is its expression. */
static bool parse_body(parser *p, block blk, node **out, term *t, size_t *tag_a, size_t *tag_b,
                       size_t *tag_off) {
    const char *s = p->s;
    node **tail = out;
    if (++p->depth > MAX_DEPTH) {
        set_error(p->err, UNSUPPORTED, s, p->pos, "blocks nested deeper than %d", MAX_DEPTH);
        return false;
    }
    while (p->pos < p->len) {
        size_t i = p->pos;
        while (i + 1 < p->len &&
               !(s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')))
            i++;
        if (i + 1 >= p->len) i = p->len;
        if (i > p->pos) {
            node *n = new_node(p, N_TEXT, &tail);
            if (n == NULL) return false;
            n->text = s + p->pos;
            n->len = i - p->pos;
        }
        p->pos = i;
        if (i >= p->len) break;
        char kind = s[i + 1];
        size_t a = i + 2;
        char close = kind == '{' ? '}' : kind;
        size_t end = find2(s, a, p->len, close, '}');
        if (end >= p->len) {
            set_error(p->err, SYNTAX, s, i, "unterminated '{%c'", kind);
            return false;
        }
        p->pos = end + 2;
        if (a < end && (s[a] == '-' || s[a] == '+')) {
            set_error(p->err, UNSUPPORTED, s, a, "whitespace control ('{%c%c') is not supported",
                      kind, s[a]);
            return false;
        }
        if (end > a && (s[end - 1] == '-' || s[end - 1] == '+') && kind != '{') {
            set_error(p->err, UNSUPPORTED, s, end - 1,
                      "whitespace control ('%c%c}') is not supported", s[end - 1], close);
            return false;
        }
        if (kind == '#') continue; /* a comment renders nothing */
        if (kind == '{') {
            if (end > a && s[end - 1] == '-') {
                set_error(p->err, UNSUPPORTED, s, end - 1,
                          "whitespace control ('-}}') is not supported");
                return false;
            }
            node *n = new_node(p, N_OUT, &tail);
            if (n == NULL || !parse_expr(p, a, end, true, &n->e)) return false;
            continue;
        }
        /* {% keyword ... %} */
        size_t k = skip_ws(s, a, end);
        size_t ke = ident_end(s, k, end);
        if (ke == k) {
            set_error(p->err, SYNTAX, s, k < end ? k : i, "expected a tag name after '{%%'");
            return false;
        }
        const char *w = s + k;
        size_t wn = ke - k;
        term found;
        if (word_is(w, wn, "if")) {
            if (!parse_if(p, ke, end, i, &tail)) return false;
            continue;
        } else if (word_is(w, wn, "for")) {
            if (!parse_for(p, ke, end, i, &tail)) return false;
            continue;
        } else if (word_is(w, wn, "elif")) {
            found = T_ELIF;
        } else if (word_is(w, wn, "else")) {
            found = T_ELSE;
        } else if (word_is(w, wn, "endif")) {
            found = T_ENDIF;
        } else if (word_is(w, wn, "endfor")) {
            found = T_ENDFOR;
        } else if (is_jinja_tag(w, wn)) {
            set_error(p->err, UNSUPPORTED, s, k, "'%.*s' tags are not supported", (int)wn, w);
            return false;
        } else {
            set_error(p->err, SYNTAX, s, k, "unknown tag '%.*s'", (int)wn, w);
            return false;
        }
        /* A terminator: is it the one this block expects? */
        bool ok = (blk == B_IF && (found == T_ELIF || found == T_ELSE || found == T_ENDIF)) ||
                  (blk == B_ELSE && found == T_ENDIF) || (blk == B_FOR && found == T_ENDFOR);
        if (!ok) {
            if (blk == B_FOR && found == T_ELSE)
                set_error(p->err, UNSUPPORTED, s, k, "'for ... else' is not supported");
            else if (blk == B_ELSE && (found == T_ELIF || found == T_ELSE))
                set_error(p->err, SYNTAX, s, k, "'%.*s' after 'else'", (int)wn, w);
            else if (blk == B_TOP)
                set_error(p->err, SYNTAX, s, k, "'%.*s' without an open block", (int)wn, w);
            else
                set_error(p->err, SYNTAX, s, k, "'%.*s' inside an open '%s' block", (int)wn, w,
                          block_opener(blk));
            return false;
        }
        size_t rest = skip_ws(s, ke, end);
        if (found != T_ELIF && rest < end) {
            set_error(p->err, SYNTAX, s, rest, "'%.*s' takes no expression", (int)wn, w);
            return false;
        }
        *t = found;
        *tag_a = ke;
        *tag_b = end;
        *tag_off = i;
        p->depth--;
        return true;
    }
    *t = T_EOF;
    p->depth--;
    return true;
}

basalt_template *basalt_template_parse(const char *src, size_t len, basalt_prompt_error *err) {
    if (err) memset(err, 0, sizeof *err);
    basalt_template *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    /* Jinja's default: a single trailing newline of the source is dropped. */
    if (len >= 2 && src[len - 2] == '\r' && src[len - 1] == '\n')
        len -= 2;
    else if (len >= 1 && (src[len - 1] == '\n' || src[len - 1] == '\r'))
        len -= 1;
    t->src = malloc(len + 1);
    if (t->src == NULL) {
        free(t);
        return NULL;
    }
    if (len) memcpy(t->src, src, len);
    t->src[len] = '\0';
    t->len = len;
    parser p = {.t = t, .s = t->src, .len = len, .err = err};
    term last;
    size_t a, b, off;
    if (!parse_body(&p, B_TOP, &t->root, &last, &a, &b, &off)) {
        basalt_template_free(t);
        return NULL;
    }
    return t;
}

void basalt_template_free(basalt_template *t) {
    if (t == NULL) return;
    for (chunk *c = t->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(t->src);
    free(t);
}

/* ---- rendering ----------------------------------------------------------------------------- */

/* A for-loop scope: its variable and position (innermost first via up). */
typedef struct frame {
    const char *name;
    size_t namelen;
    basalt_value val;
    size_t index, length;
    const struct frame *up;
} frame;

typedef struct renderer {
    const basalt_template *t;
    const basalt_value *vars;
    basalt_buf *out;
    basalt_prompt_error *err;
    bool oom;
} renderer;

static bool kv_find(const basalt_value *map, const char *k, size_t n, basalt_value *out) {
    if (map == NULL || map->type != BASALT_VAL_KVLIST) return false;
    for (size_t i = 0; i < map->u.kv.n; i++) {
        const char *key = map->u.kv.items[i].key;
        if (key && strlen(key) == n && memcmp(key, k, n) == 0) {
            *out = map->u.kv.items[i].value;
            return true;
        }
    }
    return false;
}

/* Resolves e (without its `not`s); missing names give NONE (Jinja's undefined). */
static bool lookup(renderer *r, const frame *f, const expr *e, basalt_value *out) {
    basalt_value v = {.type = BASALT_VAL_NONE};
    const char *s0 = e->seg[0];
    size_t n0 = e->seglen[0];
    if (f && word_is(s0, n0, "loop")) {
        /* The innermost loop's state; only its documented attributes. */
        const char *a = e->nsegs == 2 ? e->seg[1] : "";
        size_t an = e->nsegs == 2 ? e->seglen[1] : 0;
        if (word_is(a, an, "index"))
            v = basalt_v_int((int64_t)f->index + 1);
        else if (word_is(a, an, "index0"))
            v = basalt_v_int((int64_t)f->index);
        else if (word_is(a, an, "revindex"))
            v = basalt_v_int((int64_t)(f->length - f->index));
        else if (word_is(a, an, "revindex0"))
            v = basalt_v_int((int64_t)(f->length - f->index - 1));
        else if (word_is(a, an, "first"))
            v = basalt_v_bool(f->index == 0);
        else if (word_is(a, an, "last"))
            v = basalt_v_bool(f->index + 1 == f->length);
        else if (word_is(a, an, "length"))
            v = basalt_v_int((int64_t)f->length);
        else {
            set_error(r->err, UNSUPPORTED, r->t->src, e->off,
                      "only loop.index, index0, revindex, revindex0, first, last and length "
                      "are supported");
            return false;
        }
        *out = v;
        return true;
    }
    bool found = false;
    for (const frame *g = f; g && !found; g = g->up) {
        if (g->namelen == n0 && memcmp(g->name, s0, n0) == 0) {
            v = g->val;
            found = true;
        }
    }
    if (!found && !kv_find(r->vars, s0, n0, &v)) v.type = BASALT_VAL_NONE;
    for (size_t i = 1; i < e->nsegs && v.type != BASALT_VAL_NONE; i++) {
        basalt_value next;
        if (!kv_find(&v, e->seg[i], e->seglen[i], &next)) next.type = BASALT_VAL_NONE;
        v = next;
    }
    *out = v;
    return true;
}

static bool truthy(const basalt_value *v) {
    switch (v->type) {
    case BASALT_VAL_BOOL:
        return v->u.b;
    case BASALT_VAL_INT:
        return v->u.i != 0;
    case BASALT_VAL_DOUBLE:
        return v->u.d != 0.0;
    case BASALT_VAL_STRING:
        return v->u.s.len > 0;
    case BASALT_VAL_ARRAY:
        return v->u.arr.n > 0;
    case BASALT_VAL_KVLIST:
        return v->u.kv.n > 0;
    default:
        return false;
    }
}

/* Numbers as Lua's tostring writes them (the variables come from Lua). */
static bool put_double(basalt_buf *out, double d, bool json) {
    char tmp[64];
    if (isnan(d) || isinf(d)) {
        if (json) return basalt_buf_puts(out, "null");
        return basalt_buf_puts(out, isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
    }
    snprintf(tmp, sizeof tmp, "%.14g", d);
    if (strspn(tmp, "-0123456789") == strlen(tmp)) strcat(tmp, ".0");
    return basalt_buf_puts(out, tmp);
}

static bool put_json(basalt_buf *out, const basalt_value *v, int depth) {
    char tmp[32];
    if (depth > 64) return basalt_json_write_string(out, "<too deep>", 10);
    switch (v->type) {
    case BASALT_VAL_BOOL:
        return basalt_buf_puts(out, v->u.b ? "true" : "false");
    case BASALT_VAL_INT:
        snprintf(tmp, sizeof tmp, "%" PRId64, v->u.i);
        return basalt_buf_puts(out, tmp);
    case BASALT_VAL_DOUBLE:
        return put_double(out, v->u.d, true);
    case BASALT_VAL_STRING:
        return basalt_json_write_string(out, v->u.s.ptr, v->u.s.len);
    case BASALT_VAL_ARRAY: {
        bool ok = basalt_buf_putc(out, '[');
        for (size_t i = 0; i < v->u.arr.n && ok; i++) {
            if (i) ok = basalt_buf_putc(out, ',');
            ok = ok && put_json(out, &v->u.arr.items[i], depth + 1);
        }
        return ok && basalt_buf_putc(out, ']');
    }
    case BASALT_VAL_KVLIST: {
        bool ok = basalt_buf_putc(out, '{');
        for (size_t i = 0; i < v->u.kv.n && ok; i++) {
            const char *k = v->u.kv.items[i].key ? v->u.kv.items[i].key : "";
            if (i) ok = basalt_buf_putc(out, ',');
            ok = ok && basalt_json_write_string(out, k, strlen(k)) && basalt_buf_putc(out, ':') &&
                 put_json(out, &v->u.kv.items[i].value, depth + 1);
        }
        return ok && basalt_buf_putc(out, '}');
    }
    default:
        return basalt_buf_puts(out, "null");
    }
}

/* {{ value }}: strings verbatim (no escaping), scalars as Lua prints them,
 * tables as compact JSON, a missing value as nothing. */
static bool put_value(basalt_buf *out, const basalt_value *v) {
    char tmp[32];
    switch (v->type) {
    case BASALT_VAL_NONE:
        return true;
    case BASALT_VAL_BOOL:
        return basalt_buf_puts(out, v->u.b ? "true" : "false");
    case BASALT_VAL_INT:
        snprintf(tmp, sizeof tmp, "%" PRId64, v->u.i);
        return basalt_buf_puts(out, tmp);
    case BASALT_VAL_DOUBLE:
        return put_double(out, v->u.d, false);
    case BASALT_VAL_STRING:
        return basalt_buf_append(out, v->u.s.ptr, v->u.s.len);
    default:
        return put_json(out, v, 0);
    }
}

/* Literal text, with newlines normalised to "\n" as Jinja's lexer does. */
static bool put_text(basalt_buf *out, const char *s, size_t n) {
    if (memchr(s, '\r', n) == NULL) return basalt_buf_append(out, s, n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\r') {
            if (i + 1 < n && s[i + 1] == '\n') i++;
            c = '\n';
        }
        if (!basalt_buf_putc(out, c)) return false;
    }
    return true;
}

static size_t utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

static bool render_nodes(renderer *r, const node *n, const frame *f);

static bool render_for(renderer *r, const node *n, const frame *f) {
    basalt_value it;
    if (!lookup(r, f, &n->e, &it)) return false;
    frame fr = {.name = n->var, .namelen = n->varlen, .up = f};
    switch (it.type) {
    case BASALT_VAL_NONE:
        return true; /* undefined iterates as empty, as in Jinja */
    case BASALT_VAL_ARRAY:
        fr.length = it.u.arr.n;
        for (fr.index = 0; fr.index < fr.length; fr.index++) {
            fr.val = it.u.arr.items[fr.index];
            if (!render_nodes(r, n->body, &fr)) return false;
        }
        return true;
    case BASALT_VAL_KVLIST: /* a map iterates over its keys */
        fr.length = it.u.kv.n;
        for (fr.index = 0; fr.index < fr.length; fr.index++) {
            fr.val = basalt_v_str(it.u.kv.items[fr.index].key);
            if (!render_nodes(r, n->body, &fr)) return false;
        }
        return true;
    case BASALT_VAL_STRING: { /* a string iterates over its characters */
        const char *s = it.u.s.ptr;
        size_t len = it.u.s.len, count = 0;
        for (size_t i = 0; i < len; i += utf8_len((unsigned char)s[i]))
            count++;
        fr.length = count;
        fr.index = 0;
        for (size_t i = 0; i < len; fr.index++) {
            size_t cl = utf8_len((unsigned char)s[i]);
            if (cl > len - i) cl = len - i;
            fr.val = basalt_v_strn(s + i, cl);
            if (!render_nodes(r, n->body, &fr)) return false;
            i += cl;
        }
        return true;
    }
    default:
        set_error(r->err, UNSUPPORTED, r->t->src, n->e.off,
                  "cannot iterate over '%.*s': not a list, map or string", (int)n->e.seglen[0],
                  n->e.seg[0]);
        return false;
    }
}

static bool render_nodes(renderer *r, const node *n, const frame *f) {
    for (; n; n = n->next) {
        switch (n->type) {
        case N_TEXT:
            if (!put_text(r->out, n->text, n->len)) goto oom;
            break;
        case N_OUT: {
            basalt_value v;
            if (!lookup(r, f, &n->e, &v)) return false;
            if (n->e.nnot) {
                bool b = truthy(&v) ^ (n->e.nnot & 1);
                v = basalt_v_bool(b);
            }
            if (!put_value(r->out, &v)) goto oom;
            break;
        }
        case N_IF:
            for (const branch *b = n->branches; b; b = b->next) {
                bool take = true;
                if (b->has_cond) {
                    basalt_value v;
                    if (!lookup(r, f, &b->cond, &v)) return false;
                    take = truthy(&v) ^ (b->cond.nnot & 1);
                }
                if (take) {
                    if (!render_nodes(r, b->body, f)) return false;
                    break;
                }
            }
            break;
        case N_FOR:
            if (!render_for(r, n, f)) return false;
            break;
        }
    }
    return true;
oom:
    set_error(r->err, UNSUPPORTED, r->t->src, 0, "out of memory");
    return false;
}

bool basalt_template_render(const basalt_template *t, const basalt_value *vars, basalt_buf *out,
                            basalt_prompt_error *err) {
    if (err) memset(err, 0, sizeof *err);
    renderer r = {.t = t, .vars = vars, .out = out, .err = err};
    size_t start = out->len;
    if (!render_nodes(&r, t->root, NULL)) {
        out->len = start;
        return false;
    }
    return basalt_buf_cstr(out) != NULL;
}

bool basalt_template_render_text(const char *src, size_t len, const basalt_value *vars,
                                 basalt_buf *out, basalt_prompt_error *err) {
    basalt_template *t = basalt_template_parse(src, len, err);
    if (t == NULL) {
        if (err && err->code[0] == '\0') snprintf(err->code, sizeof err->code, "%s", UNSUPPORTED);
        return false;
    }
    bool ok = basalt_template_render(t, vars, out, err);
    basalt_template_free(t);
    return ok;
}
