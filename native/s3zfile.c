// s3zfile: file mechanisms Node's fs lacks: punching holes in the block cache's slab
// files, starting the write-out of a range of them, and direct I/O (O_DIRECT on an
// open fd, and the alignment of a buffer's memory, which O_DIRECT needs). Mechanism
// only: which ranges to punch or write out, and which files bypass the page cache, is
// decided in TypeScript (src/store/slab-file.ts, src/util/direct-io.ts). Every N-API
// status is checked; nothing is owned across calls (the fd and the buffer stay the
// caller's).
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, text, error, num;
  if (napi_create_string_utf8(env, err == ENOSPC ? "ENOSPC" : err == EOPNOTSUPP ? "EOPNOTSUPP" : "EIO", NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok ||
      napi_create_error(env, code, text, &error) != napi_ok || napi_create_int32(env, err, &num) != napi_ok ||
      napi_set_named_property(env, error, "errno", num) != napi_ok) {
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  napi_throw(env, error);
  return NULL;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

// Exactly `want` arguments into argv, or a TypeError naming the call (and 0).
static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

// (fd, offset, length) of a file range, all non-negative integers and length > 0, or a
// TypeError naming the call `name` (and 0).
static int get_range(napi_env env, napi_callback_info info, const char *name, int64_t *fd, int64_t *offset, int64_t *length) {
  char usage[96];
  napi_value argv[3];
  snprintf(usage, sizeof usage, "%s(fd, offset, length)", name);
  if (!get_args(env, info, 3, argv, usage)) return 0;
  if (!get_i64(env, argv[0], fd) || !get_i64(env, argv[1], offset) || !get_i64(env, argv[2], length) || *fd < 0 || *offset < 0 ||
      *length <= 0) {
    snprintf(usage, sizeof usage, "%s: fd, offset and length must be non-negative integers (length > 0)", name);
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

// punchHole(fd, offset, length): deallocates the range, which then reads as zeros;
// the file keeps its size. Synchronous: a metadata operation of microseconds.
static napi_value js_punch_hole(napi_env env, napi_callback_info info) {
  int64_t fd, offset, length;
  if (!get_range(env, info, "punchHole", &fd, &offset, &length)) return NULL;
  if (fallocate((int)fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) != 0) return throw_errno(env, errno, "fallocate(PUNCH_HOLE)");
  napi_value u;
  if (napi_get_undefined(env, &u) != napi_ok) return NULL;
  return u;
}

// writeOut(fd, offset, length): starts writing the range's dirty pages to the disk and
// returns (sync_file_range WRITE: no wait for them, no metadata, no durability promise).
// Synchronous: it queues the pages; it blocks only while the disk's queue is full.
static napi_value js_write_out(napi_env env, napi_callback_info info) {
  int64_t fd, offset, length;
  if (!get_range(env, info, "writeOut", &fd, &offset, &length)) return NULL;
  if (sync_file_range((int)fd, (off_t)offset, (off_t)length, SYNC_FILE_RANGE_WRITE) != 0) return throw_errno(env, errno, "sync_file_range");
  napi_value u;
  if (napi_get_undefined(env, &u) != napi_ok) return NULL;
  return u;
}

// directIO(fd, on) -> boolean: sets or clears O_DIRECT on an open fd. False when the
// kernel refuses it for this file (EINVAL: its filesystem or device has no direct I/O);
// the fd is then unchanged. Other failures (a bad fd) throw.
static napi_value js_direct_io(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "directIO(fd, on)")) return NULL;
  int64_t fd;
  bool on;
  if (!get_i64(env, argv[0], &fd) || fd < 0 || fd > INT32_MAX || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "directIO: fd must be a non-negative integer and on a boolean");
    return NULL;
  }
  int flags = fcntl((int)fd, F_GETFL);
  if (flags < 0) return throw_errno(env, errno, "fcntl(F_GETFL)");
  bool ok = true;
  if (fcntl((int)fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) != 0) {
    if (errno != EINVAL) return throw_errno(env, errno, "fcntl(F_SETFL, O_DIRECT)");
    ok = false;
  }
  napi_value result;
  if (napi_get_boolean(env, ok, &result) != napi_ok) return NULL;
  return result;
}

// addressMod(view, n) -> number: the address of a Buffer's (or typed array's) first
// byte modulo n, a power of two: what the caller skips to align it. The memory is
// only looked at, never kept.
static napi_value js_address_mod(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "addressMod(view, n)")) return NULL;
  bool is_view;
  int64_t n;
  if (napi_is_typedarray(env, argv[0], &is_view) != napi_ok || !is_view || !get_i64(env, argv[1], &n) || n <= 0 || n > (1 << 30) ||
      (n & (n - 1)) != 0) {
    napi_throw_type_error(env, NULL, "addressMod: a typed array and a power of two up to 2^30");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  napi_value arraybuffer;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, &arraybuffer, &offset) != napi_ok) {
    napi_throw_error(env, NULL, "addressMod: cannot read the view");
    return NULL;
  }
  napi_value result;
  if (napi_create_int64(env, (int64_t)((uintptr_t)data & (uintptr_t)(n - 1)), &result) != napi_ok) return NULL;
  return result;
}

static int export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok &&
         napi_set_named_property(env, exports, name, fn) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  if (!export_fn(env, exports, "punchHole", js_punch_hole) || !export_fn(env, exports, "directIO", js_direct_io) ||
      !export_fn(env, exports, "addressMod", js_address_mod) || !export_fn(env, exports, "writeOut", js_write_out)) {
    napi_throw_error(env, NULL, "s3zfile: init failed");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
