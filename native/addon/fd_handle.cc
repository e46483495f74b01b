// FdHandle: see fd_handle.h.
#include "fd_handle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

namespace hull {

namespace {

constexpr size_t kReadChunk = 64 * 1024;
constexpr int kReadsPerEvent = 32;  // then yield to the loop
constexpr size_t kMaxIov = 1024;    // IOV_MAX on Linux

thread_local char read_scratch[kReadChunk];


}  // namespace

Napi::Function FdHandle::Init(Napi::Env env) {
  return DefineClass(env, "FdHandle",
                     {
                         InstanceMethod<&FdHandle::ReadStart>("readStart"),
                         InstanceMethod<&FdHandle::ReadStop>("readStop"),
                         InstanceMethod<&FdHandle::Write>("write"),
                         InstanceMethod<&FdHandle::WaitConnected>("waitConnected"),
                         InstanceMethod<&FdHandle::Shutdown>("shutdown"),
                         InstanceMethod<&FdHandle::Close>("close"),
                         InstanceMethod<&FdHandle::SetRef>("setRef"),
                     });
}

// new FdHandle(fd, onRead(nread, buffer?) => boolean). Takes ownership of fd.
FdHandle::FdHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdHandle>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "FdHandle(fd, onRead)").ThrowAsJavaScriptException();
    return;
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int rc = io_.Open(env, fd, this);
  if (rc < 0) {
    Napi::Error e = Napi::Error::New(env, std::string("fdStream: cannot watch fd: ") + uv_strerror(rc));
    e.Set("code", Napi::String::New(env, uv_err_name(rc)));
    e.ThrowAsJavaScriptException();
    return;
  }
  on_read_ = Napi::Persistent(info[1].As<Napi::Function>());
  async_ = std::make_unique<Napi::AsyncContext>(env, "HullFdHandle");
  Ref();  // no GC while the fd is open: libuv holds a pointer to us
}

FdHandle::~FdHandle() = default;  // io_ closes the watcher and the fd

void FdHandle::UpdatePoll() {
  if (!io_.poll() || io_.fd() < 0) return;
  int ev = (reading_ ? UV_READABLE : 0) | ((write_pending_ || connect_pending_) ? UV_WRITABLE : 0);
  if (ev)
    uv_poll_start(io_.poll(), ev, OnPoll);
  else
    uv_poll_stop(io_.poll());
}

void FdHandle::OnPoll(uv_poll_t* poll, int status, int events) {
  FdHandle* self = static_cast<FdHandle*>(poll->data);
  Napi::HandleScope scope(self->Env());
  self->Ref();  // JS may drop its last reference inside a callback below
  if (status < 0) {
    self->HandlePollError(status);
  } else {
    if ((events & UV_WRITABLE) && self->io_.fd() >= 0) {
      if (self->connect_pending_)
        self->HandleConnected();
      else if (self->write_pending_)
        self->HandleWritable();
    }
    if ((events & UV_READABLE) && self->io_.fd() >= 0 && self->reading_) self->HandleReadable();
    self->UpdatePoll();
  }
  self->Unref();
}

// libuv stops the watcher and reports EBADF on POLLERR; the real error is the socket's SO_ERROR.
void FdHandle::HandlePollError(int status) {
  int soerr = 0;
  socklen_t len = sizeof(soerr);
  if (getsockopt(io_.fd(), SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = 0;
  int err = soerr ? -soerr : 0;
  if (connect_pending_) {
    connect_pending_ = false;
    if (!err) err = status < 0 ? status : -ECONNREFUSED;
    Napi::FunctionReference cb = std::move(on_connect_);
    UpdatePoll();
    CallFromLoop(Env(), cb, *async_, {Napi::Number::New(Env(), err)});
    return;
  }
  if (io_.fd() >= 0 && write_pending_) {
    int r = err ? err : FlushWrites();
    if (r == 1) r = -EPIPE;
    FinishWrite(r);
  }
  if (io_.fd() >= 0 && reading_) {
    if (err) {
      reading_ = false;
      UpdatePoll();
      CallFromLoop(Env(), on_read_, *async_, {Napi::Number::New(Env(), err)});
      return;
    }
    HandleReadable();
  }
  UpdatePoll();
}

void FdHandle::HandleReadable() {
  Napi::Env env = Env();
  for (int i = 0; i < kReadsPerEvent && reading_ && io_.fd() >= 0; i++) {
    ssize_t n = read(io_.fd(), read_scratch, kReadChunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      int err = -errno;
      reading_ = false;
      UpdatePoll();
      CallFromLoop(env, on_read_, *async_, {Napi::Number::New(env, err)});
      return;
    }
    if (n == 0) {
      reading_ = false;
      UpdatePoll();
      CallFromLoop(env, on_read_, *async_, {Napi::Number::New(env, 0)});
      return;
    }
    Napi::Buffer<char> buf = Napi::Buffer<char>::Copy(env, read_scratch, static_cast<size_t>(n));
    uint64_t starts = read_starts_;
    Napi::Value more = CallFromLoop(env, on_read_, *async_, {Napi::Number::New(env, static_cast<double>(n)), buf});
    if (io_.fd() < 0) return;
    // push() returned false: stop until the Duplex calls _read (readStart) again. MakeCallback runs nextTicks
    // before returning, so a consumer may already have asked for more (readStart) inside it: that wins.
    if (!more.IsEmpty() && more.IsBoolean() && !more.As<Napi::Boolean>().Value() && starts == read_starts_)
      reading_ = false;
    if (static_cast<size_t>(n) < kReadChunk) return;  // drained for now
  }
}

int FdHandle::FlushWrites() {
  while (iov_pos_ < iov_.size() && iov_[iov_pos_].iov_len == 0) iov_pos_++;
  while (iov_pos_ < iov_.size()) {
    size_t cnt = iov_.size() - iov_pos_;
    if (cnt > kMaxIov) cnt = kMaxIov;
    struct msghdr msg = {};
    msg.msg_iov = &iov_[iov_pos_];
    msg.msg_iovlen = cnt;
    ssize_t n = sendmsg(io_.fd(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK) n = writev(io_.fd(), &iov_[iov_pos_], static_cast<int>(cnt));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      return -errno;
    }
    size_t left = static_cast<size_t>(n);
    while (left > 0 && iov_pos_ < iov_.size()) {
      struct iovec& v = iov_[iov_pos_];
      if (left >= v.iov_len) {
        left -= v.iov_len;
        iov_pos_++;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + left;
        v.iov_len -= left;
        left = 0;
      }
    }
    while (iov_pos_ < iov_.size() && iov_[iov_pos_].iov_len == 0) iov_pos_++;
  }
  return 0;
}

void FdHandle::FinishWrite(int result) {
  write_pending_ = false;
  iov_.clear();
  iov_pos_ = 0;
  write_bufs_.Reset();
  Napi::FunctionReference cb = std::move(on_write_);
  UpdatePoll();
  if (!cb.IsEmpty()) CallFromLoop(Env(), cb, *async_, {Napi::Number::New(Env(), result)});
}

void FdHandle::HandleWritable() {
  int r = FlushWrites();
  if (r == 1) return;  // still blocked: keep waiting for POLLOUT
  FinishWrite(r);
}

void FdHandle::HandleConnected() {
  int soerr = 0;
  socklen_t len = sizeof(soerr);
  if (getsockopt(io_.fd(), SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
  connect_pending_ = false;
  Napi::FunctionReference cb = std::move(on_connect_);
  UpdatePoll();
  CallFromLoop(Env(), cb, *async_, {Napi::Number::New(Env(), -soerr)});
}

Napi::Value FdHandle::ReadStart(const Napi::CallbackInfo& info) {
  read_starts_++;
  if (io_.fd() >= 0 && !reading_) {
    reading_ = true;
    UpdatePoll();
  }
  return info.Env().Undefined();
}

Napi::Value FdHandle::ReadStop(const Napi::CallbackInfo& info) {
  if (reading_) {
    reading_ = false;
    UpdatePoll();
  }
  return info.Env().Undefined();
}

// write(buffers: Buffer[], cb(result)) → 0: all written now (cb not called); 1: pending, cb(0 | -errno) later;
// -errno: failed now.
Napi::Value FdHandle::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (io_.fd() < 0) return Napi::Number::New(env, -EBADF);
  if (write_pending_) return Napi::Number::New(env, -EBUSY);
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "write(buffers, cb)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  uint32_t n = arr.Length();
  iov_.clear();
  iov_.reserve(n);
  iov_pos_ = 0;
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsBuffer()) {
      iov_.clear();
      Napi::TypeError::New(env, "write: not a Buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Buffer<char> b = v.As<Napi::Buffer<char>>();
    iov_.push_back({b.Data(), b.Length()});
  }
  int r = FlushWrites();
  if (r != 1) {
    iov_.clear();
    iov_pos_ = 0;
    return Napi::Number::New(env, r);
  }
  write_bufs_ = Napi::Persistent(arr);
  on_write_ = Napi::Persistent(info[1].As<Napi::Function>());
  write_pending_ = true;
  UpdatePoll();
  return Napi::Number::New(env, 1);
}

// waitConnected(cb(0 | -errno)): for a socket whose non-blocking connect() is in progress.
Napi::Value FdHandle::WaitConnected(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(env, "waitConnected(cb)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (io_.fd() < 0) return Napi::Number::New(env, -EBADF);
  on_connect_ = Napi::Persistent(info[0].As<Napi::Function>());
  connect_pending_ = true;
  UpdatePoll();
  return Napi::Number::New(env, 0);
}

Napi::Value FdHandle::Shutdown(const Napi::CallbackInfo& info) {
  if (io_.fd() < 0) return Napi::Number::New(info.Env(), -EBADF);
  int r = shutdown(io_.fd(), SHUT_WR) < 0 ? -errno : 0;
  return Napi::Number::New(info.Env(), r);
}

void FdHandle::DoClose() {
  if (io_.fd() < 0) return;
  io_.Close();
  reading_ = write_pending_ = connect_pending_ = false;
  iov_.clear();
  write_bufs_.Reset();
  on_read_.Reset();
  on_write_.Reset();
  on_connect_.Reset();
  Unref();
}

Napi::Value FdHandle::Close(const Napi::CallbackInfo& info) {
  DoClose();
  return info.Env().Undefined();
}

Napi::Value FdHandle::SetRef(const Napi::CallbackInfo& info) {
  io_.SetRef(info.Length() > 0 && info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

}  // namespace hull
