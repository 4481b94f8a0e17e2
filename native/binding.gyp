{
  "targets": [
    {
      "target_name": "tsnet_native",
      "sources": ["src/addon.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "tsnet_relay",
      "sources": ["src/relay.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread"],
      "ldflags": ["-pthread"]
    },
    {
      "target_name": "tsnet_zstd",
      "sources": ["src/zstd.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lzstd"]
    },
    {
      "target_name": "tsnet-cni-client",
      "type": "executable",
      "sources": ["src/cni-client.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "ldflags": ["-static-libstdc++", "-static-libgcc"]
    },
    {
      "target_name": "tsnet-monitor",
      "type": "executable",
      "sources": ["runtime/monitor.c", "runtime/setup.c", "runtime/plan.c", "runtime/client.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "libraries": ["-lseccomp"]
    },
    {
      "target_name": "tsnet-init",
      "type": "executable",
      "sources": ["runtime/init.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "tsnet-proxy-keeper",
      "type": "executable",
      "sources": ["src/proxy-keeper.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-fno-exceptions"],
      "ldflags": ["-static-libstdc++", "-static-libgcc"]
    }
  ]
}
