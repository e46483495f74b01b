// Listener: a listening, non-blocking socket fd; accepts every pending connection when libuv reports it readable.
#ifndef HULL_NATIVE_LISTENER_H
#define HULL_NATIVE_LISTENER_H

#include <memory>

#include "common.h"
#include "polled_fd.h"

namespace hull {

class Listener : public Napi::ObjectWrap<Listener> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Listener(const Napi::CallbackInfo& info);
  ~Listener() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value SetRef(const Napi::CallbackInfo& info);
  static void OnPoll(uv_poll_t* poll, int status, int events);
  void AcceptAll();
  void DoClose();

  PolledFd io_;
  Napi::FunctionReference on_connection_;
  std::unique_ptr<Napi::AsyncContext> async_;
};

}  // namespace hull

#endif
