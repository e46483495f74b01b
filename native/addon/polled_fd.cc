// PolledFd: see polled_fd.h.
#include "polled_fd.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

namespace hull {

namespace {
void DeletePoll(uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); }
}  // namespace

int PolledFd::Open(napi_env env, int fd, void* data) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  poll_ = new uv_poll_t;
  int rc = uv_poll_init(loop, poll_, fd);
  if (rc < 0) {
    delete poll_;
    poll_ = nullptr;
    return rc;
  }
  poll_->data = data;
  fd_ = fd;
  env_ = env;
  if (napi_add_env_cleanup_hook(env, OnEnvCleanup, this) == napi_ok) cleanup_hook_ = true;
  return 0;
}

// Closes the watcher before the fd, so libuv never polls a closed (or reused) descriptor.
void PolledFd::Release() {
  if (poll_) uv_close(reinterpret_cast<uv_handle_t*>(poll_), DeletePoll);
  poll_ = nullptr;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void PolledFd::Close() {
  if (cleanup_hook_) napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
  cleanup_hook_ = false;
  Release();
}

void PolledFd::OnEnvCleanup(void* arg) {
  PolledFd* self = static_cast<PolledFd*>(arg);
  self->cleanup_hook_ = false;  // the env is going away and removes the hook itself
  self->Release();
}

void PolledFd::SetRef(bool ref) {
  if (!poll_) return;
  if (ref)
    uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
}

}  // namespace hull
