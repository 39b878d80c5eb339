// SPDX-License-Identifier: MIT
// tls: handshake-failure causes (names, texts, operator fixes per side), their mapping from TLS
// alerts and X509 verification errors, the key=value log line, and certificate name listing.
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "tls/tls_priv.h"

static const char *const cause_names[TLS_CAUSE_COUNT] = {
#define TLS_CAUSE_NAME_(id, name, text) [TLS_CAUSE_##id] = name,
    TLS_CAUSES(TLS_CAUSE_NAME_)
#undef TLS_CAUSE_NAME_
};

static const char *const cause_texts[TLS_CAUSE_COUNT] = {
#define TLS_CAUSE_TEXT_(id, name, text) [TLS_CAUSE_##id] = text,
    TLS_CAUSES(TLS_CAUSE_TEXT_)
#undef TLS_CAUSE_TEXT_
};

/* What the operator does, [cause][side]: server = we terminate a SIP client, client = we are the
 * mTLS client of UCM. */
static const char *const cause_fixes[TLS_CAUSE_COUNT][TLS_SIDE_COUNT] = {
    [TLS_CAUSE_NONE] = {"nothing to fix", "nothing to fix"},
    [TLS_CAUSE_ALERT_UNKNOWN_CA] =
        {"the client does not trust our server certificate: give clients the CA that issued it "
         "(or use one from a CA they trust) and put the full chain in the server cert_file",
         "UCM does not trust our certificate: upload our CA to UCM's tomcat-trust "
         "(CallManager-trust) and list our certificate's CN/SAN under Device > Expressway-C"},
    [TLS_CAUSE_ALERT_BAD_CERTIFICATE] =
        {"the client rejected our certificate: check the chain in cert_file, its SAN and its "
         "serverAuth key usage",
         "UCM rejected our certificate as bad: check the chain in the upstream cert_file, the "
         "clientAuth extended key usage, and that UCM's tomcat-trust holds our CA"},
    [TLS_CAUSE_ALERT_CERTIFICATE_UNKNOWN] =
        {"the client could not accept our certificate: check that its SAN holds the name clients "
         "connect to and that clients trust its CA",
         "UCM could not accept our certificate: list our certificate's CN/SAN under Device > "
         "Expressway-C, upload our CA to tomcat-trust, check the clientAuth key usage"},
    [TLS_CAUSE_ALERT_CERTIFICATE_EXPIRED] =
        {"renew our server certificate (cert_file), then reload (SIGHUP); check the clocks",
         "renew our client certificate (upstream cert_file), then reload (SIGHUP); check clocks"},
    [TLS_CAUSE_ALERT_CERTIFICATE_REVOKED] =
        {"our server certificate is revoked: issue a new one, install it and reload",
         "our client certificate is revoked: issue a new one, upload it to UCM's trust if needed "
         "and reload"},
    [TLS_CAUSE_ALERT_CERTIFICATE_REQUIRED] =
        {"the peer wants a client certificate from us, which a server never sends: check the "
         "peer is a TLS client",
         "UCM requires a client certificate: configure the upstream cert_file and key_file"},
    [TLS_CAUSE_ALERT_ACCESS_DENIED] =
        {"the client denied access: check its policy and logs",
         "UCM knows our certificate but denies access: list our certificate's CN/SAN under Device "
         "> Expressway-C (the names logged at start-up)"},
    [TLS_CAUSE_ALERT_HANDSHAKE_FAILURE] =
        {"the client aborted: check its TLS versions and ciphers, and its certificate if we "
         "require one",
         "UCM aborted the handshake: check that we send the certificate it expects (upstream "
         "cert_file), that tomcat-trust holds our CA, and that TLS versions and ciphers match"},
    [TLS_CAUSE_ALERT_PROTOCOL_VERSION] =
        {"the client refuses TLS 1.2/1.3: enable TLS 1.2 or 1.3 on the client",
         "UCM refuses TLS 1.2/1.3: enable TLS 1.2 or later on UCM"},
    [TLS_CAUSE_ALERT_INSUFFICIENT_SECURITY] =
        {"align ciphers and key sizes: the client wants stronger ones",
         "align ciphers and key sizes: UCM wants stronger ones than we offer"},
    [TLS_CAUSE_ALERT_DECRYPT_ERROR] =
        {"check that key_file matches cert_file and the client supports our key type",
         "check that the upstream key_file matches its cert_file and UCM supports our key type"},
    [TLS_CAUSE_ALERT_OTHER] = {"see the alert number and the client's logs",
                               "see the alert number and UCM's logs"},
    [TLS_CAUSE_PEER_UNTRUSTED_ISSUER] =
        {"the client certificate's CA is not in client_ca_file: add it there (or the client uses "
         "the wrong certificate)",
         "trust UCM's Tomcat signer: add its CA (the issuer named here) to the upstream ca_file "
         "bundle and reload"},
    [TLS_CAUSE_PEER_SELF_SIGNED] =
        {"the client certificate is self-signed: add it to client_ca_file or issue it from a "
         "trusted CA",
         "UCM presents a self-signed Tomcat certificate: add that certificate to the upstream "
         "ca_file bundle, or have UCM use a CA-signed one"},
    [TLS_CAUSE_PEER_HOSTNAME_MISMATCH] =
        {"the client certificate carries none of the names it must (ucm_listen.node_names for "
         "the UCM listener): add its SAN name there, or reissue it with a listed name",
         "set the node's expected name to one of the certificate's SAN names shown here, or "
         "reissue UCM's Tomcat certificate with the expected name in its SAN"},
    [TLS_CAUSE_PEER_EXPIRED] =
        {"the client certificate (or its CA) has expired: renew it; check the clocks (NTP)",
         "UCM's certificate (or its CA) has expired: renew UCM's Tomcat certificate; check the "
         "clocks (NTP)"},
    [TLS_CAUSE_PEER_NOT_YET_VALID] =
        {"the client certificate is not valid yet: check the clocks (NTP) on both sides",
         "UCM's certificate is not valid yet: check the clocks (NTP) on both sides"},
    [TLS_CAUSE_PEER_NO_CERTIFICATE] =
        {"the client sent no certificate: configure one on the client, or turn "
         "require_client_cert off",
         "UCM sent no certificate: check the port (5091 is mTLS)"},
    [TLS_CAUSE_PEER_VERIFY_OTHER] = {"the client certificate failed verification: see detail",
                                     "UCM's certificate failed "
                                     "verification: see detail; "
                                     "check it against ca_file"},
    [TLS_CAUSE_NO_SHARED_CIPHER] =
        {"the client offers no cipher we accept (TLS 1.2: ECDHE with AES-GCM or CHACHA20; TLS 1.3 "
         "defaults) or none that fits our key type",
         "UCM accepts none of our ciphers (TLS 1.2: ECDHE with AES-GCM or CHACHA20; TLS 1.3 "
         "defaults): align the cipher lists"},
    [TLS_CAUSE_NO_SHARED_PROTOCOL] =
        {"the client offers only TLS versions below 1.2: upgrade or configure the client",
         "UCM offers only TLS versions below 1.2: set UCM's minimum TLS version to 1.2"},
    [TLS_CAUSE_PEER_CLOSED] =
        {"the client gave up during the handshake: check its logs (it may not trust our "
         "certificate)",
         "UCM closed the connection during the handshake: it may reject our certificate without "
         "an alert; check that our CA is in tomcat-trust, our CN/SAN under Device > "
         "Expressway-C, and that the port is the SIP OAuth mTLS port (5091)"},
    [TLS_CAUSE_TIMEOUT] =
        {"the client did not finish the handshake in time (slow link, or not a TLS client)",
         "UCM did not finish the handshake in time: check reachability, firewalls and UCM's "
         "load"},
    [TLS_CAUSE_PROTOCOL_ERROR] =
        {"the client is not speaking TLS on this port (plain SIP to the TLS port?)",
         "the peer is not speaking TLS: check the port (5091 is TLS) and the transport"},
    [TLS_CAUSE_INTERNAL] = {"local TLS error: see detail (memory, configuration)",
                            "local TLS error: see detail (memory, configuration)"},
};

const char *tls_cause_name(enum tls_cause cause)
{
    return (unsigned)cause < TLS_CAUSE_COUNT ? cause_names[cause] : "?";
}

const char *tls_cause_text(enum tls_cause cause)
{
    return (unsigned)cause < TLS_CAUSE_COUNT ? cause_texts[cause] : "unknown cause";
}

const char *tls_cause_fix(enum tls_cause cause, enum tls_side side)
{
    if ((unsigned)cause >= TLS_CAUSE_COUNT || (unsigned)side >= TLS_SIDE_COUNT)
        return "unknown cause";
    return cause_fixes[cause][side];
}

const char *tls_side_name(enum tls_side side)
{
    return side == TLS_SIDE_CLIENT ? "client" : "server";
}

enum tls_cause tls__cause_from_alert(int alert)
{
    switch (alert) {
    case SSL_AD_UNKNOWN_CA:
        return TLS_CAUSE_ALERT_UNKNOWN_CA;
    case SSL_AD_BAD_CERTIFICATE:
        return TLS_CAUSE_ALERT_BAD_CERTIFICATE;
    case SSL_AD_CERTIFICATE_UNKNOWN:
        return TLS_CAUSE_ALERT_CERTIFICATE_UNKNOWN;
    case SSL_AD_CERTIFICATE_EXPIRED:
        return TLS_CAUSE_ALERT_CERTIFICATE_EXPIRED;
    case SSL_AD_CERTIFICATE_REVOKED:
        return TLS_CAUSE_ALERT_CERTIFICATE_REVOKED;
    case SSL_AD_CERTIFICATE_REQUIRED:
        return TLS_CAUSE_ALERT_CERTIFICATE_REQUIRED;
    case SSL_AD_ACCESS_DENIED:
        return TLS_CAUSE_ALERT_ACCESS_DENIED;
    case SSL_AD_HANDSHAKE_FAILURE:
        return TLS_CAUSE_ALERT_HANDSHAKE_FAILURE;
    case SSL_AD_PROTOCOL_VERSION:
        return TLS_CAUSE_ALERT_PROTOCOL_VERSION;
    case SSL_AD_INSUFFICIENT_SECURITY:
        return TLS_CAUSE_ALERT_INSUFFICIENT_SECURITY;
    case SSL_AD_DECRYPT_ERROR:
        return TLS_CAUSE_ALERT_DECRYPT_ERROR;
    default:
        return TLS_CAUSE_ALERT_OTHER;
    }
}

enum tls_cause tls__cause_from_verify(long err)
{
    switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_INVALID_CA:
        return TLS_CAUSE_PEER_UNTRUSTED_ISSUER;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return TLS_CAUSE_PEER_SELF_SIGNED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return TLS_CAUSE_PEER_HOSTNAME_MISMATCH;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return TLS_CAUSE_PEER_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TLS_CAUSE_PEER_NOT_YET_VALID;
    default:
        return TLS_CAUSE_PEER_VERIFY_OTHER;
    }
}

void tls__appendf(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
    if (cap == 0 || *pos >= cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *pos += (size_t)n < cap - *pos ? (size_t)n : cap - *pos - 1;
}

void tls__append_names(char *buf, size_t cap, size_t *pos, const void *x509)
{
    X509 *x = (X509 *)x509;
    char cn[128] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    tls__appendf(buf, cap, pos, "CN=%s SAN=", cn[0] ? cn : "-");
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int n = gens ? sk_GENERAL_NAME_num(gens) : 0, shown = 0;
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            tls__appendf(buf, cap, pos, "%sDNS:%.*s", shown++ ? "," : "", s->length,
                         (const char *)s->data);
        } else if (g->type == GEN_IPADD) {
            char *ip = (char *)g->d.iPAddress->data;
            int len = g->d.iPAddress->length;
            char txt[64] = "?";
            if (len == 4)
                snprintf(txt, sizeof(txt), "%u.%u.%u.%u", (uint8_t)ip[0], (uint8_t)ip[1],
                         (uint8_t)ip[2], (uint8_t)ip[3]);
            else if (len == 16)
                inet_ntop(AF_INET6, ip, txt, sizeof(txt));
            tls__appendf(buf, cap, pos, "%sIP:%s", shown++ ? "," : "", txt);
        }
    }
    if (shown == 0)
        tls__appendf(buf, cap, pos, "-");
    GENERAL_NAMES_free(gens);
}

int tls_diag_format(const struct tls_diag *d, const char *peer, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return -EINVAL;
    size_t pos = 0;
    buf[0] = '\0';
    tls__appendf(buf, cap, &pos, "tls_handshake_failed side=%s peer=%s cause=%s",
                 tls_side_name(d->side), peer && *peer ? peer : "-", tls_cause_name(d->cause));
    if (d->alert >= 0) {
        enum tls_cause ac = tls__cause_from_alert(d->alert);
        if (ac == TLS_CAUSE_ALERT_OTHER)
            tls__appendf(buf, cap, &pos, " alert_%s=%d", d->alert_from_peer ? "recv" : "sent",
                         d->alert);
        else
            tls__appendf(buf, cap, &pos, " alert_%s=%s", d->alert_from_peer ? "recv" : "sent",
                         tls_cause_name(ac));
    }
    if (d->verify_error)
        tls__appendf(buf, cap, &pos, " verify_error=%ld", d->verify_error);
    if (d->expected[0])
        tls__appendf(buf, cap, &pos, " expected=%s", d->expected);
    if (d->detail[0]) {
        /* The detail quotes certificate fields: keep the value one quoted token. */
        char tmp[sizeof(d->detail)];
        size_t i = 0;
        for (; i + 1 < sizeof(tmp) && d->detail[i]; i++)
            tmp[i] = d->detail[i] == '"' ? '\'' : d->detail[i];
        tmp[i] = '\0';
        tls__appendf(buf, cap, &pos, " detail=\"%s\"", tmp);
    }
    tls__appendf(buf, cap, &pos, " text=\"%s\" fix=\"%s\"", tls_cause_text(d->cause),
                 tls_cause_fix(d->cause, d->side));
    return (int)pos;
}
