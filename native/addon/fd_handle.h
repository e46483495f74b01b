// FdHandle: one connected, non-blocking stream socket fd driven by a libuv uv_poll_t.
// The JS side (index.ts) builds a Duplex on it: readStart/readStop follow the Duplex's demand, write() keeps one
// outstanding write until the fd takes it all, shutdown() is _final, close() is _destroy.
#ifndef HULL_NATIVE_FD_HANDLE_H
#define HULL_NATIVE_FD_HANDLE_H

#include <sys/uio.h>

#include <memory>
#include <vector>

#include "common.h"
#include "polled_fd.h"

namespace hull {

class FdHandle : public Napi::ObjectWrap<FdHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit FdHandle(const Napi::CallbackInfo& info);
  ~FdHandle() override;

 private:
  // JS methods.
  Napi::Value ReadStart(const Napi::CallbackInfo& info);
  Napi::Value ReadStop(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value WaitConnected(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value SetRef(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* poll, int status, int events);
  void HandleReadable();
  void HandleWritable();
  void HandleConnected();
  void HandlePollError(int status);
  // Writes as much of the pending iovecs as the fd takes: 0 when all written, 1 when it would block, -errno.
  int FlushWrites();
  void FinishWrite(int result);
  void UpdatePoll();
  void DoClose();

  PolledFd io_;
  bool reading_ = false;
  uint64_t read_starts_ = 0;  // ReadStart calls, to spot one made from inside a read callback
  bool write_pending_ = false;
  bool connect_pending_ = false;
  std::vector<struct iovec> iov_;
  size_t iov_pos_ = 0;
  Napi::Reference<Napi::Array> write_bufs_;  // keeps the Buffers behind iov_ alive
  Napi::FunctionReference on_read_;
  Napi::FunctionReference on_write_;
  Napi::FunctionReference on_connect_;
  std::unique_ptr<Napi::AsyncContext> async_;
};

}  // namespace hull

#endif
