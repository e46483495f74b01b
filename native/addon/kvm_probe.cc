// The KVM start-up steps of QEMU 7.2 (accel/kvm/kvm-all.c kvm_init, target/i386/kvm/kvm.c), in its order: open the
// device read-write, check the API version, check the capabilities QEMU refuses to run without, create a VM, and
// (as QEMU does for each vCPU) create a vCPU. Every fd is closed again: the probe leaves nothing behind.
// Passing all of them does not prove a stock kernel boots (a nested PVM /dev/kvm passes them all, measured here):
// acceleration.ts adds the CPU-flag and module checks for that.
#include "kvm_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string>
#include <sys/ioctl.h>
#include <unistd.h>

namespace hull {
namespace {

struct RequiredCap {
  int cap;
  const char* name;
};

// kvm_required_capabilites[] and kvm_arch_required_capabilities[] of QEMU 7.2 (`strings qemu-system-x86_64`
// shows these names next to "kvm does not support %s").
const RequiredCap kRequiredCaps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_DESTROY_MEMORY_REGION_WORKS, "KVM_CAP_DESTROY_MEMORY_REGION_WORKS"},
    {KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, "KVM_CAP_JOIN_MEMORY_REGIONS_WORKS"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
};

int IoctlRetry(int fd, unsigned long request, unsigned long arg) {
  int r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

Napi::Object Result(Napi::Env env, const char* step, int err, const std::string& detail) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", Napi::String::New(env, step));
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("detail", Napi::String::New(env, detail));
  return o;
}

}  // namespace

Napi::Value KvmProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "/dev/kvm";
  int kvm = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (kvm < 0) return Result(env, "open", errno, "");

  int version = IoctlRetry(kvm, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    int err = version < 0 ? errno : 0;
    close(kvm);
    return Result(env, "api-version", err, std::to_string(version));
  }
  for (const RequiredCap& c : kRequiredCaps) {
    int r = IoctlRetry(kvm, KVM_CHECK_EXTENSION, static_cast<unsigned long>(c.cap));
    if (r <= 0) {
      int err = r < 0 ? errno : 0;
      close(kvm);
      return Result(env, "extension", err, c.name);
    }
  }
  int vm = IoctlRetry(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) {
    int err = errno;
    close(kvm);
    return Result(env, "create-vm", err, "");
  }
  int vcpu = IoctlRetry(vm, KVM_CREATE_VCPU, 0);
  int vcpuErr = vcpu < 0 ? errno : 0;
  if (vcpu >= 0) close(vcpu);
  close(vm);
  close(kvm);
  if (vcpu < 0) return Result(env, "create-vcpu", vcpuErr, "");
  return Result(env, "ok", 0, "");
}

}  // namespace hull
