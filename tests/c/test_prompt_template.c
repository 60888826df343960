/* The template subset of Decision 13 as a table of cases: what renders, and
 * what is refused with which code at which line:column. */
#include "basalt/prompts.h"
#include "check.h"

#include <stdlib.h>

/* The variables every case renders with. */
static basalt_kv address_kv[1];
static basalt_kv user_kv[2];
static basalt_value items_v[3];
static basalt_kv map_kv[2];
static basalt_kv people0_kv[1], people1_kv[1];
static basalt_value people_v[2];
static basalt_kv vars_kv[13];
static basalt_value vars;

static basalt_value kvlist(basalt_kv *items, size_t n) {
    basalt_value v;
    v.type = BASALT_VAL_KVLIST;
    v.u.kv.items = items;
    v.u.kv.n = n;
    return v;
}

static void build_vars(void) {
    address_kv[0] = (basalt_kv){"city", basalt_v_str("Paris")};
    user_kv[0] = (basalt_kv){"name", basalt_v_str("Bob")};
    user_kv[1] = (basalt_kv){"address", kvlist(address_kv, 1)};
    items_v[0] = basalt_v_str("a");
    items_v[1] = basalt_v_str("b");
    items_v[2] = basalt_v_str("c");
    map_kv[0] = (basalt_kv){"x", basalt_v_int(1)};
    map_kv[1] = (basalt_kv){"y", basalt_v_str("q\"")};
    people0_kv[0] = (basalt_kv){"name", basalt_v_str("Ann")};
    people1_kv[0] = (basalt_kv){"name", basalt_v_str("Cy")};
    people_v[0] = kvlist(people0_kv, 1);
    people_v[1] = kvlist(people1_kv, 1);
    size_t i = 0;
    vars_kv[i++] = (basalt_kv){"name", basalt_v_str("Ada")};
    vars_kv[i++] = (basalt_kv){"user", kvlist(user_kv, 2)};
    vars_kv[i++] = (basalt_kv){"items", basalt_v_array(items_v, 3)};
    vars_kv[i++] = (basalt_kv){"empty", basalt_v_array(NULL, 0)};
    vars_kv[i++] = (basalt_kv){"flag", basalt_v_bool(true)};
    vars_kv[i++] = (basalt_kv){"off", basalt_v_bool(false)};
    vars_kv[i++] = (basalt_kv){"zero", basalt_v_int(0)};
    vars_kv[i++] = (basalt_kv){"n", basalt_v_int(3)};
    vars_kv[i++] = (basalt_kv){"pi", basalt_v_double(2.5)};
    vars_kv[i++] = (basalt_kv){"blank", basalt_v_str("")};
    vars_kv[i++] = (basalt_kv){"map", kvlist(map_kv, 2)};
    vars_kv[i++] = (basalt_kv){"people", basalt_v_array(people_v, 2)};
    vars_kv[i++] = (basalt_kv){"whole", basalt_v_double(3.0)};
    vars = kvlist(vars_kv, i);
}

typedef struct tcase {
    const char *src;
    const char *want; /* expected text, or NULL when an error is expected */
    const char *code; /* expected error code */
    unsigned line, column;
} tcase;

#define OK(s, w)                                                                                   \
    { s, w, NULL, 0, 0 }
#define ERR(s, c, l, col)                                                                          \
    { s, NULL, c, l, col }
#define UNS BASALT_PERR_TEMPLATE_UNSUPPORTED
#define SYN BASALT_PERR_TEMPLATE_SYNTAX

static const tcase cases[] = {
    /* variables and dotted names */
    OK("Hello {{ name }}!", "Hello Ada!"),
    OK("Hello {{name}}!", "Hello Ada!"),
    OK("{{   name\t}}", "Ada"),
    OK("{{ user.name }} lives in {{ user.address.city }}", "Bob lives in Paris"),
    OK("[{{ missing }}]", "[]"),
    OK("[{{ user.missing }}][{{ name.length }}][{{ missing.deep.er }}]", "[][][]"),
    OK("{{ n }} {{ pi }} {{ whole }} {{ flag }} {{ zero }}", "3 2.5 3.0 true 0"),
    OK("{{ items }} {{ map }}", "[\"a\",\"b\",\"c\"] {\"x\":1,\"y\":\"q\\\"\"}"),
    OK("{{ not flag }} {{ not not flag }}", "false true"),
    OK("a { b } {x} c", "a { b } {x} c"),
    OK("<b>{{ name }}</b> & co", "<b>Ada</b> & co"),
    OK("", ""),
    /* trailing newline: exactly one removed */
    OK("line\n", "line"),
    OK("line\n\n", "line\n"),
    OK("line\r\n", "line"),
    OK("a\r\nb", "a\nb"),
    /* comments */
    OK("a{# note #}b", "ab"),
    OK("a{# {{ name }} {% if %} #}b", "ab"),
    OK("a{#\nmulti\nline\n#}b", "ab"),
    /* if / elif / else with truthiness */
    OK("{% if flag %}yes{% endif %}", "yes"),
    OK("{% if off %}yes{% endif %}", ""),
    OK("{% if off %}a{% else %}b{% endif %}", "b"),
    OK("{% if off %}a{% elif zero %}b{% elif n %}c{% else %}d{% endif %}", "c"),
    OK("{% if missing %}a{% elif blank %}b{% elif empty %}c{% else %}d{% endif %}", "d"),
    OK("{% if not missing %}none{% endif %}", "none"),
    OK("{% if user.address.city %}{{ user.address.city }}{% endif %}", "Paris"),
    OK("{% if items %}list{% endif %}{% if map %} map{% endif %}{% if pi %} pi{% endif %}",
       "list map pi"),
    OK("{%if flag%}x{%endif%}", "x"),
    OK("{% if flag %}\n  line\n{% endif %}\n", "\n  line\n"),
    /* for */
    OK("{% for i in items %}{{ i }},{% endfor %}", "a,b,c,"),
    OK("{% for i in items %}{{ loop.index }}/{{ loop.length }}{% if not loop.last %} "
       "{% endif %}{% endfor %}",
       "1/3 2/3 3/3"),
    OK("{% for i in items %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
       "{% if loop.first %}F{% endif %}{% endfor %}",
       "032F121210"),
    OK("{% for p in people %}{{ p.name }};{% endfor %}", "Ann;Cy;"),
    OK("{% for k in map %}{{ k }}{% endfor %}", "xy"),
    OK("{% for c in name %}{{ c }}.{% endfor %}", "A.d.a."),
    OK("{% for i in missing %}x{% endfor %}[{% for i in empty %}x{% endfor %}]", "[]"),
    OK("{% for i in items %}{% for j in items %}{{ i }}{{ j }} {% endfor %}{% endfor %}",
       "aa ab ac ba bb bc ca cb cc "),
    OK("{% for name in items %}{{ name }}{% endfor %}{{ name }}", "abcAda"),
    /* refused: outside the subset */
    ERR("Hi {{ name | upper }}", UNS, 1, 12),
    ERR("{{ name|upper }}", UNS, 1, 8),
    ERR("x\n  {{- name }}", UNS, 2, 5),
    ERR("{{ name -}}", UNS, 1, 9),
    ERR("{%- if flag %}{% endif %}", UNS, 1, 3),
    ERR("{% if flag -%}{% endif %}", UNS, 1, 12),
    ERR("{#- c #}", UNS, 1, 3),
    ERR("{% set x = 1 %}", UNS, 1, 4),
    ERR("{% macro m() %}{% endmacro %}", UNS, 1, 4),
    ERR("{% include 'x' %}", UNS, 1, 4),
    ERR("{% raw %}{{ x }}{% endraw %}", UNS, 1, 4),
    ERR("{{ a ~ b }}", UNS, 1, 6),
    ERR("{{ a + 1 }}", UNS, 1, 6),
    ERR("{{ 'lit' }}", UNS, 1, 4),
    ERR("{{ 42 }}", UNS, 1, 4),
    ERR("{{ f(x) }}", UNS, 1, 5),
    ERR("{{ a[0] }}", UNS, 1, 5),
    ERR("{{ a.0 }}", UNS, 1, 6),
    ERR("{% if a and b %}{% endif %}", UNS, 1, 9),
    ERR("{% if a or b %}{% endif %}", UNS, 1, 9),
    ERR("{% if a == b %}{% endif %}", UNS, 1, 9),
    ERR("{% if a is defined %}{% endif %}", UNS, 1, 9),
    ERR("{% if true %}{% endif %}", UNS, 1, 7),
    ERR("{{ a if b else c }}", UNS, 1, 6),
    ERR("{% for k, v in map %}{% endfor %}", UNS, 1, 9),
    ERR("{% for i in items %}{% else %}{% endfor %}", UNS, 1, 24),
    ERR("{% for i in items if i %}{% endfor %}", UNS, 1, 19),
    ERR("{% for i in not items %}{% endfor %}", UNS, 1, 13),
    ERR("{% for i in items %}{{ loop.cycle }}{% endfor %}", UNS, 1, 24),
    ERR("{% for i in n %}{% endfor %}", UNS, 1, 13),
    ERR("\n\n   {{ user.name | default('x') }}", UNS, 3, 17),
    ERR("h\xc3\xa9 {{ a|b }}", UNS, 1, 8),
    /* refused: malformed */
    ERR("Hello {{ name", SYN, 1, 7),
    ERR("{% if flag %}", SYN, 1, 14),
    ERR("{% for i in items %}x", SYN, 1, 22),
    ERR("text {% endif %}", SYN, 1, 9),
    ERR("{% if a %}{% endfor %}", SYN, 1, 14),
    ERR("{% if a %}{% else %}{% elif b %}{% endif %}", SYN, 1, 24),
    ERR("{% if a %}{% else %}{% else %}{% endif %}", SYN, 1, 24),
    ERR("{% endif x %}", SYN, 1, 4),
    ERR("{% if %}{% endif %}", SYN, 1, 7),
    ERR("{{ }}", SYN, 1, 4),
    ERR("{# never closed", SYN, 1, 1),
    ERR("{% frobnicate %}", SYN, 1, 4),
    ERR("{% %}", SYN, 1, 1),
    ERR("{{ a. }}", SYN, 1, 7),
    ERR("{% for in items %}{% endfor %}", SYN, 1, 8),
    ERR("{% for i of items %}{% endfor %}", SYN, 1, 10),
};

static void test_table_of_cases(void) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const tcase *c = &cases[i];
        basalt_buf out = {0};
        basalt_prompt_error err;
        bool ok = basalt_template_render_text(c->src, strlen(c->src), &vars, &out, &err);
        if (c->want) {
            if (!ok || strcmp(basalt_buf_cstr(&out), c->want) != 0) {
                fprintf(stderr, "  case %zu %s: want \"%s\", got %s \"%s\" (%s)\n", i, c->src,
                        c->want, ok ? "text" : "error", ok ? out.data : err.code,
                        ok ? "" : err.message);
                check_current_failed_ = 1;
            }
        } else {
            if (ok || strcmp(err.code, c->code) != 0 || err.line != c->line ||
                err.column != c->column) {
                fprintf(stderr, "  case %zu %s: want %s at %u:%u, got %s at %u:%u (%s)\n", i,
                        c->src, c->code, c->line, c->column, ok ? "success" : err.code, err.line,
                        err.column, ok ? basalt_buf_cstr(&out) : err.message);
                check_current_failed_ = 1;
            }
        }
        basalt_buf_free(&out);
    }
}

static void test_error_message_names_position_and_construct(void) {
    basalt_buf out = {0};
    basalt_prompt_error err;
    const char *src = "Dear {{ name }},\n{{ name | title }}";
    CHECK(!basalt_template_render_text(src, strlen(src), &vars, &out, &err));
    CHECK_STR(err.code, BASALT_PERR_TEMPLATE_UNSUPPORTED);
    CHECK(strstr(err.message, "line 2, column 9") != NULL);
    CHECK(strstr(err.message, "filters") != NULL);
    basalt_buf_free(&out);
}

static void test_unsupported_in_untaken_branch_is_still_refused(void) {
    basalt_buf out = {0};
    basalt_prompt_error err;
    const char *src = "{% if off %}{{ name | upper }}{% endif %}";
    CHECK(!basalt_template_render_text(src, strlen(src), &vars, &out, &err));
    CHECK_STR(err.code, BASALT_PERR_TEMPLATE_UNSUPPORTED);
    CHECK_INT(out.len, 0);
    basalt_buf_free(&out);
}

static void test_parsed_template_renders_many_times_with_other_variables(void) {
    basalt_prompt_error err;
    const char *src = "Hi {{ name }}";
    basalt_template *t = basalt_template_parse(src, strlen(src), &err);
    CHECK(t != NULL);
    basalt_kv kv1[1] = {{"name", basalt_v_str("A")}};
    basalt_kv kv2[1] = {{"name", basalt_v_str("B")}};
    basalt_value v1 = kvlist(kv1, 1), v2 = kvlist(kv2, 1);
    basalt_buf a = {0}, b = {0}, c = {0};
    CHECK(basalt_template_render(t, &v1, &a, &err));
    CHECK(basalt_template_render(t, &v2, &b, &err));
    CHECK(basalt_template_render(t, NULL, &c, &err));
    CHECK_STR(basalt_buf_cstr(&a), "Hi A");
    CHECK_STR(basalt_buf_cstr(&b), "Hi B");
    CHECK_STR(basalt_buf_cstr(&c), "Hi ");
    basalt_buf_free(&a);
    basalt_buf_free(&b);
    basalt_buf_free(&c);
    basalt_template_free(t);
}

static void test_deep_nesting_is_refused_not_crashing(void) {
    basalt_buf src = {0}, out = {0};
    for (int i = 0; i < 200; i++)
        basalt_buf_puts(&src, "{% if flag %}");
    basalt_prompt_error err;
    CHECK(!basalt_template_render_text(src.data, src.len, &vars, &out, &err));
    CHECK_STR(err.code, BASALT_PERR_TEMPLATE_UNSUPPORTED);
    basalt_buf_free(&src);
    basalt_buf_free(&out);
}

static void setup_cases(void) {
    build_vars();
}

TEST_MAIN(TEST_CASE(setup_cases), TEST_CASE(test_table_of_cases),
          TEST_CASE(test_error_message_names_position_and_construct),
          TEST_CASE(test_unsupported_in_untaken_branch_is_still_refused),
          TEST_CASE(test_parsed_template_renders_many_times_with_other_variables),
          TEST_CASE(test_deep_nesting_is_refused_not_crashing))
