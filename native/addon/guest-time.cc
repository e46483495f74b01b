// Clock and entropy for a claimed guest (see guest-time.h).
#include "guest-time.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

namespace hull {

namespace {
constexpr size_t kMaxEntropyBytes = 512;
}  // namespace

Napi::Value SetRealtimeClock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return Napi::Number::New(env, -EINVAL);
  double ms = info[0].As<Napi::Number>().DoubleValue();
  if (!isfinite(ms) || ms < 0 || ms > 1e15) return Napi::Number::New(env, -EINVAL);
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(ms / 1000);
  ts.tv_nsec = static_cast<long>((ms - static_cast<double>(ts.tv_sec) * 1000) * 1e6);
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  if (ts.tv_nsec > 999999999) ts.tv_nsec = 999999999;
  if (clock_settime(CLOCK_REALTIME, &ts) != 0) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, 0);
}

Napi::Value AddEntropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) return Napi::Number::New(env, -EINVAL);
  Napi::Buffer<uint8_t> data = info[0].As<Napi::Buffer<uint8_t>>();
  size_t len = data.Length();
  if (len == 0 || len > kMaxEntropyBytes) return Napi::Number::New(env, -EINVAL);
  // struct rand_pool_info ends in a flexible array: one allocation holds the header and the bytes.
  auto* pool = static_cast<struct rand_pool_info*>(malloc(sizeof(struct rand_pool_info) + len));
  if (pool == nullptr) return Napi::Number::New(env, -ENOMEM);
  pool->entropy_count = static_cast<int>(len * 8);
  pool->buf_size = static_cast<int>(len);
  memcpy(pool->buf, data.Data(), len);
  int result = 0;
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    result = -errno;
  } else {
    if (ioctl(fd, RNDADDENTROPY, pool) != 0) result = -errno;
    close(fd);
  }
  explicit_bzero(pool->buf, len);
  free(pool);
  return Napi::Number::New(env, result);
}

}  // namespace hull
