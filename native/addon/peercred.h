// peerCredentials(fd): the credentials of the peer of a connected AF_UNIX socket (SO_PEERCRED), for servers that
// accept only their own user (the containerd shim, like containerd's UnixSocketRequireSameUser).
#ifndef HULL_NATIVE_PEERCRED_H
#define HULL_NATIVE_PEERCRED_H

#include <napi.h>

namespace hull {

// Returns {pid, uid, gid}, or -errno.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info);

}  // namespace hull

#endif
