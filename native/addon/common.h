// Shared helpers for the hull_native addon: calling back into JS from libuv callbacks.
#ifndef HULL_NATIVE_COMMON_H
#define HULL_NATIVE_COMMON_H

#include <napi.h>
#include <uv.h>

namespace hull {

// Calls fn from a libuv callback. MakeCallback (not Call) so nextTicks and microtasks run afterwards; an exception
// thrown by the callback becomes an 'uncaughtException' instead of staying pending in the env.
inline Napi::Value CallFromLoop(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext& ctx,
                                const std::initializer_list<napi_value>& args) {
  Napi::Value result = fn.MakeCallback(env.Global(), args, ctx);
  if (env.IsExceptionPending()) {
    Napi::Error e = env.GetAndClearPendingException();
    napi_fatal_exception(env, e.Value());
    return Napi::Value();
  }
  return result;
}

// The env's libuv loop (the one thing N-API does not wrap).
inline uv_loop_t* LoopOf(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

}  // namespace hull

#endif
