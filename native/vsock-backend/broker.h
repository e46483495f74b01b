/*
 * broker.h — hull-vsock-backend runs as two processes: the sandboxed worker (everything that touches guest
 * memory) and its parent, the broker, which keeps the one thing the worker may not do itself: connect(2) to
 * "<uds-path>_<port>" for a guest-initiated connection. The broker also stops the worker on SIGTERM/SIGINT and
 * removes both sockets once the worker has exited.
 *
 * Channel: a SOCK_SEQPACKET socketpair. Request: the port (uint32_t). Reply: an int32 errno (0 = connected) and,
 * on success, the connected socket as SCM_RIGHTS.
 */
#ifndef HV_BROKER_H
#define HV_BROKER_H

#include <stdint.h>

/* Fork. Returns in the worker with its channel end in *chan; never returns in the broker, which closes its
 * copies of worker_fds and exits with the worker's status once the worker is gone.
 * Returns -1 with errno set if the fork itself fails. SIGTERM, SIGINT and SIGCHLD must already be blocked. */
int broker_fork(const char *socket_path, const char *uds_path, const int *worker_fds, unsigned nfds, int *chan);

/* Worker side: a connected, non-blocking socket to <uds-path>_<port>, or -1 (errno set). */
int broker_connect(int chan, uint32_t port);

/* Connect to <uds-path>_<port> directly (the broker's job; unit tests without a broker use it too). */
int hybrid_connect_path(const char *uds_path, uint32_t port);

#endif
