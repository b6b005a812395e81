// s3zproc: process-wide memory mechanism for the TS side, which decides the values.
//   keepFreedMemory(trimThreshold, topPad) -> boolean
//     glibc's mallopt(M_TRIM_THRESHOLD) and mallopt(M_TOP_PAD): how much freed memory
//     stays in the process instead of going back to the kernel, and how much more to
//     ask for each time the heap grows. False if the C library refused either.
// No state of its own; nothing is allocated or handed over.
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <node_api.h>

static napi_value js_keep_freed_memory(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    napi_throw_type_error(env, NULL, "keepFreedMemory(trimThreshold, topPad)");
    return NULL;
  }
  int64_t trim, pad;
  if (napi_get_value_int64(env, argv[0], &trim) != napi_ok || napi_get_value_int64(env, argv[1], &pad) != napi_ok || trim < 0 ||
      pad < 0 || trim > INT_MAX || pad > INT_MAX) {
    napi_throw_range_error(env, NULL, "keepFreedMemory: byte counts from 0 to 2^31-1");
    return NULL;
  }
  // Either call may be refused (a C library without these knobs): the caller is told.
  int ok = mallopt(M_TRIM_THRESHOLD, (int)trim) == 1 && mallopt(M_TOP_PAD, (int)pad) == 1;
  napi_value result;
  if (napi_get_boolean(env, ok, &result) != napi_ok) return NULL;
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "keepFreedMemory", NAPI_AUTO_LENGTH, js_keep_freed_memory, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "keepFreedMemory", fn) != napi_ok) {
    napi_throw_error(env, NULL, "s3zproc: init failed");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
