// Pseudo-terminals for processes with `terminal: true` (docs/design.md, "Terminals").
#ifndef HULL_NATIVE_PTY_H
#define HULL_NATIVE_PTY_H

#include <napi.h>

namespace hull {

// openpty([ptmxPath]): {master, slavePath} — the master non-blocking and close-on-exec, unlocked; or -errno.
Napi::Value OpenPty(const Napi::CallbackInfo& info);
// setWindowSize(fd, rows, cols): 0 or -errno (TIOCSWINSZ; the foreground process group gets SIGWINCH).
Napi::Value SetWindowSize(const Napi::CallbackInfo& info);
// getWindowSize(fd): [rows, cols] or -errno (TIOCGWINSZ).
Napi::Value GetWindowSize(const Napi::CallbackInfo& info);

}  // namespace hull

#endif
