// PolledFd: a non-blocking fd watched by a libuv uv_poll_t, plus the env cleanup hook that closes both when the Node
// environment goes away first. The lifetime glue that FdHandle and Listener share.
#ifndef HULL_NATIVE_POLLED_FD_H
#define HULL_NATIVE_POLLED_FD_H

#include <node_api.h>
#include <uv.h>

namespace hull {

class PolledFd {
 public:
  PolledFd() = default;
  PolledFd(const PolledFd&) = delete;
  PolledFd& operator=(const PolledFd&) = delete;
  ~PolledFd() { Close(); }

  // Takes ownership of fd: makes it non-blocking and creates its watcher, whose poll->data is `data`.
  // Returns 0, or a negative libuv/errno code (the fd is then not owned).
  int Open(napi_env env, int fd, void* data);
  // Stops watching and closes the fd; a no-op when already closed.
  void Close();
  void SetRef(bool ref);

  int fd() const { return fd_; }
  uv_poll_t* poll() const { return poll_; }

 private:
  static void OnEnvCleanup(void* arg);
  void Release();

  napi_env env_ = nullptr;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;  // owned until its close callback runs
  bool cleanup_hook_ = false;
};

}  // namespace hull

#endif
