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
void DeletePoll(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }
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
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    Napi::Error::New(env, "Listener: bad fd").ThrowAsJavaScriptException();
    return;
  }
  poll_ = new uv_poll_t;
  int rc = uv_poll_init(LoopOf(env), poll_, fd);
  if (rc < 0) {
    delete poll_;
    poll_ = nullptr;
    Napi::Error::New(env, std::string("Listener: cannot poll fd: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
    return;
  }
  poll_->data = this;
  fd_ = fd;
  on_connection_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_ = std::make_unique<Napi::AsyncContext>(env, "HullListener");
  if (napi_add_env_cleanup_hook(env, OnCleanup, this) == napi_ok) cleanup_hook_ = true;
  Ref();
  uv_poll_start(poll_, UV_READABLE, OnPoll);
}

Listener::~Listener() {
  if (cleanup_hook_) napi_remove_env_cleanup_hook(Env(), OnCleanup, this);
  cleanup_hook_ = false;
  if (poll_) uv_close(reinterpret_cast<uv_handle_t*>(poll_), DeletePoll);
  poll_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void Listener::OnCleanup(void* arg) {
  Listener* self = static_cast<Listener*>(arg);
  self->cleanup_hook_ = false;
  if (self->poll_) uv_close(reinterpret_cast<uv_handle_t*>(self->poll_), DeletePoll);
  self->poll_ = nullptr;
  if (self->fd_ >= 0) close(self->fd_);
  self->fd_ = -1;
}

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
  for (int i = 0; i < kAcceptsPerEvent && fd_ >= 0; i++) {
    struct sockaddr_storage ss = {};
    socklen_t len = sizeof(ss);
    int cfd = accept4(fd_, reinterpret_cast<struct sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // EMFILE and friends: pause instead of spinning on a listener that stays readable; JS resumes later.
      int err = -errno;
      uv_poll_stop(poll_);
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
  if (poll_ && fd_ >= 0) uv_poll_start(poll_, UV_READABLE, OnPoll);
  return info.Env().Undefined();
}

void Listener::DoClose() {
  if (fd_ < 0) return;
  if (poll_) uv_close(reinterpret_cast<uv_handle_t*>(poll_), DeletePoll);
  poll_ = nullptr;
  close(fd_);
  fd_ = -1;
  on_connection_.Reset();
  if (cleanup_hook_) {
    napi_remove_env_cleanup_hook(Env(), OnCleanup, this);
    cleanup_hook_ = false;
  }
  Unref();
}

Napi::Value Listener::Close(const Napi::CallbackInfo& info) {
  DoClose();
  return info.Env().Undefined();
}

Napi::Value Listener::SetRef(const Napi::CallbackInfo& info) {
  if (poll_) {
    if (info.Length() > 0 && info[0].ToBoolean().Value())
      uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    else
      uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }
  return info.Env().Undefined();
}

}  // namespace hull
