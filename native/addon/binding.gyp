{
  "targets": [
    {
      "target_name": "hull_native",
      "sources": ["hull_native.cc", "fd_handle.cc", "listener.cc", "polled_fd.cc", "peercred.cc", "pty.cc", "netns.cc", "guest-time.cc", "kvm_probe.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17"],
      "cflags!": ["-Wno-unused-parameter"],
      "cflags_cc!": ["-std=gnu++17", "-std=gnu++20", "-Wno-unused-parameter"]
    }
  ]
}
