// Network namespaces for the host side of hull: the process that stands for a container (hull run, the monitor of
// hull create) lives in the container's network namespace, so that engines' hooks that enter /proc/<pid>/ns/net
// (Docker's libnetwork prestart hook) find it, and the processes it spawns (QEMU) start there too.
// setns(2)/unshare(2) act on the calling thread only; hull calls them on Node's main thread, which is the one
// /proc/<pid>/ns/net shows and the one libuv forks children from.
#ifndef HULL_NATIVE_NETNS_H
#define HULL_NATIVE_NETNS_H

#include <napi.h>

namespace hull {

// netnsCheck(path): 0 when path is a network namespace (nsfs, NS_GET_NSTYPE == CLONE_NEWNET), -EINVAL when it is
// another kind of file or namespace, or -errno from open().
Napi::Value NetnsCheck(const Napi::CallbackInfo& info);
// enterNetns(path): 0, or -errno; the calling thread joins the network namespace at path.
Napi::Value EnterNetns(const Napi::CallbackInfo& info);
// unshareNetns(): 0, or -errno; the calling thread gets a new network namespace (loopback only).
Napi::Value UnshareNetns(const Napi::CallbackInfo& info);

}  // namespace hull

#endif
