#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Generates the SIP header-name tables: the enum sip_hdr block in core/sip.h and the inline
# lookup block in core/sip_priv.h (between "BEGIN/END generated" markers), and
# core/sip_hdr_table.c (names, compact forms and a perfect hash over a few name bytes,
# case-insensitive). Edit the HEADERS list here, then run
#   python3 scripts/gen-sip-headers.py          (rewrite both files)
#   python3 scripts/gen-sip-headers.py --check  (exit 1 if a file is out of date; ctest runs this)
import os
import random
import subprocess
import sys

# (enum suffix, canonical name, compact form or None). The first 17 are the contract order the
# edge's code was written against; the rest are the IANA "Header Fields" registry entries with a
# compact form (RFC 3261 §7.3.3 and later RFCs) and the common ones a proxy meets.
HEADERS = [
    ("VIA", "Via", "v"),
    ("FROM", "From", "f"),
    ("TO", "To", "t"),
    ("CALL_ID", "Call-ID", "i"),
    ("CSEQ", "CSeq", None),
    ("CONTACT", "Contact", "m"),
    ("MAX_FORWARDS", "Max-Forwards", None),
    ("CONTENT_LENGTH", "Content-Length", "l"),
    ("EXPIRES", "Expires", None),
    ("PROXY_AUTHORIZATION", "Proxy-Authorization", None),
    ("AUTHORIZATION", "Authorization", None),
    ("ROUTE", "Route", None),
    ("RECORD_ROUTE", "Record-Route", None),
    ("PATH", "Path", None),
    ("SUPPORTED", "Supported", "k"),
    ("REQUIRE", "Require", None),
    ("CONTENT_TYPE", "Content-Type", "c"),
    # compact forms of the registry
    ("ACCEPT_CONTACT", "Accept-Contact", "a"),
    ("REFERRED_BY", "Referred-By", "b"),
    ("REQUEST_DISPOSITION", "Request-Disposition", "d"),
    ("CONTENT_ENCODING", "Content-Encoding", "e"),
    ("REJECT_CONTACT", "Reject-Contact", "j"),
    ("IDENTITY_INFO", "Identity-Info", "n"),
    ("EVENT", "Event", "o"),
    ("REFER_TO", "Refer-To", "r"),
    ("SUBJECT", "Subject", "s"),
    ("ALLOW_EVENTS", "Allow-Events", "u"),
    ("SESSION_EXPIRES", "Session-Expires", "x"),
    ("IDENTITY", "Identity", "y"),
    # the rest of RFC 3261 and common extensions
    ("ACCEPT", "Accept", None),
    ("ACCEPT_ENCODING", "Accept-Encoding", None),
    ("ACCEPT_LANGUAGE", "Accept-Language", None),
    ("ALERT_INFO", "Alert-Info", None),
    ("ALLOW", "Allow", None),
    ("AUTHENTICATION_INFO", "Authentication-Info", None),
    ("CALL_INFO", "Call-Info", None),
    ("CONTENT_DISPOSITION", "Content-Disposition", None),
    ("CONTENT_LANGUAGE", "Content-Language", None),
    ("DATE", "Date", None),
    ("ERROR_INFO", "Error-Info", None),
    ("IN_REPLY_TO", "In-Reply-To", None),
    ("MIME_VERSION", "MIME-Version", None),
    ("MIN_EXPIRES", "Min-Expires", None),
    ("ORGANIZATION", "Organization", None),
    ("PRIORITY", "Priority", None),
    ("PROXY_AUTHENTICATE", "Proxy-Authenticate", None),
    ("PROXY_REQUIRE", "Proxy-Require", None),
    ("REPLY_TO", "Reply-To", None),
    ("RETRY_AFTER", "Retry-After", None),
    ("SERVER", "Server", None),
    ("TIMESTAMP", "Timestamp", None),
    ("UNSUPPORTED", "Unsupported", None),
    ("USER_AGENT", "User-Agent", None),
    ("WARNING", "Warning", None),
    ("WWW_AUTHENTICATE", "WWW-Authenticate", None),
    ("REASON", "Reason", None),
    ("SERVICE_ROUTE", "Service-Route", None),
    ("FLOW_TIMER", "Flow-Timer", None),
    ("MIN_SE", "Min-SE", None),
    ("RACK", "RAck", None),
    ("RSEQ", "RSeq", None),
    ("SIP_ETAG", "SIP-ETag", None),
    ("SIP_IF_MATCH", "SIP-If-Match", None),
    ("SUBSCRIPTION_STATE", "Subscription-State", None),
    ("REPLACES", "Replaces", None),
    ("JOIN", "Join", None),
    ("TARGET_DIALOG", "Target-Dialog", None),
    ("HISTORY_INFO", "History-Info", None),
    ("REFER_SUB", "Refer-Sub", None),
    ("MAX_BREADTH", "Max-Breadth", None),
    ("SESSION_ID", "Session-ID", None),
    ("INFO_PACKAGE", "Info-Package", None),
    ("RECV_INFO", "Recv-Info", None),
    ("FEATURE_CAPS", "Feature-Caps", None),
    ("GEOLOCATION", "Geolocation", None),
    ("PRIVACY", "Privacy", None),
    ("SECURITY_CLIENT", "Security-Client", None),
    ("SECURITY_SERVER", "Security-Server", None),
    ("SECURITY_VERIFY", "Security-Verify", None),
    ("P_ASSERTED_IDENTITY", "P-Asserted-Identity", None),
    ("P_PREFERRED_IDENTITY", "P-Preferred-Identity", None),
    ("P_ACCESS_NETWORK_INFO", "P-Access-Network-Info", None),
    ("P_CHARGING_VECTOR", "P-Charging-Vector", None),
    ("P_VISITED_NETWORK_ID", "P-Visited-Network-ID", None),
    ("P_ASSOCIATED_URI", "P-Associated-URI", None),
]

# How many instances of a header a request may carry: the one table the edge checks (core/sip_check.c)
# and sipedge-scan reports. Absent from this table: a list header (RFC 3261 §7.3.1: "#" rules such
# as Via, Contact, Route, Record-Route, Path, Supported, Require) or one §7.3.1 lets repeat anyway
# (WWW-Authenticate, Authorization, Proxy-Authenticate, Proxy-Authorization); those may repeat.
#   "one":  at most one line holding one value: a second line, or a comma outside "..." and <...>
#           (which the grammar never allows at the top level of these values), is a duplicate.
#   "once": at most one line; its value may hold commas of its own (Date, TEXT-UTF8, comments).
# Sources: RFC 3261 §20 and §25 (the header is not a "#"-list), and the RFC of each extension.
SINGLE = {
    # RFC 3261: identity and framing first (issue 10: a second To must never reach UCM)
    "TO": "one", "FROM": "one", "CALL_ID": "one", "CSEQ": "one", "MAX_FORWARDS": "one",
    "CONTENT_LENGTH": "one", "EXPIRES": "one", "CONTENT_TYPE": "one",
    "CONTENT_DISPOSITION": "one", "MIME_VERSION": "one", "MIN_EXPIRES": "one", "PRIORITY": "one",
    "REPLY_TO": "one", "TIMESTAMP": "one",
    "DATE": "once", "ORGANIZATION": "once", "RETRY_AFTER": "once", "SERVER": "once",
    "SUBJECT": "once", "USER_AGENT": "once",
    # extensions
    "RACK": "one", "RSEQ": "one",                              # RFC 3262
    "REFER_TO": "one",                                         # RFC 3515
    "REFERRED_BY": "one",                                      # RFC 3892
    "REPLACES": "one",                                         # RFC 3891
    "JOIN": "one",                                             # RFC 3911
    "SESSION_EXPIRES": "one", "MIN_SE": "one",                 # RFC 4028
    "EVENT": "one", "SUBSCRIPTION_STATE": "one",               # RFC 6665
    "SIP_ETAG": "one", "SIP_IF_MATCH": "one",                  # RFC 3903
    "TARGET_DIALOG": "one",                                    # RFC 4538
    "REFER_SUB": "one",                                        # RFC 4488
    "IDENTITY_INFO": "one",                                    # RFC 4474
    "FLOW_TIMER": "one",                                       # RFC 5626
    "MAX_BREADTH": "one",                                      # RFC 5393
    "SESSION_ID": "one",                                       # RFC 7989
    "INFO_PACKAGE": "one",                                     # RFC 6086
    "PRIVACY": "one",                                          # RFC 3323
    "P_CHARGING_VECTOR": "one",                                # RFC 7315
}

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
HDR_H = os.path.join(ROOT, "core", "sip.h")
TABLE_C = os.path.join(ROOT, "core", "sip_hdr_table.c")
PRIV_H = os.path.join(ROOT, "core", "sip_priv.h")
BEGIN = "    /* BEGIN generated by scripts/gen-sip-headers.py: do not edit */\n"
END = "    /* END generated */\n"
BEGIN_PRIV = "/* BEGIN generated by scripts/gen-sip-headers.py: do not edit */\n"
END_PRIV = "/* END generated */\n"
MASK64 = (1 << 64) - 1


def key(name):
    """The 64-bit key the C side computes: the length, the first two and last two bytes (two
    16-bit little-endian loads) and the middle byte, lowercased with `| 0x20`, which is exact for
    token characters, all a header name may hold."""
    b = name.encode()
    n = len(b)
    first = (b[0] | b[1] << 8) | 0x2020
    last = (b[n - 2] | b[n - 1] << 8) | 0x2020
    return n ^ first << 8 ^ last << 24 ^ (b[n // 2] | 0x20) << 40


def check_single():
    known = {h[0] for h in HEADERS}
    for k, v in SINGLE.items():
        if k not in known or v not in ("one", "once"):
            sys.exit(f"gen-sip-headers: SINGLE entry {k}={v} is not a header of HEADERS")


def find_hash(names):
    keys = [key(n) for n in names]
    if len(set(keys)) != len(keys):
        sys.exit("gen-sip-headers: two names share a key; extend key()")
    rng = random.Random(3261)
    for bits in range(8, 13):
        for _ in range(200000 if bits >= 10 else 20000):
            mult = rng.getrandbits(64) | 1
            slots = {((k * mult) & MASK64) >> (64 - bits) for k in keys}
            if len(slots) == len(keys):
                return bits, mult
    sys.exit("gen-sip-headers: no perfect hash found")


def gen_enum():
    out = [BEGIN]
    for suffix, name, compact in HEADERS:
        c = f" /* {compact} */" if compact else ""
        out.append(f"    SIP_HDR_{suffix},{c}\n")
    out.append(END)
    return "".join(out)


def gen_table():
    long_names = [n for _, n, _ in HEADERS]
    bits, mult = find_hash(long_names)
    size = 1 << bits
    slots = [0] * size
    for i, n in enumerate(long_names):
        slots[((key(n) * mult) & MASK64) >> (64 - bits)] = i + 1
    compact = [0] * 26
    for i, (_, _, c) in enumerate(HEADERS):
        if c:
            compact[ord(c) - ord("a")] = i + 1
    o = []
    o.append("// SPDX-License-Identifier: MIT\n")
    o.append("// SIP header-name tables: generated by scripts/gen-sip-headers.py, do not edit.\n")
    o.append("// Perfect hash over (length, c0, c1, c[n/2], c[-2], c[-1]) lowercased, then an exact compare.\n")
    o.append('#include "core/sip.h"\n#include "core/sip_priv.h"\n\n')
    o.append(f"_Static_assert(SIP__HDR_HASH_BITS == {bits}, \"core/sip_priv.h is out of date\");\n\n")
    o.append("/* canonical names, indexed by enum sip_hdr */\n")
    o.append("const char *const sip__hdr_names[SIP_HDR_COUNT] = {\n    [SIP_HDR_OTHER] = \"\",\n")
    for suffix, name, _ in HEADERS:
        o.append(f'    [SIP_HDR_{suffix}] = "{name}",\n')
    o.append("};\n\n/* name lengths, indexed by enum sip_hdr */\n")
    o.append("const uint8_t sip__hdr_lens[SIP_HDR_COUNT] = {\n")
    for suffix, name, _ in HEADERS:
        o.append(f"    [SIP_HDR_{suffix}] = {len(name)},\n")
    o.append("};\n\n/* how many a request may carry (SINGLE in the script), by enum sip_hdr */\n")
    o.append("const uint8_t sip__hdr_card[SIP_HDR_COUNT] = {\n")
    card = {"one": "SIP_HDR_CARD_ONE", "once": "SIP_HDR_CARD_ONCE"}
    for suffix, _, _ in HEADERS:
        if suffix in SINGLE:
            o.append(f"    [SIP_HDR_{suffix}] = {card[SINGLE[suffix]]},\n")
    o.append("};\n\n/* lowercased names for the exact compare */\n")
    o.append("const char *const sip__hdr_lower[SIP_HDR_COUNT] = {\n    [SIP_HDR_OTHER] = \"\",\n")
    for suffix, name, _ in HEADERS:
        o.append(f'    [SIP_HDR_{suffix}] = "{name.lower()}",\n')
    o.append("};\n\n/* ASCII lowercase of every byte */\nconst uint8_t sip__lower[256] = {\n")
    low = [c + 32 if 65 <= c <= 90 else c for c in range(256)]
    for i in range(0, 256, 16):
        o.append("    " + ", ".join(str(x) for x in low[i:i + 16]) + ",\n")
    o.append("};\n\n/* compact forms: 'a'..'z' -> id */\n")
    o.append("const uint8_t sip__hdr_compact[26] = {")
    o.append(", ".join(str(x) for x in compact))
    o.append("};\n\n/* hash slot -> id (0: no header) */\n")
    o.append(f"const uint8_t sip__hdr_slots[1 << SIP__HDR_HASH_BITS] = {{\n")
    for i in range(0, size, 16):
        o.append("    " + ", ".join(str(x) for x in slots[i:i + 16]) + ",\n")
    o.append("};\n")
    return "".join(o), bits, mult


def gen_lookup(bits, mult):
    """The inline lookup for core/sip_priv.h (between its generated markers)."""
    return (BEGIN_PRIV + f"#define SIP__HDR_HASH_BITS {bits}\n"
            f"#define SIP__HDR_HASH_MULT UINT64_C(0x{mult:016x})\n\n" + LOOKUP + END_PRIV)


LOOKUP = """static inline uint64_t sip__ld64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint32_t sip__ld32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline uint16_t sip__ld16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* `| 0x20` lowercases a token character exactly: no other token byte maps onto a letter, a
 * digit or '-' (the bytes of the canonical names). Compared in overlapping words. */
static inline __attribute__((always_inline)) enum sip_hdr sip__hdr_lookup(const char *name,
                                                                        size_t len)
{
    if (len == 1) {
        unsigned c = (unsigned char)name[0] | 0x20;
        return c >= 'a' && c <= 'z' ? (enum sip_hdr)sip__hdr_compact[c - 'a'] : SIP_HDR_OTHER;
    }
    if (len > 255)
        return SIP_HDR_OTHER;
    uint64_t k = (uint64_t)len ^ (uint64_t)(sip__ld16(name) | 0x2020u) << 8 ^
                 (uint64_t)(sip__ld16(name + len - 2) | 0x2020u) << 24 ^
                 (uint64_t)((unsigned char)name[len / 2] | 0x20) << 40;
    unsigned id = sip__hdr_slots[(k * SIP__HDR_HASH_MULT) >> (64 - SIP__HDR_HASH_BITS)];
    if (id == 0 || sip__hdr_lens[id] != len)
        return SIP_HDR_OTHER;
    const char *l = sip__hdr_lower[id];
    if (len >= 8) {
        const uint64_t lc = UINT64_C(0x2020202020202020);
        for (size_t i = 0; i + 8 < len; i += 8)
            if ((sip__ld64(name + i) | lc) != sip__ld64(l + i))
                return SIP_HDR_OTHER;
        return (sip__ld64(name + len - 8) | lc) == sip__ld64(l + len - 8) ? (enum sip_hdr)id : SIP_HDR_OTHER;
    }
    if (len >= 4)
        return ((sip__ld32(name) | 0x20202020u) == sip__ld32(l) &&
                (sip__ld32(name + len - 4) | 0x20202020u) == sip__ld32(l + len - 4))
                   ? (enum sip_hdr)id
                   : SIP_HDR_OTHER;
    return ((sip__ld16(name) | 0x2020u) == sip__ld16(l) && (sip__ld16(name + len - 2) | 0x2020u) == sip__ld16(l + len - 2))
               ? (enum sip_hdr)id
               : SIP_HDR_OTHER;
}
"""


def fmt(text, path):
    """clang-format the text as the repo's .clang-format says (CI checks formatting)."""
    r = subprocess.run(["clang-format", f"--assume-filename={path}"], input=text, text=True,
                       capture_output=True, check=True, cwd=ROOT)
    return r.stdout


def splice(text, begin, end, block, path):
    b, e = text.find(begin), text.find(end)
    if b < 0 or e < 0:
        sys.exit(f"gen-sip-headers: markers not found in {os.path.relpath(path, ROOT)}")
    return text[:b] + block + text[e + len(end):]


def main():
    check = "--check" in sys.argv[1:]
    check_single()
    table, bits, mult = gen_table()
    out = {}
    with open(HDR_H) as f:
        out[HDR_H] = (f.read(), None)
    out[HDR_H] = (out[HDR_H][0], fmt(splice(out[HDR_H][0], BEGIN, END, gen_enum(), HDR_H), HDR_H))
    with open(PRIV_H) as f:
        old = f.read()
    out[PRIV_H] = (old, fmt(splice(old, BEGIN_PRIV, END_PRIV, gen_lookup(bits, mult), PRIV_H),
                            PRIV_H))
    old = open(TABLE_C).read() if os.path.exists(TABLE_C) else ""
    out[TABLE_C] = (old, fmt(table, TABLE_C))
    stale = [p for p, (a, z) in out.items() if a != z]
    if check:
        for p in stale:
            print(f"gen-sip-headers: {os.path.relpath(p, ROOT)} is out of date", file=sys.stderr)
        sys.exit(1 if stale else 0)
    for p in stale:
        with open(p, "w") as f:
            f.write(out[p][1])


if __name__ == "__main__":
    main()
