// SO_PEERCRED for Node: libuv exposes a unix socket's fd but not its peer's credentials.
#include "peercred.h"

#include <errno.h>
#include <sys/socket.h>

namespace hull {

Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return Napi::Number::New(env, -EBADF);
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return Napi::Number::New(env, -errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

}  // namespace hull
