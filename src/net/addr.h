/*
 * Socket addresses as text: listen addresses from the configuration, peers for logs.
 */
#ifndef VG_NET_ADDR_H
#define VG_NET_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT" into a sockaddr.  Returns 0 or VG_EINVAL. */
int vg_parse_listen_addr(const char *text, struct sockaddr_storage *out);
/* Formats an address as "1.2.3.4:80" or "[::1]:80". */
void vg_format_addr(const struct sockaddr *sa, char *out, size_t outlen);

#endif
