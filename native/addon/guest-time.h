// The guest side of a pooled VM's claim: the wall clock and the kernel's entropy pool, both of which the VM set up
// alone when it booted (the clock from the RTC, to the second) before anyone knew which sandbox it would serve.
#ifndef HULL_NATIVE_GUEST_TIME_H
#define HULL_NATIVE_GUEST_TIME_H

#include <napi.h>

namespace hull {

// setRealtimeClock(unixMs): 0, or -errno; sets CLOCK_REALTIME (needs CAP_SYS_TIME).
Napi::Value SetRealtimeClock(const Napi::CallbackInfo& info);
// addEntropy(buffer): 0, or -errno; mixes the bytes into the kernel's pool and credits them (RNDADDENTROPY, needs
// CAP_SYS_ADMIN). At most 512 bytes.
Napi::Value AddEntropy(const Napi::CallbackInfo& info);

}  // namespace hull

#endif
