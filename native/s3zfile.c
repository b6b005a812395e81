// s3zfile: file mechanisms Node's fs lacks, for the block cache's slab files.
// Mechanism only: which ranges to punch, and when, is decided in TypeScript
// (src/store/slab-file.ts). Every N-API status is checked; nothing is owned
// across calls (the fd stays the caller's).
#include <errno.h>
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

// punchHole(fd, offset, length): deallocates the range, which then reads as zeros;
// the file keeps its size. Synchronous: a metadata operation of microseconds.
static napi_value js_punch_hole(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) {
    napi_throw_type_error(env, NULL, "punchHole(fd, offset, length)");
    return NULL;
  }
  int64_t fd, offset, length;
  if (!get_i64(env, argv[0], &fd) || !get_i64(env, argv[1], &offset) || !get_i64(env, argv[2], &length) || fd < 0 || offset < 0 ||
      length <= 0) {
    napi_throw_type_error(env, NULL, "punchHole: fd, offset and length must be non-negative integers (length > 0)");
    return NULL;
  }
  if (fallocate((int)fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) != 0) return throw_errno(env, errno, "fallocate(PUNCH_HOLE)");
  napi_value u;
  if (napi_get_undefined(env, &u) != napi_ok) return NULL;
  return u;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "punchHole", NAPI_AUTO_LENGTH, js_punch_hole, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "punchHole", fn) != napi_ok) {
    napi_throw_error(env, NULL, "s3zfile: init failed");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
