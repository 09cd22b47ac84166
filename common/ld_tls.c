#include "ld_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1u << 20)

char *ld_tls_read_pem(const char *path, const char *what, ld_status *st)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "cannot open %s '%s': %s", what, path,
                      strerror(errno));
        return NULL;
    }
    char *buf = malloc(PEM_MAX + 1);
    size_t n = buf ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf || err || n == 0 || n > PEM_MAX) {
        free(buf);
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s '%s' is %s", what, path,
                      n > PEM_MAX ? "larger than 1 MiB" : "empty or unreadable");
        return NULL;
    }
    buf[n] = '\0';
    if (!strstr(buf, "-----BEGIN ")) {
        free(buf);
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s '%s' is not a PEM file", what,
                      path);
        return NULL;
    }
    return buf;
}

grpc_server_credentials *ld_tls_server_credentials(const char *cert, const char *key,
                                                   const char *client_ca, ld_status *st)
{
    if (!cert || !key) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "TLS needs both a certificate (--tls-cert) and a key (--tls-key)");
        return NULL;
    }
    char *cert_pem = ld_tls_read_pem(cert, "TLS certificate", st);
    char *key_pem = cert_pem ? ld_tls_read_pem(key, "TLS key", st) : NULL;
    char *ca_pem = NULL;
    if (key_pem && client_ca)
        ca_pem = ld_tls_read_pem(client_ca, "client CA", st);
    grpc_server_credentials *creds = NULL;
    if (cert_pem && key_pem && (!client_ca || ca_pem)) {
        grpc_ssl_pem_key_cert_pair pair = {key_pem, cert_pem};
        creds = grpc_ssl_server_credentials_create_ex(
                ca_pem, &pair, 1,
                ca_pem ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
                NULL);
        if (!creds)
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "could not build TLS credentials from '%s' and '%s'", cert, key);
    }
    free(cert_pem);
    free(key_pem);
    free(ca_pem);
    return creds;
}

grpc_channel_credentials *ld_tls_channel_credentials(const char *ca, const char *cert,
                                                     const char *key, ld_status *st)
{
    char *ca_pem = NULL, *cert_pem = NULL, *key_pem = NULL;
    grpc_channel_credentials *creds = NULL;
    if (ca && !(ca_pem = ld_tls_read_pem(ca, "CA certificate", st)))
        goto out;
    if ((cert != NULL) != (key != NULL)) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "a client certificate needs both cert and key");
        goto out;
    }
    if (cert && !(cert_pem = ld_tls_read_pem(cert, "client certificate", st)))
        goto out;
    if (key && !(key_pem = ld_tls_read_pem(key, "client key", st)))
        goto out;
    grpc_ssl_pem_key_cert_pair pair = {key_pem, cert_pem};
    creds = grpc_ssl_credentials_create(ca_pem, cert_pem ? &pair : NULL, NULL, NULL);
    if (!creds)
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "could not build TLS credentials");
out:
    free(ca_pem);
    free(cert_pem);
    free(key_pem);
    return creds;
}
