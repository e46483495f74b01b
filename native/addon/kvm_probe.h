// kvmProbe(path): uses /dev/kvm the way QEMU's KVM accelerator does at start-up, so hull chooses KVM only where
// QEMU would get past its own KVM set-up (hypervisor/acceleration.ts decides; this only reports).
#ifndef HULL_NATIVE_KVM_PROBE_H
#define HULL_NATIVE_KVM_PROBE_H

#include <napi.h>

namespace hull {

// Returns {step, errno, detail}: step is "ok", or the first step that failed: "open" (open O_RDWR), "api-version"
// (KVM_GET_API_VERSION is not 12; detail: what it returned), "extension" (a capability QEMU 7.2 requires is
// missing; detail: its name), "create-vm" (KVM_CREATE_VM), "create-vcpu" (KVM_CREATE_VCPU). errno is 0 or positive.
Napi::Value KvmProbe(const Napi::CallbackInfo& info);

}  // namespace hull

#endif
