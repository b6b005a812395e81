{
  "targets": [
    {
      "target_name": "s3zfuse",
      "sources": ["native/s3zfuse.c", "native/s3zdirect.c"],
      "defines": ["NAPI_VERSION=8", "FUSE_USE_VERSION=312", "_GNU_SOURCE"],
      "cflags": ["<!@(pkg-config --cflags fuse3)"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lm"]
    },
    {
      "target_name": "s3zfile",
      "sources": ["native/s3zfile.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "s3zproc",
      "sources": ["native/s3zproc.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
