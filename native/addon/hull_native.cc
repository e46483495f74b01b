// hull_native: what Node cannot do by itself in hull — AF_VSOCK sockets, streams over raw socket fds, ptys,
// network namespaces, and the KVM ioctls of the accelerator probe.
// Only N-API (node-addon-api) plus libuv's uv_poll_t through napi_get_uv_event_loop. Functions that make fds
// return the fd, or -errno on failure (the TS wrapper in index.ts turns that into an Error with .code).
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fd_handle.h"
#include "kvm_probe.h"
#include "guest-time.h"
#include "listener.h"
#include "netns.h"
#include "peercred.h"
#include "pty.h"

namespace hull {
namespace {

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && info[i].IsNumber() ? info[i].As<Napi::Number>().Uint32Value() : 0;
}

// socketpair(): [fd, fd] (AF_UNIX, SOCK_STREAM, close-on-exec), or -errno.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return Napi::Number::New(env, -errno);
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, sv[0]));
  a.Set(1u, Napi::Number::New(env, sv[1]));
  return a;
}

struct sockaddr_vm VsockAddr(uint32_t cid, uint32_t port) {
  struct sockaddr_vm addr = {};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  return addr;
}

// vsockListen(port, cid, backlog): listening fd, or -errno (EAFNOSUPPORT when the kernel has no vsock).
Napi::Value VsockListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t port = U32Arg(info, 0), cid = U32Arg(info, 1), backlog = U32Arg(info, 2);
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  struct sockaddr_vm addr = VsockAddr(cid, port);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) < 0 ||
      listen(fd, backlog ? static_cast<int>(backlog) : 128) < 0) {
    int err = -errno;
    close(fd);
    return Napi::Number::New(env, err);
  }
  return Napi::Number::New(env, fd);
}

// vsockConnect(cid, port): fd with the connect in progress (wait with FdHandle.waitConnected), or -errno.
Napi::Value VsockConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t cid = U32Arg(info, 0), port = U32Arg(info, 1);
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  struct sockaddr_vm addr = VsockAddr(cid, port);
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EINPROGRESS) {
    int err = -errno;
    close(fd);
    return Napi::Number::New(env, err);
  }
  return Napi::Number::New(env, fd);
}

// vsockLocalAddress(fd): [cid, port] of a bound AF_VSOCK socket, or -errno.
Napi::Value VsockLocalAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_vm addr = {};
  socklen_t len = sizeof(addr);
  if (getsockname(static_cast<int>(U32Arg(info, 0)), reinterpret_cast<struct sockaddr*>(&addr), &len) < 0)
    return Napi::Number::New(env, -errno);
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, addr.svm_cid));
  a.Set(1u, Napi::Number::New(env, addr.svm_port));
  return a;
}

// closeFd(fd): 0 or -errno. For fds that never reached an FdHandle/Listener.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), close(static_cast<int>(U32Arg(info, 0))) < 0 ? -errno : 0);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("FdHandle", FdHandle::Init(env));
  exports.Set("Listener", Listener::Init(env));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("vsockListen", Napi::Function::New(env, VsockListen, "vsockListen"));
  exports.Set("vsockConnect", Napi::Function::New(env, VsockConnect, "vsockConnect"));
  exports.Set("vsockLocalAddress", Napi::Function::New(env, VsockLocalAddress, "vsockLocalAddress"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("openpty", Napi::Function::New(env, OpenPty, "openpty"));
  exports.Set("setWindowSize", Napi::Function::New(env, SetWindowSize, "setWindowSize"));
  exports.Set("getWindowSize", Napi::Function::New(env, GetWindowSize, "getWindowSize"));
  exports.Set("netnsCheck", Napi::Function::New(env, NetnsCheck, "netnsCheck"));
  exports.Set("enterNetns", Napi::Function::New(env, EnterNetns, "enterNetns"));
  exports.Set("unshareNetns", Napi::Function::New(env, UnshareNetns, "unshareNetns"));
  exports.Set("setRealtimeClock", Napi::Function::New(env, SetRealtimeClock, "setRealtimeClock"));
  exports.Set("addEntropy", Napi::Function::New(env, AddEntropy, "addEntropy"));
  exports.Set("kvmProbe", Napi::Function::New(env, KvmProbe, "kvmProbe"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("VMADDR_CID_ANY", Napi::Number::New(env, VMADDR_CID_ANY));
  exports.Set("VMADDR_PORT_ANY", Napi::Number::New(env, VMADDR_PORT_ANY));
  return exports;
}

}  // namespace
}  // namespace hull

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return hull::Init(env, exports); }

NODE_API_MODULE(hull_native, InitModule)
