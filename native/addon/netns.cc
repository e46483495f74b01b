// setns/unshare of the network namespace for Node (see netns.h).
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <string>
#include <sys/ioctl.h>
#include <unistd.h>

namespace hull {
namespace {

// Opens path and checks that it is a network namespace; returns the fd or -errno.
int OpenNetns(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) return -EINVAL;
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type != CLONE_NEWNET) {
    // ENOTTY: not an nsfs file at all; another type: a namespace, but not a network one.
    close(fd);
    return -EINVAL;
  }
  return fd;
}

}  // namespace

Napi::Value NetnsCheck(const Napi::CallbackInfo& info) {
  int fd = OpenNetns(info);
  if (fd < 0) return Napi::Number::New(info.Env(), fd);
  close(fd);
  return Napi::Number::New(info.Env(), 0);
}

Napi::Value EnterNetns(const Napi::CallbackInfo& info) {
  int fd = OpenNetns(info);
  if (fd < 0) return Napi::Number::New(info.Env(), fd);
  int rc = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
  close(fd);
  return Napi::Number::New(info.Env(), rc);
}

Napi::Value UnshareNetns(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), unshare(CLONE_NEWNET) < 0 ? -errno : 0);
}

}  // namespace hull
