// SPDX-License-Identifier: MIT
// Tests for core/sip_parse.c: table-driven valid and invalid Via, URI, name-addr, numbers and
// credentials; every input is placed so it ends at a guard page, so an over-read faults.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/sip_parse.h"

/* ---- guard-page input ------------------------------------------------------------------- */

static char *guard_mem;
static size_t guard_page;

static void guard_setup(void)
{
    guard_page = (size_t)sysconf(_SC_PAGESIZE);
    guard_mem =
        mmap(NULL, 2 * guard_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(guard_mem != MAP_FAILED);
    cr_assert(mprotect(guard_mem + guard_page, guard_page, PROT_NONE) == 0);
}

static void guard_teardown(void)
{
    munmap(guard_mem, 2 * guard_page);
}

/* `s` copied so its last byte is the last readable byte before the guard page */
static struct slice at_guard(const char *s)
{
    size_t n = strlen(s);
    cr_assert(n <= guard_page);
    char *p = guard_mem + guard_page - n;
    memcpy(p, s, n);
    return slice_make(p, n);
}

static bool eq(struct slice a, const char *b)
{
    return b == NULL ? a.base == NULL : slice_eq(a, slice_make(b, strlen(b)));
}

#define EXPECT_SLICE(got, want, why)                                                               \
    cr_expect(eq((got), (want)), "%s: %s is '%.*s', want '%s'", (why), #got, (int)(got).len,       \
              (got).base ? (got).base : "", (want) ? (want) : "(absent)")

TestSuite(sip_parse, .init = guard_setup, .fini = guard_teardown);

/* ---- Via -------------------------------------------------------------------------------- */

struct via_row {
    const char *in;
    int ret;
    const char *transport;
    enum sip_transport t;
    const char *host;
    enum sip_host_kind kind;
    uint16_t port;
    const char *branch;
    const char *received;
    bool rport;
    uint16_t rport_port;
    const char *why;
};

static const struct via_row via_rows[] = {
    {"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds", 0, "UDP", SIP_TRANSPORT_UDP, "192.0.2.1",
     SIP_HOST_IPV4, 5060, "z9hG4bK776asdhds", NULL, false, 0, "plain UDP IPv4"},
    {"SIP/2.0/tls client.example.com;branch=z9hG4bKx;rport", 0, "tls", SIP_TRANSPORT_TLS,
     "client.example.com", SIP_HOST_NAME, 0, "z9hG4bKx", NULL, true, 0,
     "lower-case transport, no port, rport flag"},
    {"SIP/2.0/TCP [2001:db8::1]:5061;received=2001:db8::9;rport=40000;branch=z9hG4bKa", 0, "TCP",
     SIP_TRANSPORT_TCP, "[2001:db8::1]", SIP_HOST_IPV6, 5061, "z9hG4bKa", "2001:db8::9", true,
     40000, "IPv6 reference, IPv6 received, rport value"},
    {"SIP / 2.0 / WSS  df7jal23ls0d.invalid ; branch = z9hG4bKb ; received=[::1]", 0, "WSS",
     SIP_TRANSPORT_WSS, "df7jal23ls0d.invalid", SIP_HOST_NAME, 0, "z9hG4bKb", "[::1]", false, 0,
     "LWS around slashes, semicolons and equals"},
    {"SIP/2.0/SCTP h:1 ;ttl=16;maddr=224.2.0.1;x-foo;y=\"a;b\"", 0, "SCTP", SIP_TRANSPORT_SCTP, "h",
     SIP_HOST_NAME, 1, NULL, NULL, false, 0, "ttl, maddr, other params incl. quoted"},
    {"SIP/2.0/ws 10.0.0.1 : 80", 0, "ws", SIP_TRANSPORT_WS, "10.0.0.1", SIP_HOST_IPV4, 80, NULL,
     NULL, false, 0, "LWS around the port colon"},
    {"SIP/2.0/FOO host", 0, "FOO", SIP_TRANSPORT_OTHER, "host", SIP_HOST_NAME, 0, NULL, NULL, false,
     0, "unknown transport token"},
    {"", -SIP_PE_EMPTY, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0, "empty"},
    {"SIP/2.0 host", -SIP_PE_BAD_PROTOCOL, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "missing transport"},
    {"SIP/2.0/UDP", -SIP_PE_BAD_HOST, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0, "missing host"},
    {"SIP/2.0/UDP host:0", -SIP_PE_BAD_PORT, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0, "port 0"},
    {"SIP/2.0/UDP host:65536", -SIP_PE_BAD_PORT, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "port out of range"},
    {"SIP/2.0/UDP host:5060000", -SIP_PE_BAD_PORT, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "too many port digits"},
    {"SIP/2.0/UDP [2001:db8::1", -SIP_PE_BAD_HOST, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "unclosed IPv6 reference"},
    {"SIP/2.0/UDP [2001:db8:::1]", -SIP_PE_BAD_HOST, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "triple colon"},
    {"SIP/2.0/UDP [1:2:3:4:5:6:7:8:9]", -SIP_PE_BAD_HOST, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "nine IPv6 groups"},
    {"SIP/2.0/UDP 300.1.1.1", -SIP_PE_BAD_HOST, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "IPv4 octet > 255"},
    {"SIP/2.0/UDP host;branch", -SIP_PE_BAD_PARAM, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "branch without value"},
    {"SIP/2.0/UDP host;branch=a;branch=b", -SIP_PE_BAD_PARAM, NULL, 0, NULL, 0, 0, NULL, NULL,
     false, 0, "two branches"},
    {"SIP/2.0/UDP host;rport=70000", -SIP_PE_BAD_PARAM, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "rport out of range"},
    {"SIP/2.0/UDP host;ttl=256", -SIP_PE_BAD_PARAM, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "ttl out of range"},
    {"SIP/2.0/UDP host;received=example.com", -SIP_PE_BAD_PARAM, NULL, 0, NULL, 0, 0, NULL, NULL,
     false, 0, "received must be an address"},
    {"SIP/2.0/UDP host;x=\"open", -SIP_PE_BAD_QUOTE, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "unterminated quoted param"},
    {"SIP/2.0/UDP host junk", -SIP_PE_BAD_HOST, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "bytes after sent-by"},
    {"SIP/2.0/UDP host;;x", -SIP_PE_BAD_PARAM, NULL, 0, NULL, 0, 0, NULL, NULL, false, 0,
     "empty param name"},
};

Test(sip_parse, parses_via_rows)
{
    for (size_t i = 0; i < sizeof(via_rows) / sizeof(via_rows[0]); i++) {
        const struct via_row *r = &via_rows[i];
        struct sip_via v;
        int ret = sip_parse_via(at_guard(r->in), &v);
        cr_expect_eq(ret, r->ret, "%s: returned %d (%s), want %d", r->why, ret, sip_perr_name(ret),
                     r->ret);
        if (ret != 0 || r->ret != 0)
            continue;
        EXPECT_SLICE(v.protocol, "SIP", r->why);
        EXPECT_SLICE(v.version, "2.0", r->why);
        EXPECT_SLICE(v.transport_text, r->transport, r->why);
        cr_expect_eq(v.transport, r->t, "%s: transport enum", r->why);
        EXPECT_SLICE(v.host, r->host, r->why);
        cr_expect_eq(v.host_kind, r->kind, "%s: host kind", r->why);
        cr_expect_eq(v.port, r->port, "%s: port %u", r->why, v.port);
        EXPECT_SLICE(v.branch, r->branch, r->why);
        EXPECT_SLICE(v.received, r->received, r->why);
        cr_expect_eq(v.has_rport, r->rport, "%s: rport flag", r->why);
        cr_expect_eq(v.rport_port, r->rport_port, "%s: rport value", r->why);
    }
}

Test(sip_parse, pulls_ttl_and_maddr_and_iterates_other_via_params)
{
    struct sip_via v;
    struct sip_param_iter it;
    struct sip_param p;
    const char *names[] = {"ttl", "maddr", "x-foo", "y"};
    size_t n = 0;

    cr_assert_eq(
        sip_parse_via(at_guard("SIP/2.0/SCTP h:1 ;ttl=16;maddr=224.2.0.1;x-foo;y=\"a;b\""), &v), 0);
    cr_expect(v.has_ttl);
    cr_expect_eq(v.ttl, 16);
    EXPECT_SLICE(v.maddr, "224.2.0.1", "maddr");
    sip_params_begin(&it, v.params, SIP_PARAM_HEADER);
    while (sip_params_next(&it, &p) > 0) {
        cr_assert_lt(n, 4);
        EXPECT_SLICE(p.name, names[n], "param name");
        n++;
    }
    cr_expect_eq(n, 4);
    cr_expect_not(p.has_value && !p.quoted, "last param is quoted");
    EXPECT_SLICE(p.value, "a;b", "quoted value keeps its ';'");
}

/* ---- generic params ---------------------------------------------------------------------- */

Test(sip_parse, iterates_params_without_values_and_with_escaped_quotes)
{
    struct sip_param_iter it;
    struct sip_param p;

    sip_params_begin(&it, at_guard(";lr ; Q=0.5;name=\"a \\\"b\\\" c\";+sip.instance=\"<urn:x>\""),
                     SIP_PARAM_HEADER);
    cr_assert_eq(sip_params_next(&it, &p), 1);
    EXPECT_SLICE(p.name, "lr", "flag param");
    cr_expect_not(p.has_value);
    cr_expect_null(p.value.base);
    cr_assert_eq(sip_params_next(&it, &p), 1);
    cr_expect(sip_param_is(&p, SLICE_LIT("q")), "names compare case-insensitively");
    EXPECT_SLICE(p.value, "0.5", "token value");
    cr_assert_eq(sip_params_next(&it, &p), 1);
    EXPECT_SLICE(p.value, "a \\\"b\\\" c", "quoted-pairs kept as written");
    cr_expect(p.quoted);
    cr_assert_eq(sip_params_next(&it, &p), 1);
    EXPECT_SLICE(p.name, "+sip.instance", "feature tag name");
    EXPECT_SLICE(p.value, "<urn:x>", "angle brackets inside quotes");
    cr_expect_eq(sip_params_next(&it, &p), 0);
    cr_expect_eq(sip_params_next(&it, &p), 0, "stays at the end");
}

Test(sip_parse, rejects_bad_params_and_stops_after_an_error)
{
    static const struct {
        const char *in;
        enum sip_param_mode mode;
        int ret;
    } rows[] = {
        {"x", SIP_PARAM_HEADER, -SIP_PE_BAD_PARAM},
        {";a=", SIP_PARAM_HEADER, -SIP_PE_BAD_PARAM},
        {";a=\"x\ny\"", SIP_PARAM_HEADER, -SIP_PE_BAD_QUOTE},
        {";a=\"x\\", SIP_PARAM_HEADER, -SIP_PE_BAD_QUOTE},
        {";a b", SIP_PARAM_HEADER, -SIP_PE_BAD_PARAM},
        {";a=%zz", SIP_PARAM_URI, -SIP_PE_BAD_PARAM},
        {";a= b", SIP_PARAM_URI, -SIP_PE_BAD_PARAM},
        {";a=%41;b", SIP_PARAM_URI, 0},
        {"", SIP_PARAM_URI, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int r = sip_params_check(at_guard(rows[i].in), rows[i].mode);
        cr_expect_eq(r, rows[i].ret, "'%s': %d want %d", rows[i].in, r, rows[i].ret);
    }
    struct sip_param_iter it;
    struct sip_param p;
    sip_params_begin(&it, at_guard(";a b;c"), SIP_PARAM_HEADER);
    cr_expect_lt(sip_params_next(&it, &p), 0);
    cr_expect_eq(sip_params_next(&it, &p), 0);
    sip_params_begin(&it, SLICE_NULL, SIP_PARAM_HEADER);
    cr_expect_eq(sip_params_next(&it, &p), 0, "a NULL slice is an empty list");
}

/* ---- URI --------------------------------------------------------------------------------- */

struct uri_row {
    const char *in;
    int ret;
    enum sip_uri_scheme kind;
    const char *user;
    const char *password;
    const char *host;
    enum sip_host_kind host_kind;
    uint16_t port;
    const char *params;
    const char *headers;
    const char *why;
};

static const struct uri_row uri_rows[] = {
    {"sip:alice@atlanta.com", 0, SIP_URI_SIP, "alice", NULL, "atlanta.com", SIP_HOST_NAME, 0, NULL,
     NULL, "user@host"},
    {"SIPS:Bob@[2001:db8::10]:5061;transport=tls;lr", 0, SIP_URI_SIPS, "Bob", NULL,
     "[2001:db8::10]", SIP_HOST_IPV6, 5061, ";transport=tls;lr", NULL, "sips, IPv6, port, params"},
    {"sip:+1-212-555-1212:1234@gateway.com;user=phone", 0, SIP_URI_SIP, "+1-212-555-1212", "1234",
     "gateway.com", SIP_HOST_NAME, 0, ";user=phone", NULL, "password reported"},
    {"sip:sip%3Auser%40example.com@company.com;other-param=summit", 0, SIP_URI_SIP,
     "sip%3Auser%40example.com", NULL, "company.com", SIP_HOST_NAME, 0, ";other-param=summit", NULL,
     "escaped user left as-is"},
    {"sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com", 0, SIP_URI_SIP, NULL, NULL,
     "atlanta.com", SIP_HOST_NAME, 0, ";method=REGISTER", "to=alice%40atlanta.com",
     "no user, headers part"},
    {"sip:alice;day=tuesday@atlanta.com", 0, SIP_URI_SIP, "alice;day=tuesday", NULL, "atlanta.com",
     SIP_HOST_NAME, 0, NULL, NULL, "';' in user"},
    {"sip:192.0.2.4:65535", 0, SIP_URI_SIP, NULL, NULL, "192.0.2.4", SIP_HOST_IPV4, 65535, NULL,
     NULL, "IPv4 max port"},
    {"sip:[::ffff:192.0.2.1]", 0, SIP_URI_SIP, NULL, NULL, "[::ffff:192.0.2.1]", SIP_HOST_IPV6, 0,
     NULL, NULL, "IPv6 with an IPv4 tail"},
    {"sip:a@example.com.", 0, SIP_URI_SIP, "a", NULL, "example.com.", SIP_HOST_NAME, 0, NULL, NULL,
     "FQDN with trailing dot"},
    {"tel:+1-201-555-0123;phone-context=example.com", 0, SIP_URI_TEL, "+1-201-555-0123", NULL, NULL,
     0, 0, ";phone-context=example.com", NULL, "tel URI"},
    {"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", 0, SIP_URI_OTHER, NULL, NULL, NULL, 0, 0,
     NULL, NULL, "other scheme reported"},
    {"", -SIP_PE_EMPTY, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "empty"},
    {"alice@atlanta.com", -SIP_PE_BAD_SCHEME, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "no scheme"},
    {"1sip:a@b", -SIP_PE_BAD_SCHEME, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "scheme digit first"},
    {"sip:a@b:0", -SIP_PE_BAD_PORT, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "port 0"},
    {"sip:a@b:65536", -SIP_PE_BAD_PORT, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "port 65536"},
    {"sip:a@b:", -SIP_PE_BAD_PORT, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "empty port"},
    {"sip:a@", -SIP_PE_BAD_HOST, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "no host"},
    {"sip:a@[::1", -SIP_PE_BAD_HOST, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "unclosed IPv6"},
    {"sip:a@[fe80::1%eth0]", -SIP_PE_BAD_HOST, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "zone index"},
    {"sip:a@-bad.com", -SIP_PE_BAD_HOST, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "label with '-'"},
    {"sip:a@b..com", -SIP_PE_BAD_HOST, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "empty label"},
    {"sip:a%2@b", -SIP_PE_BAD_URI, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "broken escape"},
    {"sip:a b@c", -SIP_PE_BAD_URI, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "space in user"},
    {"sip:@c", -SIP_PE_BAD_URI, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "empty user"},
    {"sip:b;x=\"y\"", -SIP_PE_BAD_PARAM, 0, NULL, NULL, NULL, 0, 0, NULL, NULL,
     "quotes in a URI param"},
    {"sip:b?", -SIP_PE_BAD_URI, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "empty headers"},
    {"sip:b?x", -SIP_PE_BAD_URI, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "header without '='"},
    {"sip:b>", -SIP_PE_BAD_URI, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "stray '>'"},
    {"tel:", -SIP_PE_BAD_URI, 0, NULL, NULL, NULL, 0, 0, NULL, NULL, "empty tel"},
};

Test(sip_parse, parses_uri_rows)
{
    for (size_t i = 0; i < sizeof(uri_rows) / sizeof(uri_rows[0]); i++) {
        const struct uri_row *r = &uri_rows[i];
        struct sip_uri u;
        int ret = sip_parse_uri(at_guard(r->in), &u);
        cr_expect_eq(ret, r->ret, "%s: returned %d (%s), want %d", r->why, ret, sip_perr_name(ret),
                     r->ret);
        if (ret != 0 || r->ret != 0)
            continue;
        cr_expect_eq(u.kind, r->kind, "%s: kind", r->why);
        if (r->kind == SIP_URI_OTHER)
            continue;
        EXPECT_SLICE(u.user, r->user, r->why);
        cr_expect_eq(u.has_user, r->user != NULL, "%s: has_user", r->why);
        EXPECT_SLICE(u.password, r->password, r->why);
        cr_expect_eq(u.has_password, r->password != NULL, "%s: has_password", r->why);
        EXPECT_SLICE(u.host, r->host, r->why);
        cr_expect_eq(u.host_kind, r->host_kind, "%s: host kind", r->why);
        cr_expect_eq(u.port, r->port, "%s: port %u", r->why, u.port);
        cr_expect_eq(u.has_port, r->port != 0, "%s: has_port", r->why);
        if (r->params)
            EXPECT_SLICE(u.params, r->params, r->why);
        else
            cr_expect_eq(u.params.len, 0, "%s: no params", r->why);
        EXPECT_SLICE(u.headers, r->headers, r->why);
    }
}

Test(sip_parse, pulls_common_uri_params)
{
    struct sip_uri u;

    cr_assert_eq(sip_parse_uri(at_guard("sip:h;Transport=TLS;LR;maddr=10.0.0.1;user=phone"), &u),
                 0);
    EXPECT_SLICE(u.transport, "TLS", "transport");
    EXPECT_SLICE(u.maddr, "10.0.0.1", "maddr");
    EXPECT_SLICE(u.user_param, "phone", "user param");
    cr_expect(u.lr, "lr with upper-case name");
    cr_assert_eq(sip_parse_uri(at_guard("urn:uuid:1"), &u), 0);
    EXPECT_SLICE(u.scheme, "urn", "other scheme");
    EXPECT_SLICE(u.opaque, "uuid:1", "other scheme rest");
}

/* ---- name-addr --------------------------------------------------------------------------- */

struct na_row {
    const char *in;
    int ret;
    const char *display;
    bool quoted;
    const char *uri;
    const char *tag;
    const char *expires;
    const char *why;
};

static const struct na_row na_rows[] = {
    {"\"Bob \\\"the\\\" Builder\" <sip:bob@biloxi.com>;tag=a6c85cf", 0, "Bob \\\"the\\\" Builder",
     true, "sip:bob@biloxi.com", "a6c85cf", NULL, "quoted display with escaped quotes"},
    {"Alice Liddell <sips:alice@[2001:db8::2]:5061;transport=tls>;tag=1928301774", 0,
     "Alice Liddell", false, "sips:alice@[2001:db8::2]:5061;transport=tls", "1928301774", NULL,
     "token display, URI params inside <>"},
    {"<sip:carol@chicago.com>", 0, NULL, false, "sip:carol@chicago.com", NULL, NULL,
     "no display name"},
    {"sip:carol@chicago.com;tag=887s", 0, NULL, false, "sip:carol@chicago.com", "887s", NULL,
     "addr-spec: ';' starts header params"},
    {"  \"\" <tel:+15551234>  ;  TAG = x ", 0, "", true, "tel:+15551234", "x", NULL,
     "empty quoted display, LWS, upper-case tag name"},
    {"<sip:8001@10.0.0.5:5061;transport=tls>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-"
     "00aabbccddee>\";+u.sip!devicename.ccm.cisco.com=\"CSFJDOE\";+u.sip!model.ccm.cisco.com="
     "\"503\";expires=3600;q=0.9",
     0, NULL, false, "sip:8001@10.0.0.5:5061;transport=tls", NULL, "3600", "Jabber Contact"},
    {"", -SIP_PE_EMPTY, NULL, false, NULL, NULL, NULL, "empty"},
    {"\"Bob <sip:bob@b>", -SIP_PE_BAD_QUOTE, NULL, false, NULL, NULL, NULL, "unterminated quote"},
    {"\"Bob\" sip:bob@b", -SIP_PE_BAD_NAME_ADDR, NULL, false, NULL, NULL, NULL,
     "quoted display without <>"},
    {"<sip:bob@b", -SIP_PE_BAD_NAME_ADDR, NULL, false, NULL, NULL, NULL, "missing '>'"},
    {"<sip:bob@b> x", -SIP_PE_BAD_NAME_ADDR, NULL, false, NULL, NULL, NULL, "junk after '>'"},
    {"<sip:bob@b>;tag=1;tag=2", -SIP_PE_BAD_PARAM, NULL, false, NULL, NULL, NULL, "two tags"},
    {"<sip:bob@b>;tag", -SIP_PE_BAD_PARAM, NULL, false, NULL, NULL, NULL, "tag without value"},
    {"<sip:bob@b:99999>", -SIP_PE_BAD_PORT, NULL, false, NULL, NULL, NULL, "URI error surfaces"},
    {"Bob <>", -SIP_PE_EMPTY, NULL, false, NULL, NULL, NULL, "empty URI"},
};

Test(sip_parse, parses_name_addr_rows)
{
    for (size_t i = 0; i < sizeof(na_rows) / sizeof(na_rows[0]); i++) {
        const struct na_row *r = &na_rows[i];
        struct sip_name_addr na;
        int ret = sip_parse_name_addr(at_guard(r->in), &na);
        cr_expect_eq(ret, r->ret, "%s: returned %d (%s), want %d", r->why, ret, sip_perr_name(ret),
                     r->ret);
        if (ret != 0 || r->ret != 0)
            continue;
        EXPECT_SLICE(na.display, r->display, r->why);
        cr_expect_eq(na.display_quoted, r->quoted, "%s: quoted", r->why);
        EXPECT_SLICE(na.uri_text, r->uri, r->why);
        EXPECT_SLICE(na.tag, r->tag, r->why);
        cr_expect_eq(na.has_tag, r->tag != NULL, "%s: has_tag", r->why);
        EXPECT_SLICE(na.expires, r->expires, r->why);
        cr_expect_not(na.star, "%s: not star", r->why);
    }
}

Test(sip_parse, iterates_cisco_contact_params)
{
    struct sip_name_addr na;
    struct sip_param_iter it;
    struct sip_param p;
    bool seen_instance = false, seen_device = false;

    cr_assert_eq(sip_parse_name_addr(at_guard(na_rows[5].in), &na), 0);
    cr_expect_eq(na.uri.port, 5061);
    EXPECT_SLICE(na.uri.transport, "tls", "URI transport");
    EXPECT_SLICE(na.q, "0.9", "q");
    sip_params_begin(&it, na.params, SIP_PARAM_HEADER);
    while (sip_params_next(&it, &p) > 0) {
        if (sip_param_is(&p, SLICE_LIT("+sip.instance"))) {
            EXPECT_SLICE(p.value, "<urn:uuid:00000000-0000-0000-0000-00aabbccddee>", "instance");
            seen_instance = true;
        } else if (sip_param_is(&p, SLICE_LIT("+u.sip!devicename.ccm.cisco.com"))) {
            EXPECT_SLICE(p.value, "CSFJDOE", "device name");
            seen_device = true;
        }
    }
    cr_expect(seen_instance && seen_device);
}

Test(sip_parse, recognises_star_contact)
{
    struct sip_name_addr na;

    cr_expect_eq(sip_parse_name_addr(at_guard(" * "), &na), 0);
    cr_expect(na.star);
    cr_expect_neq(sip_parse_name_addr(at_guard("**"), &na), 0);
}

/* ---- numbers ----------------------------------------------------------------------------- */

Test(sip_parse, parses_cseq_rows)
{
    static const struct {
        const char *in;
        int ret;
        uint32_t seq;
        const char *method;
        enum sip_method m;
    } rows[] = {
        {"4711 INVITE", 0, 4711, "INVITE", SIP_METHOD_INVITE},
        {" 1\tREGISTER ", 0, 1, "REGISTER", SIP_METHOD_REGISTER},
        {"4294967295 ACK", 0, 4294967295u, "ACK", SIP_METHOD_ACK},
        {"0 FOO-BAR", 0, 0, "FOO-BAR", SIP_METHOD_UNKNOWN},
        {"2 register", 0, 2, "register", SIP_METHOD_UNKNOWN},
        {"4294967296 ACK", -SIP_PE_OUT_OF_RANGE, 0, NULL, 0},
        {"99999999999999999999999 ACK", -SIP_PE_OUT_OF_RANGE, 0, NULL, 0},
        {"", -SIP_PE_EMPTY, 0, NULL, 0},
        {"INVITE", -SIP_PE_BAD_NUMBER, 0, NULL, 0},
        {"12", -SIP_PE_BAD_METHOD, 0, NULL, 0},
        {"12INVITE", -SIP_PE_BAD_NUMBER, 0, NULL, 0},
        {"-1 INVITE", -SIP_PE_BAD_NUMBER, 0, NULL, 0},
        {"1 INVITE x", -SIP_PE_BAD_METHOD, 0, NULL, 0},
        {"1 IN<VITE", -SIP_PE_BAD_METHOD, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sip_cseq c;
        int r = sip_parse_cseq(at_guard(rows[i].in), &c);
        cr_expect_eq(r, rows[i].ret, "'%s': %d want %d", rows[i].in, r, rows[i].ret);
        if (r == 0 && rows[i].ret == 0) {
            cr_expect_eq(c.seq, rows[i].seq, "'%s' seq", rows[i].in);
            EXPECT_SLICE(c.method_text, rows[i].method, rows[i].in);
            cr_expect_eq(c.method, rows[i].m, "'%s' method enum", rows[i].in);
        }
    }
}

Test(sip_parse, range_checks_max_forwards_and_expires)
{
    uint8_t mf = 0;
    uint32_t ex = 0;

    cr_expect_eq(sip_parse_max_forwards(at_guard("70"), &mf), 0);
    cr_expect_eq(mf, 70);
    cr_expect_eq(sip_parse_max_forwards(at_guard(" 255 "), &mf), 0);
    cr_expect_eq(mf, 255);
    cr_expect_eq(sip_parse_max_forwards(at_guard("0"), &mf), 0);
    cr_expect_eq(mf, 0);
    cr_expect_eq(sip_parse_max_forwards(at_guard("256"), &mf), -SIP_PE_OUT_OF_RANGE);
    cr_expect_eq(sip_parse_max_forwards(at_guard("7O"), &mf), -SIP_PE_BAD_NUMBER);
    cr_expect_eq(sip_parse_max_forwards(at_guard(""), &mf), -SIP_PE_EMPTY);
    cr_expect_eq(sip_parse_expires(at_guard("3600"), &ex), 0);
    cr_expect_eq(ex, 3600);
    cr_expect_eq(sip_parse_expires(at_guard("4294967295"), &ex), 0);
    cr_expect_eq(ex, 4294967295u);
    cr_expect_eq(sip_parse_expires(at_guard("4294967296"), &ex), -SIP_PE_OUT_OF_RANGE);
    cr_expect_eq(sip_parse_expires(at_guard("1 2"), &ex), -SIP_PE_BAD_NUMBER);
}

/* ---- credentials ------------------------------------------------------------------------- */

#define JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqZG9lIn0.c2lnbmF0dXJl-_x"

static const struct {
    const char *in;
    int ret;
    const char *token;
    const char *realm;
    bool token68;
    const char *why;
} cred_rows[] = {
    {"Bearer token=\"" JWT "\"", 0, JWT, NULL, false, "Cisco form"},
    {"bearer  token=\"" JWT "\" , realm=\"ccmsipline\"", 0, JWT, "ccmsipline", false,
     "Cisco form with realm, lower-case scheme"},
    {"BEARER realm=\"ccmsipline\", token=" JWT, 0, JWT, "ccmsipline", false,
     "realm first, unquoted token"},
    {"Bearer " JWT, 0, JWT, NULL, true, "RFC 6750 token68"},
    {"Bearer abc+/def==", 0, "abc+/def==", NULL, true, "token68 with padding"},
    {"Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"x\"", -SIP_CRED_NOT_BEARER, NULL, NULL,
     false, "Digest"},
    {"Basic dXNlcjpwYXNz", -SIP_CRED_NOT_BEARER, NULL, NULL, false, "Basic"},
    {"", -SIP_PE_EMPTY, NULL, NULL, false, "empty"},
    {"Bearer", -SIP_PE_BAD_CRED, NULL, NULL, false, "Bearer without token"},
    {"Bearer realm=\"r\"", -SIP_PE_BAD_CRED, NULL, NULL, false, "Bearer params without token"},
    {"Bearer token=\"a\", token=\"b\"", -SIP_PE_BAD_CRED, NULL, NULL, false, "two tokens"},
    {"Bearer token=\"abc", -SIP_PE_BAD_CRED, NULL, NULL, false, "unterminated quote"},
    {"Bearer token=\"\"", -SIP_PE_BAD_CRED, NULL, NULL, false, "empty token"},
    {"Bearer token=\"a\",", -SIP_PE_BAD_CRED, NULL, NULL, false, "trailing comma"},
    {"Bearer abc def", -SIP_PE_BAD_CRED, NULL, NULL, false, "two token68 words"},
    {"Bearertoken=\"a\"", -SIP_PE_BAD_CRED, NULL, NULL, false, "no LWS after the scheme"},
    {"Bearer\"a\"", -SIP_PE_BAD_CRED, NULL, NULL, false, "quote straight after scheme"},
};

Test(sip_parse, parses_credential_rows)
{
    for (size_t i = 0; i < sizeof(cred_rows) / sizeof(cred_rows[0]); i++) {
        struct sip_cred c;
        int r = sip_parse_cred(at_guard(cred_rows[i].in), &c);
        cr_expect_eq(r, cred_rows[i].ret, "%s: %d (%s) want %d", cred_rows[i].why, r,
                     sip_perr_name(r), cred_rows[i].ret);
        if (r != 0 || cred_rows[i].ret != 0)
            continue;
        EXPECT_SLICE(c.token, cred_rows[i].token, cred_rows[i].why);
        EXPECT_SLICE(c.realm, cred_rows[i].realm, cred_rows[i].why);
        cr_expect_eq(c.has_realm, cred_rows[i].realm != NULL, "%s: has_realm", cred_rows[i].why);
        cr_expect_eq(c.token68, cred_rows[i].token68, "%s: token68", cred_rows[i].why);
    }
}

/* a hand-built message: only the headers array matters to sip_find_bearer() */
static void msg_with(struct sip_msg *m, struct sip_header *h, size_t n)
{
    memset(m, 0, sizeof(*m));
    m->headers = h;
    m->headers_cap = n;
    m->header_count = n;
}

#define HDR(id_, v)                                                                                \
    {                                                                                              \
        (id_), SLICE_NULL, SLICE_LIT(v)                                                            \
    }

Test(sip_parse, finds_bearer_among_credentials)
{
    struct sip_msg m;
    struct sip_cred c;
    const struct slice realm = SLICE_LIT("ccmsipline");

    struct sip_header h1[] = {
        HDR(SIP_HDR_VIA, "SIP/2.0/TLS h;branch=z9hG4bK1"),
        HDR(SIP_HDR_PROXY_AUTHORIZATION, "Digest username=\"a\", realm=\"ccmsipline\""),
        HDR(SIP_HDR_PROXY_AUTHORIZATION, "Bearer token=\"" JWT "\", realm=\"ccmsipline\""),
    };
    msg_with(&m, h1, 3);
    cr_assert_eq(sip_find_bearer(&m, realm, &c), 0, "Digest skipped, Bearer counts");
    cr_expect_eq(c.header_index, 2);
    EXPECT_SLICE(c.token, JWT, "token");

    struct sip_header h2[] = {
        HDR(SIP_HDR_AUTHORIZATION, "Bearer " JWT),
        HDR(SIP_HDR_PROXY_AUTHORIZATION, "Bearer token=\"" JWT "\""),
        HDR(SIP_HDR_AUTHORIZATION, "Bearer token=\"other\""),
    };
    msg_with(&m, h2, 2);
    cr_assert_eq(sip_find_bearer(&m, realm, &c), 0, "the same token twice is one identity");
    cr_expect_eq(c.header_index, 1, "Proxy-Authorization is looked at first");
    msg_with(&m, h2, 3);
    cr_expect_eq(sip_find_bearer(&m, realm, &c), -SIP_CRED_CONFLICT,
                 "two different Bearer tokens: which one a registrar reads is unknown");

    struct sip_header h3[] = {
        HDR(SIP_HDR_PROXY_AUTHORIZATION, "Bearer token=\"x\", realm=\"elsewhere\""),
        HDR(SIP_HDR_AUTHORIZATION, "Bearer " JWT),
    };
    msg_with(&m, h3, 2);
    cr_assert_eq(sip_find_bearer(&m, realm, &c), 0, "falls back to a realm-less Bearer");
    cr_expect_eq(c.header_index, 1);

    msg_with(&m, h3, 1);
    cr_expect_eq(sip_find_bearer(&m, realm, &c), -SIP_CRED_REALM_MISMATCH);

    msg_with(&m, h1, 2);
    cr_expect_eq(sip_find_bearer(&m, realm, &c), -SIP_CRED_NOT_BEARER);

    struct sip_header h4[] = {
        HDR(SIP_HDR_PROXY_AUTHORIZATION, "Bearer"),
        HDR(SIP_HDR_AUTHORIZATION, "Digest x=1"),
    };
    msg_with(&m, h4, 2);
    cr_expect_eq(sip_find_bearer(&m, realm, &c), -SIP_PE_BAD_CRED, "malformed beats not-bearer");

    msg_with(&m, h1, 1);
    cr_expect_eq(sip_find_bearer(&m, realm, &c), -SIP_CRED_NONE);
}

Test(sip_parse, names_every_error)
{
    for (int e = 0; e < SIP_PE_COUNT; e++) {
        cr_expect_neq(strlen(sip_perr_name(e)), 0);
        cr_expect_str_eq(sip_perr_reason(-e), sip_perr_reason(e));
    }
    cr_expect_str_eq(sip_perr_name(-SIP_CRED_NOT_BEARER), "cred_not_bearer");
    cr_expect_str_eq(sip_perr_reason(SIP_PE_COUNT), "Unknown");
}

Test(sip_parse, rejects_via_maddr_without_value)
{
    struct sip_via v;

    cr_expect_eq(sip_parse_via(at_guard("SIP/2.0/TLS h;maddr"), &v), -SIP_PE_BAD_PARAM);
    cr_expect_eq(sip_parse_via(at_guard("SIP/2.0/TLS h;maddr=\"\""), &v), -SIP_PE_BAD_PARAM);
}

Test(sip_parse, judges_every_byte_of_a_long_quoted_value)
{
    char in[64];
    struct sip_param_iter it;
    struct sip_param p;
    static const struct {
        char c;
        int ret;
    } subs[] = {{'\x01', -SIP_PE_BAD_QUOTE},
                {'\r', -SIP_PE_BAD_QUOTE},
                {'\x7f', -SIP_PE_BAD_QUOTE},
                {'\t', 1},
                {'\xc3', 1},
                {'"', -SIP_PE_BAD_PARAM}};

    /* a 40-byte value: the vector path covers whole 16-byte blocks, the scalar path the rest */
    for (size_t k = 0; k < sizeof(subs) / sizeof(subs[0]); k++) {
        for (size_t pos = 0; pos < 40; pos++) {
            snprintf(in, sizeof(in), ";a=\"%s\"", "0123456789abcdefghijklmnopqrstuvwxyzABCD");
            in[4 + pos] = subs[k].c;
            sip_params_begin(&it, at_guard(in), SIP_PARAM_HEADER);
            int r = sip_params_next(&it, &p);
            cr_expect_eq(r, subs[k].ret, "byte 0x%02x at %zu: %d", (unsigned char)subs[k].c, pos,
                         r);
            if (r == 1)
                cr_expect_eq(p.value.len, 40);
        }
    }
    snprintf(in, sizeof(in), ";a=\"0123456789abcdefghij\\\"k\"");
    sip_params_begin(&it, at_guard(in), SIP_PARAM_HEADER);
    cr_expect_eq(sip_params_next(&it, &p), 1, "escaped quote after the first block");
    EXPECT_SLICE(p.value, "0123456789abcdefghij\\\"k", "escaped quote kept");
}
