/* ld_tls: gRPC credentials from PEM files, for servers and clients. */
#pragma once

#include <grpc/grpc_security.h>

#include "ld_status.h"

/* Server credentials. client_ca non-NULL: clients must present a certificate
 * signed by it (mutual TLS). */
grpc_server_credentials *ld_tls_server_credentials(const char *cert, const char *key,
                                                   const char *client_ca, ld_status *st);
/* Channel credentials. ca NULL: the system roots; cert/key: client certificate. */
grpc_channel_credentials *ld_tls_channel_credentials(const char *ca, const char *cert,
                                                     const char *key, ld_status *st);
/* Read a whole PEM file (at most 1 MiB); caller frees. */
char *ld_tls_read_pem(const char *path, const char *what, ld_status *st);
