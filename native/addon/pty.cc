// openpty/setWindowSize: see pty.h. The master is opened from a ptmx path so the agent can allocate the pty in a
// container's own devpts instance (/proc/<pid>/root/dev/pts/ptmx); the slave path is then valid inside it.
#include "pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <string>

namespace hull {

Napi::Value OpenPty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string ptmx = "/dev/ptmx";
  if (info.Length() > 0 && info[0].IsString()) ptmx = info[0].As<Napi::String>().Utf8Value();
  int fd = open(ptmx.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Napi::Number::New(env, -errno);
  int unlock = 0;
  unsigned int n = 0;
  if (ioctl(fd, TIOCSPTLCK, &unlock) < 0 || ioctl(fd, TIOCGPTN, &n) < 0) {
    int err = -errno;
    close(fd);
    return Napi::Number::New(env, err);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("master", Napi::Number::New(env, fd));
  o.Set("slavePath", Napi::String::New(env, "/dev/pts/" + std::to_string(n)));
  return o;
}

static int IntArg(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : -1;
}

Napi::Value SetWindowSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = IntArg(info, 0), rows = IntArg(info, 1), cols = IntArg(info, 2);
  if (fd < 0 || rows < 0 || cols < 0 || rows > 0xffff || cols > 0xffff) return Napi::Number::New(env, -EINVAL);
  struct winsize ws = {};
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  return Napi::Number::New(env, ioctl(fd, TIOCSWINSZ, &ws) < 0 ? -errno : 0);
}

Napi::Value GetWindowSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = IntArg(info, 0);
  struct winsize ws = {};
  if (fd < 0) return Napi::Number::New(env, -EBADF);
  if (ioctl(fd, TIOCGWINSZ, &ws) < 0) return Napi::Number::New(env, -errno);
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, ws.ws_row));
  a.Set(1u, Napi::Number::New(env, ws.ws_col));
  return a;
}

}  // namespace hull
