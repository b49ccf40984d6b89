/* tls's entry in the protocol table: TLS outside, opaque TCP inside (any protocol). */
#ifndef PORTGATE_TLS_PROTO_H
#define PORTGATE_TLS_PROTO_H

#include "forward/proto.h"

extern const struct proto tls_proto;

#endif
