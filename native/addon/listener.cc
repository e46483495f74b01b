// Listener: see listener.h.
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

namespace hull {

namespace {
constexpr int kAcceptsPerEvent = 64;
}  // namespace

Napi::Function Listener::Init(Napi::Env env) {
  return DefineClass(env, "Listener",
                     {
                         InstanceMethod<&Listener::Start>("start"),
                         InstanceMethod<&Listener::Close>("close"),
                         InstanceMethod<&Listener::SetRef>("setRef"),
                     });
}

// new Listener(fd, onConnection(fdOrNegErrno, cid, port)). Takes ownership of the listening fd.
// After an accept error the listener pauses; start() resumes it.
Listener::Listener(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Listener>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "Listener(fd, onConnection)").ThrowAsJavaScriptException();
    return;
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int rc = io_.Open(env, fd, this);
  if (rc < 0) {
    Napi::Error::New(env, std::string("Listener: cannot watch fd: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
    return;
  }
  on_connection_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_ = std::make_unique<Napi::AsyncContext>(env, "HullListener");
  Ref();
  uv_poll_start(io_.poll(), UV_READABLE, OnPoll);
}

Listener::~Listener() = default;  // io_ closes the watcher and the fd

void Listener::OnPoll(uv_poll_t* poll, int status, int /*events*/) {
  Listener* self = static_cast<Listener*>(poll->data);
  Napi::HandleScope scope(self->Env());
  self->Ref();
  if (status < 0) {
    uv_poll_stop(poll);
    CallFromLoop(self->Env(), self->on_connection_, *self->async_,
                 {Napi::Number::New(self->Env(), status), Napi::Number::New(self->Env(), 0),
                  Napi::Number::New(self->Env(), 0)});
  } else {
    self->AcceptAll();
  }
  self->Unref();
}

void Listener::AcceptAll() {
  Napi::Env env = Env();
  for (int i = 0; i < kAcceptsPerEvent && io_.fd() >= 0; i++) {
    struct sockaddr_storage ss = {};
    socklen_t len = sizeof(ss);
    int cfd = accept4(io_.fd(), reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // EMFILE and friends: pause instead of spinning on a listener that stays readable; JS resumes later.
      int err = -errno;
      uv_poll_stop(io_.poll());
      CallFromLoop(env, on_connection_, *async_,
                   {Napi::Number::New(env, err), Napi::Number::New(env, 0), Napi::Number::New(env, 0)});
      return;
    }
    double cid = -1, port = -1;
    if (ss.ss_family == AF_VSOCK) {
      const struct sockaddr_vm* vm = reinterpret_cast<const struct sockaddr_vm*>(&ss);
      cid = vm->svm_cid;
      port = vm->svm_port;
    }
    CallFromLoop(env, on_connection_, *async_,
                 {Napi::Number::New(env, cfd), Napi::Number::New(env, cid), Napi::Number::New(env, port)});
  }
}

Napi::Value Listener::Start(const Napi::CallbackInfo& info) {
  if (io_.poll() && io_.fd() >= 0) uv_poll_start(io_.poll(), UV_READABLE, OnPoll);
  return info.Env().Undefined();
}

void Listener::DoClose() {
  if (io_.fd() < 0) return;
  io_.Close();
  on_connection_.Reset();
  Unref();
}

Napi::Value Listener::Close(const Napi::CallbackInfo& info) {
  DoClose();
  return info.Env().Undefined();
}

Napi::Value Listener::SetRef(const Napi::CallbackInfo& info) {
  io_.SetRef(info.Length() > 0 && info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

}  // namespace hull
