/*
 * s3zfuse: a thin N-API binding of libfuse3's low-level API. Mechanism only;
 * every policy (defaults, option parsing, errno choice, unmount strategy)
 * lives in src/fuse/ (binding.ts is its entry).
 *
 * Threads
 *   - JS thread: mount(), the reply*() functions, destroy(), call_js().
 *   - loop thread (one per session, created here): runs fuse_session_loop_mt,
 *     which starts libfuse's worker threads. Worker threads run the op_*()
 *     callbacks below; they never touch JS values.
 *
 * Request life cycle (ownership hand-offs are marked OWNERSHIP below)
 *   1. A worker thread gets a request from libfuse, copies everything libfuse
 *      will reuse (the name; the write payload unless borrowed, see below) into
 *      a malloc'd `request` and hands it to the JS thread through the session's
 *      thread-safe function (TSFN).
 *   2. call_js() (JS thread) puts the request in the per-env table, which
 *      yields a numeric id, and calls the JS dispatcher with it.
 *   3. JS calls one reply*(id, ...) when the handler settles; the reply is
 *      sent from the JS thread (fuse_reply_* is thread-safe) and the request
 *      is freed. A stale or repeated id is refused (returns false), so a JS
 *      bug can never reply twice to one fuse_req_t.
 *
 * Write payloads (OWNERSHIP)
 *   - owned (default): the worker copies libfuse's buffer (one memcpy) into a
 *     pooled buffer that becomes a JS Buffer, released by the GC.
 *   - lent: the same copy, but JS only borrows it: the reply detaches the
 *     Buffer and the buffer goes back to the pool at once. Buffers then stay
 *     few and warm; released by the GC they came back in bursts, past what the
 *     pool keeps, so each burst cost a munmap (a TLB shootdown) and the next
 *     writes page faults on fresh memory.
 *   - borrowed: no copy. The worker waits in op_write (libfuse does not reuse
 *     its buffer before op_write returns) while JS sees that very memory as an
 *     external Buffer. The reply detaches the Buffer (JS sees length 0 from
 *     then on), then posts `done`; the worker wakes, frees the request and
 *     returns. Each in-flight borrowed write holds a worker thread.
 *
 * Invariants
 *   - session->outstanding counts fuse requests handed towards JS and not yet
 *     answered; fuse_session_destroy() runs only when it is zero (a fuse_req_t
 *     points into the session).
 *   - Once the loop has returned (session->dead), replies become
 *     fuse_reply_none(): the connection is gone, we only free the request.
 *   - The loop thread queues OP_ENDED after fuse_session_loop_mt() returned,
 *     i.e. after every worker has queued its last request; the TSFN queue is
 *     FIFO, so when JS sees OP_ENDED it has seen every request of the session.
 */

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <math.h>
#include <node_api.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "s3zdirect.h"

/* ---- op codes shared with src/fuse/native.ts (keep in sync: OP there) ---- */
enum {
  OP_INIT = 1,
  OP_LOOKUP = 2,
  OP_FORGET = 3,
  OP_GETATTR = 4,
  OP_SETATTR = 5,
  OP_OPEN = 6,
  OP_READ = 7,
  OP_WRITE = 8,
  OP_FLUSH = 9,
  OP_FSYNC = 10,
  OP_FALLOCATE = 11,
  OP_RELEASE = 12,
  OP_OPENDIR = 13,
  OP_READDIR = 14,
  OP_RELEASEDIR = 15,
  OP_STATFS = 16,
  OP_ENDED = 17,
};

/* open reply flags (OPEN_* in src/fuse/native.ts) */
#define OPEN_DIRECT_IO 1
#define OPEN_KEEP_CACHE 2
#define OPEN_NONSEEKABLE 4
#define OPEN_CACHE_READDIR 8

/* attribute vector layout (ATTR_* in src/fuse/native.ts) */
enum { A_INO, A_MODE, A_NLINK, A_UID, A_GID, A_RDEV, A_SIZE, A_BLOCKS, A_BLKSIZE,
       A_ATIME, A_MTIME, A_CTIME, A_LEN };
/* statfs vector layout */
enum { F_BSIZE, F_FRSIZE, F_BLOCKS, F_BFREE, F_BAVAIL, F_FILES, F_FFREE, F_FAVAIL,
       F_FSID, F_NAMEMAX, F_LEN };
/* setattr vector layout */
enum { S_MODE, S_UID, S_GID, S_SIZE, S_ATIME, S_MTIME, S_CTIME, S_LEN };
/* init (connection info) vector layout */
enum { C_PROTO_MAJOR, C_PROTO_MINOR, C_CAPABLE, C_WANT, C_MAX_WRITE, C_MAX_READ,
       C_MAX_READAHEAD, C_MAX_BACKGROUND, C_CONGESTION, C_TIME_GRAN, C_LEN };

#define TABLE_BITS 22u
#define TABLE_MAX (1u << TABLE_BITS)
#define GEN_MASK ((1u << 30) - 1u)

typedef struct session session;

/* Who owns a write payload (the write mode the JS side chose; see the top). */
enum { WRITE_OWNED = 0, WRITE_BORROWED = 1, WRITE_LENT = 2 };

typedef struct request {
  session *s;
  fuse_req_t req; /* NULL for notifications (init, forget, ended) */
  int op;
  uint32_t gen;
  uint64_t ino;
  uint64_t fh;
  bool has_fh;
  int64_t off;
  uint64_t len; /* read/readdir size, fallocate length, forget nlookup */
  int flags;    /* open flags, write flags, fsync datasync, fallocate mode, to_set */
  void *payload; /* write: copy of the data (owned, lent) or libfuse's buffer (borrowed) */
  bool borrowed;  /* write payload is libfuse's memory; the worker waits on `done` */
  bool lent;      /* write payload is ours, seen by JS until the reply detaches it */
  sem_t done;     /* borrowed: posted once JS has answered and let go of the payload */
  napi_ref ab_ref; /* borrowed, lent: the JS ArrayBuffer over the payload, to detach */
  double vec[10]; /* max(C_LEN, S_LEN) */
  char name[]; /* lookup: copy of the name */
} request;

struct session {
  struct fuse_session *se;
  napi_threadsafe_function tsfn;
  pthread_t thread;
  bool thread_started;
  bool destroyed;
  atomic_bool dead;    /* the loop has returned */
  atomic_bool exiting; /* process exit: do not touch the TSFN any more */
  atomic_int refuse;   /* errno answered to new requests without JS (0: none) */
  atomic_long outstanding;
  uint32_t mask; /* bit (1 << op) set when JS has a handler for op */
  uint32_t write_mode; /* WRITE_OWNED, WRITE_BORROWED or WRITE_LENT */
  bool splice_write; /* JS allows splicing file-backed read replies into /dev/fuse */
  bool splice_ok;    /* ... and a pipe can hold a whole reply here (set in op_init) */
  unsigned max_write, max_readahead, max_background, congestion, threads;
  int loop_result;
  /* Set once by directEnable (JS thread), read by worker threads; freed with the session. */
  _Atomic(direct *) direct;
};

/* Per-env request table (JS thread only, so no lock). */
typedef struct addon {
  request **slots;
  uint32_t *gens;
  uint32_t cap;
  uint32_t used; /* high-water mark of slots ever used */
  uint32_t *free_list;
  uint32_t nfree;
  uint32_t live;
} addon;

/* ------------------------------------------------------------------------ */
/* error helpers
 * These run while reporting a failure: if throwing itself fails there is
 * nothing better to do, so their own N-API statuses are deliberately ignored. */

static void throw_status(napi_env env, napi_status st, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info); /* read before any other napi call */
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  char msg[512];
  snprintf(msg, sizeof msg, "N-API call failed (%d: %s): %s", (int)st,
           info && info->error_message ? info->error_message : "unknown", what);
  napi_throw_error(env, "ENAPI", msg);
}

/* Evaluate an N-API call in a function returning napi_value; throw and return
 * NULL on failure. */
#define CHECK(call)                                  \
  do {                                               \
    napi_status st_ = (call);                        \
    if (st_ != napi_ok) {                            \
      throw_status(env, st_, #call);                 \
      return NULL;                                   \
    }                                                \
  } while (0)

/* Same, but jump to `fail` (used where cleanup is needed). */
#define CHECK_GOTO(call)                             \
  do {                                               \
    napi_status st_ = (call);                        \
    if (st_ != napi_ok) {                            \
      throw_status(env, st_, #call);                 \
      goto fail;                                     \
    }                                                \
  } while (0)

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value m = NULL, e = NULL, code = NULL, no = NULL;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok ||
      napi_create_error(env, NULL, m, &e) != napi_ok) {
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  if (napi_create_int32(env, err, &no) == napi_ok)
    napi_set_named_property(env, e, "errno", no);
  const char *name = strerrorname_np(err);
  if (name && napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) == napi_ok)
    napi_set_named_property(env, e, "code", code);
  napi_throw(env, e);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* libfuse log capture: while mount() runs on the JS thread, libfuse's log
 * lines are collected so the error thrown to JS says why. Otherwise they go
 * to stderr as libfuse would print them. */

static __thread char *log_capture;
static __thread size_t log_capture_len;
#define LOG_CAPTURE_MAX 2048

static void log_func(enum fuse_log_level level, const char *fmt, va_list ap) {
  (void)level;
  if (log_capture) {
    if (log_capture_len < LOG_CAPTURE_MAX - 1) {
      int n = vsnprintf(log_capture + log_capture_len, LOG_CAPTURE_MAX - log_capture_len, fmt, ap);
      if (n > 0) {
        log_capture_len += (size_t)n;
        if (log_capture_len > LOG_CAPTURE_MAX - 1) log_capture_len = LOG_CAPTURE_MAX - 1;
      }
    }
    return;
  }
  vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------------------ */
/* write payload buffers
 * Large payloads (the 1 MiB writes) come from a small process-wide pool of
 * 1 MiB buffers and go back to it when JS's Buffer is collected: fresh
 * malloc'd megabytes cost page faults on every request (glibc hands them back
 * to the kernel when they are freed), which halved write throughput. */

#define POOL_MIN (128u * 1024u) /* payloads at least this large are pooled */
#define POOL_BUF (1u << 20)     /* pooled buffer size: the largest max_write */
#define POOL_MAX 64             /* buffers kept for reuse */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static void *pool[POOL_MAX];
static int pool_n;

static bool pooled_size(size_t size) { return size >= POOL_MIN && size <= POOL_BUF; }

void *payload_alloc(size_t size) {
  if (!pooled_size(size)) return malloc(size ? size : 1);
  void *p = NULL;
  pthread_mutex_lock(&pool_lock);
  if (pool_n > 0) p = pool[--pool_n];
  pthread_mutex_unlock(&pool_lock);
  return p ? p : malloc(POOL_BUF);
}

void payload_free(void *p, size_t size) {
  if (!p) return;
  if (pooled_size(size)) {
    pthread_mutex_lock(&pool_lock);
    if (pool_n < POOL_MAX) {
      pool[pool_n++] = p;
      p = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
  }
  free(p);
}

/* ------------------------------------------------------------------------ */
/* worker-thread side                                                       */

static request *req_new(session *s, fuse_req_t req, int op, fuse_ino_t ino,
                        struct fuse_file_info *fi, size_t name_len) {
  request *r = malloc(sizeof(request) + name_len + 1);
  if (!r) return NULL;
  memset(r, 0, sizeof(request));
  r->s = s;
  r->req = req;
  r->op = op;
  r->ino = ino;
  if (fi) {
    r->fh = fi->fh;
    r->has_fh = true;
  }
  r->name[0] = 0;
  return r;
}

/* Free a request and whatever it still owns. */
static void req_free(request *r) {
  if (!r->borrowed) payload_free(r->payload, r->len);
  free(r);
}

/* Answer a request with an error (or drop it if the connection is gone). */
static void req_answer_err(request *r, int err) {
  if (!r->req) return;
  if (atomic_load(&r->s->dead)) fuse_reply_none(r->req);
  else fuse_reply_err(r->req, err);
  atomic_fetch_sub(&r->s->outstanding, 1);
}

/* JS thread (or env teardown, env NULL): the request is answered; let go of
 * it. OWNERSHIP: a borrowed or lent payload's JS Buffer is detached first,
 * since its memory is reused as soon as we let go of it: a borrowed request
 * goes back to its waiting worker, which frees it (libfuse reuses its
 * buffer); a lent payload goes back to the pool with the request. */
static void req_finish(napi_env env, request *r) {
  if (r->ab_ref) {
    napi_value ab;
    if (env == NULL || napi_get_reference_value(env, r->ab_ref, &ab) != napi_ok || ab == NULL ||
        napi_detach_arraybuffer(env, ab) != napi_ok) {
      /* Cannot happen with Node's external buffers; if it did, JS could still
       * read memory that is reused: stop rather than corrupt silently. */
      napi_fatal_error("s3zfuse", NAPI_AUTO_LENGTH, "could not detach a write buffer",
                       NAPI_AUTO_LENGTH);
    }
    if (napi_delete_reference(env, r->ab_ref) != napi_ok)
      fprintf(stderr, "s3zfuse: could not delete a buffer reference\n");
    r->ab_ref = NULL;
  }
  if (!r->borrowed) {
    req_free(r);
    return;
  }
  sem_post(&r->done);
}

/* Answer a request that JS did not take (JS thread), then let go of it. */
static void req_fail(napi_env env, request *r, int err) {
  req_answer_err(r, err);
  req_finish(env, r);
}

/* Hand a request to the JS thread (worker thread). OWNERSHIP: on success
 * (true) the request belongs to the JS thread (a borrowed one comes back
 * through `done`); on failure it has been answered, and freed unless it is
 * borrowed (the caller then frees it without waiting). */
static bool submit(session *s, request *r) {
  if (r->req) atomic_fetch_add(&s->outstanding, 1);
  int refuse = atomic_load(&s->refuse);
  napi_status st = napi_ok;
  if (!refuse && !atomic_load(&s->exiting)) {
    st = napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_blocking);
    if (st == napi_ok) return true;
  }
  req_answer_err(r, refuse ? refuse : (st == napi_ok || st == napi_closing) ? ENOTCONN : EIO);
  if (!r->borrowed) req_free(r);
  return false;
}

#define HAS(s, op) ((s)->mask & (1u << (op)))

/* Allocate a request or answer ENOMEM; used by every op below. */
#define NEW_OR_FAIL(r, s, req, op, ino, fi, nl) \
  request *r = req_new(s, req, op, ino, fi, nl); \
  if (!r) {                                      \
    fuse_reply_err(req, ENOMEM);                 \
    return;                                      \
  }

/* Whether a pipe can be grown to `bytes` by this process. */
static bool pipe_can_hold(unsigned bytes) {
  int p[2];
  if (pipe(p) != 0) return false;
  bool ok = fcntl(p[0], F_SETPIPE_SZ, (int)bytes) >= (int)bytes;
  close(p[0]);
  close(p[1]);
  return ok;
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  session *s = userdata;
  /* Large requests: libfuse derives max_pages from max_write. */
  conn->max_write = s->max_write;
  conn->max_readahead = s->max_readahead; /* the kernel keeps the smaller of its own and ours */
  if (s->max_background) conn->max_background = s->max_background;
  if (s->congestion) conn->congestion_threshold = s->congestion;
  /* replyFd: the kernel takes the file's pages through a pipe, no copy in user
   * space, if libfuse can grow its pipe past a whole reply (pipe-max-size is
   * 1 MiB by default; beyond it needs CAP_SYS_RESOURCE). */
  if (s->splice_write && (conn->capable & FUSE_CAP_SPLICE_WRITE) &&
      pipe_can_hold(s->max_write + 4u * (unsigned)sysconf(_SC_PAGESIZE))) {
    conn->want |= FUSE_CAP_SPLICE_WRITE;
    s->splice_ok = true;
  }
  if (!HAS(s, OP_INIT)) return;
  request *r = req_new(s, NULL, OP_INIT, 0, NULL, 0);
  if (!r) return;
  r->vec[C_PROTO_MAJOR] = conn->proto_major;
  r->vec[C_PROTO_MINOR] = conn->proto_minor;
  r->vec[C_CAPABLE] = conn->capable;
  r->vec[C_WANT] = conn->want;
  r->vec[C_MAX_WRITE] = conn->max_write;
  r->vec[C_MAX_READ] = conn->max_read;
  r->vec[C_MAX_READAHEAD] = conn->max_readahead;
  r->vec[C_MAX_BACKGROUND] = conn->max_background;
  r->vec[C_CONGESTION] = conn->congestion_threshold;
  r->vec[C_TIME_GRAN] = conn->time_gran;
  submit(s, r);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_LOOKUP)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  size_t nl = strlen(name);
  NEW_OR_FAIL(r, s, req, OP_LOOKUP, parent, NULL, nl);
  memcpy(r->name, name, nl + 1); /* libfuse reuses its buffer after we return */
  submit(s, r);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session *s = fuse_req_userdata(req);
  fuse_reply_none(req); /* forget has no reply; JS only gets told */
  if (!HAS(s, OP_FORGET)) return;
  request *r = req_new(s, NULL, OP_FORGET, ino, NULL, 0);
  if (!r) return;
  r->len = nlookup;
  submit(s, r);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_GETATTR)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_GETATTR, ino, fi, 0);
  submit(s, r);
}

static double ts_ms(const struct timespec *t) {
  return (double)t->tv_sec * 1e3 + (double)t->tv_nsec / 1e6;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_SETATTR)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_SETATTR, ino, fi, 0);
  r->flags = to_set;
  r->vec[S_MODE] = attr->st_mode;
  r->vec[S_UID] = attr->st_uid;
  r->vec[S_GID] = attr->st_gid;
  r->vec[S_SIZE] = (double)attr->st_size;
  r->vec[S_ATIME] = ts_ms(&attr->st_atim);
  r->vec[S_MTIME] = ts_ms(&attr->st_mtim);
  r->vec[S_CTIME] = ts_ms(&attr->st_ctim);
  submit(s, r);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_OPEN)) {
    fuse_reply_open(req, fi);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_OPEN, ino, NULL, 0);
  r->flags = fi->flags;
  submit(s, r);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_READ)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  /* A granted block is answered by this thread (s3zdirect.c); not while the session
   * refuses requests (it is ending) or is dying. */
  direct *d = atomic_load_explicit(&s->direct, memory_order_acquire);
  if (d && !atomic_load(&s->refuse) && !atomic_load(&s->exiting) && direct_read(d, req, ino, size, off)) return;
  NEW_OR_FAIL(r, s, req, OP_READ, ino, fi, 0);
  r->off = off;
  r->len = size;
  submit(s, r);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_WRITE)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_WRITE, ino, fi, 0);
  r->off = off;
  r->len = size;
  r->flags = fi->flags;
  if (s->write_mode == WRITE_BORROWED) {
    /* OWNERSHIP: JS borrows libfuse's buffer; we do not return (so libfuse
     * does not reuse it) until JS has answered and let go of it. */
    r->borrowed = true;
    r->payload = (void *)buf;
    if (sem_init(&r->done, 0, 0) != 0) {
      free(r);
      fuse_reply_err(req, EIO);
      return;
    }
    if (submit(s, r)) {
      while (sem_wait(&r->done) != 0 && errno == EINTR) {
      }
    }
    sem_destroy(&r->done);
    free(r);
    return;
  }
  /* OWNERSHIP: `buf` belongs to libfuse and is reused as soon as we return;
   * one memcpy into a buffer of our own, which call_js hands to JS (owned)
   * or lends to it until the reply (lent). */
  r->lent = s->write_mode == WRITE_LENT;
  r->payload = payload_alloc(size);
  if (!r->payload) {
    free(r);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  memcpy(r->payload, buf, size);
  submit(s, r);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_FLUSH)) {
    fuse_reply_err(req, 0);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_FLUSH, ino, fi, 0);
  submit(s, r);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_FSYNC)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_FSYNC, ino, fi, 0);
  r->flags = datasync;
  submit(s, r);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_FALLOCATE)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_FALLOCATE, ino, fi, 0);
  r->flags = mode;
  r->off = offset;
  r->len = (uint64_t)length;
  submit(s, r);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_RELEASE)) {
    fuse_reply_err(req, 0);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_RELEASE, ino, fi, 0);
  r->flags = fi->flags;
  submit(s, r);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_OPENDIR)) {
    fuse_reply_open(req, fi);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_OPENDIR, ino, NULL, 0);
  r->flags = fi->flags;
  submit(s, r);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_READDIR)) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_READDIR, ino, fi, 0);
  r->off = off;
  r->len = size;
  submit(s, r);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_RELEASEDIR)) {
    fuse_reply_err(req, 0);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_RELEASEDIR, ino, fi, 0);
  submit(s, r);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  session *s = fuse_req_userdata(req);
  if (!HAS(s, OP_STATFS)) {
    struct statvfs st;
    memset(&st, 0, sizeof st);
    st.f_namemax = 255;
    st.f_bsize = 512;
    fuse_reply_statfs(req, &st);
    return;
  }
  NEW_OR_FAIL(r, s, req, OP_STATFS, ino, NULL, 0);
  submit(s, r);
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .fallocate = op_fallocate,
};

/* The session's own thread: runs the multi-threaded loop, then tells JS. */
static void *loop_main(void *arg) {
  session *s = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  if (cfg) {
    fuse_loop_cfg_set_max_threads(cfg, s->threads);
    fuse_loop_cfg_set_idle_threads(cfg, s->threads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    s->loop_result = fuse_session_loop_mt(s->se, cfg);
    fuse_loop_cfg_destroy(cfg);
  } else {
    s->loop_result = -ENOMEM;
  }
  atomic_store(&s->dead, true);
  if (atomic_load(&s->exiting)) return NULL; /* the env is going away */
  request *r = req_new(s, NULL, OP_ENDED, 0, NULL, 0);
  if (r) {
    r->off = s->loop_result;
    /* OWNERSHIP: as in submit(). */
    if (napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_blocking) != napi_ok) req_free(r);
  }
  /* The loop thread owns the only TSFN reference (workers have all been
   * joined by fuse_session_loop_mt). */
  if (napi_release_threadsafe_function(s->tsfn, napi_tsfn_release) != napi_ok)
    fprintf(stderr, "s3zfuse: could not release the thread-safe function\n");
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* request table (JS thread)                                                */

static addon *get_addon(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return data;
}

/* OWNERSHIP: the table holds the request until a reply takes it out. */
static bool table_put(addon *a, request *r, double *id) {
  uint32_t idx;
  if (a->nfree > 0) {
    idx = a->free_list[--a->nfree];
  } else {
    if (a->used == a->cap) {
      if (a->cap >= TABLE_MAX) return false;
      uint32_t ncap = a->cap ? a->cap * 2 : 256;
      request **ns = realloc(a->slots, ncap * sizeof *ns);
      if (!ns) return false;
      a->slots = ns;
      uint32_t *ng = realloc(a->gens, ncap * sizeof *ng);
      if (!ng) return false;
      a->gens = ng;
      uint32_t *nf = realloc(a->free_list, ncap * sizeof *nf);
      if (!nf) return false;
      a->free_list = nf;
      for (uint32_t i = a->cap; i < ncap; i++) {
        a->slots[i] = NULL;
        a->gens[i] = 0;
      }
      a->cap = ncap;
    }
    idx = a->used++;
  }
  uint32_t gen = (a->gens[idx] + 1) & GEN_MASK;
  a->gens[idx] = gen;
  a->slots[idx] = r;
  r->gen = gen;
  a->live++;
  *id = (double)gen * (double)TABLE_MAX + (double)idx;
  return true;
}

/* Find a live request by id without removing it; NULL if stale. */
static request *table_peek(addon *a, double id, uint32_t *idx_out) {
  if (!(id >= 0) || id > 9007199254740991.0) return NULL;
  uint64_t v = (uint64_t)id;
  if ((double)v != id) return NULL;
  uint32_t idx = (uint32_t)(v & (TABLE_MAX - 1));
  uint32_t gen = (uint32_t)(v >> TABLE_BITS);
  if (idx >= a->used) return NULL;
  request *r = a->slots[idx];
  if (!r || r->gen != gen) return NULL;
  *idx_out = idx;
  return r;
}

static void table_remove(addon *a, uint32_t idx) {
  a->slots[idx] = NULL;
  a->free_list[a->nfree++] = idx;
  a->live--;
}

/* ------------------------------------------------------------------------ */
/* JS thread: dispatch                                                      */

/* Finalizer of a write payload handed to JS; hint carries its size. */
static void free_external(napi_env env, void *data, void *hint) {
  (void)env;
  payload_free(data, (size_t)(uintptr_t)hint);
}

/* After a failed N-API call: clear the exception it may have left pending.
 * False only if there was one and it could not be cleared. */
static bool clear_exception(napi_env env) {
  bool pending = false;
  napi_value ignored;
  return !(napi_is_exception_pending(env, &pending) == napi_ok && pending &&
           napi_get_and_clear_last_exception(env, &ignored) != napi_ok);
}

/* napi_create_double for a uint64 that JS knows as a number. */
static napi_status num(napi_env env, double v, napi_value *out) {
  return napi_create_double(env, v, out);
}

static napi_status make_f64(napi_env env, const double *src, size_t n, napi_value *out) {
  void *data = NULL;
  napi_value ab;
  napi_status st = napi_create_arraybuffer(env, n * sizeof(double), &data, &ab);
  if (st != napi_ok) return st;
  memcpy(data, src, n * sizeof(double));
  return napi_create_typedarray(env, napi_float64_array, n, ab, 0, out);
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  request *r = data;
  if (env == NULL || js_cb == NULL) {
    /* The TSFN is being torn down with the env: nobody will answer. */
    req_fail(NULL, r, ENOTCONN);
    return;
  }
  addon *a = get_addon(env);
  napi_value argv[7];
  napi_value undef;
  double id = 0;
  bool in_table = false;
  uint32_t idx = 0;
  if (napi_get_undefined(env, &undef) != napi_ok || a == NULL) goto fail;
  for (int i = 0; i < 7; i++) argv[i] = undef;
  if (r->req) {
    if (!table_put(a, r, &id)) goto fail;
    in_table = true;
    idx = (uint32_t)((uint64_t)id & (TABLE_MAX - 1));
  }
#define A(call) \
  if ((call) != napi_ok) goto fail
  A(napi_create_int32(env, r->op, &argv[0]));
  A(num(env, id, &argv[1]));
  switch (r->op) {
    case OP_INIT:
      A(make_f64(env, r->vec, C_LEN, &argv[2]));
      break;
    case OP_LOOKUP:
      A(num(env, (double)r->ino, &argv[2]));
      A(napi_create_string_utf8(env, r->name, NAPI_AUTO_LENGTH, &argv[3]));
      break;
    case OP_FORGET:
      A(num(env, (double)r->ino, &argv[2]));
      A(num(env, (double)r->len, &argv[3]));
      break;
    case OP_GETATTR:
    case OP_FLUSH:
    case OP_RELEASEDIR:
    case OP_STATFS:
      A(num(env, (double)r->ino, &argv[2]));
      if (r->has_fh) A(num(env, (double)r->fh, &argv[3]));
      break;
    case OP_SETATTR:
      A(num(env, (double)r->ino, &argv[2]));
      if (r->has_fh) A(num(env, (double)r->fh, &argv[3]));
      A(napi_create_int32(env, r->flags, &argv[4]));
      A(make_f64(env, r->vec, S_LEN, &argv[5]));
      break;
    case OP_OPEN:
    case OP_OPENDIR:
      A(num(env, (double)r->ino, &argv[2]));
      A(napi_create_int32(env, r->flags, &argv[3]));
      break;
    case OP_READ:
    case OP_READDIR:
      A(num(env, (double)r->ino, &argv[2]));
      A(num(env, (double)r->fh, &argv[3]));
      A(num(env, (double)r->off, &argv[4]));
      A(num(env, (double)r->len, &argv[5]));
      break;
    case OP_WRITE: {
      A(num(env, (double)r->ino, &argv[2]));
      A(num(env, (double)r->fh, &argv[3]));
      A(num(env, (double)r->off, &argv[4]));
      if (r->borrowed || r->lent) {
        /* OWNERSHIP: JS borrows the payload (libfuse's memory, or ours) until
         * req_finish detaches it; the request keeps owning it. */
        napi_value ab;
        if (napi_create_external_buffer(env, r->len, r->payload, NULL, NULL, &argv[5]) == napi_ok) {
          A(napi_get_typedarray_info(env, argv[5], NULL, NULL, NULL, &ab, NULL));
          A(napi_create_reference(env, ab, 1, &r->ab_ref));
        } else {
          /* Runtimes that forbid external buffers: a lent payload becomes a copy
           * (the request still frees it); a borrowed one cannot. */
          if (r->borrowed || !clear_exception(env)) goto fail;
          A(napi_create_buffer_copy(env, r->len, r->payload, NULL, &argv[5]));
        }
      } else {
        /* OWNERSHIP: the payload goes to a JS Buffer, freed by the GC. */
        if (napi_create_external_buffer(env, r->len, r->payload, free_external, (void *)(uintptr_t)r->len,
                                        &argv[5]) == napi_ok) {
          r->payload = NULL;
        } else {
          /* Runtimes that forbid external buffers: copy instead. */
          if (!clear_exception(env)) goto fail;
          A(napi_create_buffer_copy(env, r->len, r->payload, NULL, &argv[5]));
          payload_free(r->payload, r->len);
          r->payload = NULL;
        }
      }
      A(napi_create_int32(env, r->flags, &argv[6]));
      break;
    }
    case OP_FSYNC:
      A(num(env, (double)r->ino, &argv[2]));
      A(num(env, (double)r->fh, &argv[3]));
      A(napi_get_boolean(env, r->flags != 0, &argv[4]));
      break;
    case OP_FALLOCATE:
      A(num(env, (double)r->ino, &argv[2]));
      A(num(env, (double)r->fh, &argv[3]));
      A(num(env, (double)r->off, &argv[4]));
      A(num(env, (double)r->len, &argv[5]));
      A(napi_create_int32(env, r->flags, &argv[6]));
      break;
    case OP_RELEASE:
      A(num(env, (double)r->ino, &argv[2]));
      A(num(env, (double)r->fh, &argv[3]));
      A(napi_create_int32(env, r->flags, &argv[4]));
      break;
    case OP_ENDED:
      A(napi_create_int32(env, (int32_t)r->off, &argv[2]));
      break;
    default:
      goto fail;
  }
#undef A
  if (!r->req) {
    /* Notification: nothing to answer, JS does not get the request. */
    req_free(r);
    r = NULL;
  }
  napi_value recv = undef;
  napi_status st = napi_call_function(env, recv, js_cb, 7, argv, NULL);
  if (st != napi_ok) {
    /* The dispatcher must not throw; if it did, surface it loudly. */
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    if (r && in_table) {
      uint32_t i2;
      if (table_peek(a, id, &i2) == r) {
        table_remove(a, i2);
        req_fail(env, r, EIO);
      }
    }
  }
  return;
fail:
  fprintf(stderr, "s3zfuse: could not deliver a request to JS (op %d)\n", r->op);
  if (in_table) table_remove(a, idx);
  req_fail(env, r, EIO);
}

/* ------------------------------------------------------------------------ */
/* argument helpers                                                         */

static bool arg_double(napi_env env, napi_value v, double *out) {
  return napi_get_value_double(env, v, out) == napi_ok;
}

static bool arg_u64(napi_env env, napi_value v, uint64_t *out) {
  double d;
  if (!arg_double(env, v, &d)) return false;
  if (!(d >= 0) || d > 18446744073709549568.0 || d != (double)(uint64_t)d) return false;
  *out = (uint64_t)d;
  return true;
}

static bool arg_u32(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

static bool arg_f64array(napi_env env, napi_value v, size_t min_len, double **out,
                         size_t *len_out) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, NULL, NULL) != napi_ok) return false;
  if (type != napi_float64_array || len < min_len) return false;
  *out = data;
  if (len_out) *len_out = len;
  return true;
}

static void ms_to_ts(double ms, struct timespec *t) {
  if (!isfinite(ms)) ms = 0;
  double sec = floor(ms / 1e3);
  long ns = lround((ms - sec * 1e3) * 1e6);
  if (ns >= 1000000000L) ns = 999999999L;
  if (ns < 0) ns = 0;
  t->tv_sec = (time_t)sec;
  t->tv_nsec = ns;
}

static void vec_to_stat(const double *v, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)v[A_INO];
  st->st_mode = (mode_t)v[A_MODE];
  st->st_nlink = (nlink_t)v[A_NLINK];
  st->st_uid = (uid_t)v[A_UID];
  st->st_gid = (gid_t)v[A_GID];
  st->st_rdev = (dev_t)v[A_RDEV];
  st->st_size = (off_t)v[A_SIZE];
  st->st_blocks = (blkcnt_t)v[A_BLOCKS];
  st->st_blksize = (blksize_t)v[A_BLKSIZE];
  ms_to_ts(v[A_ATIME], &st->st_atim);
  ms_to_ts(v[A_MTIME], &st->st_mtim);
  ms_to_ts(v[A_CTIME], &st->st_ctim);
}

/* Common prologue of the reply functions: argc check, id lookup with the
 * expected op(s). Returns the request (still in the table) or NULL; *stale is
 * set when the id is valid-looking but no longer live. */
static request *reply_begin(napi_env env, napi_callback_info info, size_t want_argc,
                            napi_value *argv, uint32_t op_mask, uint32_t *idx, bool *stale,
                            addon **a_out) {
  size_t argc = want_argc;
  *stale = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_type(env, "bad call");
    return NULL;
  }
  if (argc < want_argc) {
    throw_type(env, "missing arguments");
    return NULL;
  }
  double id;
  if (!arg_double(env, argv[0], &id)) {
    throw_type(env, "request id must be a number");
    return NULL;
  }
  addon *a = get_addon(env);
  if (!a) {
    throw_type(env, "addon not initialised");
    return NULL;
  }
  request *r = table_peek(a, id, idx);
  if (!r) {
    *stale = true;
    return NULL;
  }
  if (!(op_mask & (1u << r->op))) {
    throw_type(env, "reply kind does not match the request");
    return NULL;
  }
  *a_out = a;
  return r;
}

/* Take the request out of the table and free it after its reply was sent. */
static napi_value reply_end(napi_env env, addon *a, uint32_t idx, request *r) {
  table_remove(a, idx);
  atomic_fetch_sub(&r->s->outstanding, 1);
  req_finish(env, r);
  napi_value t;
  CHECK(napi_get_boolean(env, true, &t));
  return t;
}

static napi_value ret_false(napi_env env) {
  napi_value f;
  CHECK(napi_get_boolean(env, false, &f));
  return f;
}

#define ALL_OPS 0xFFFFFFFFu
#define BEGIN(n, mask)                                                       \
  napi_value argv[n];                                                        \
  uint32_t idx;                                                              \
  bool stale;                                                                \
  addon *a = NULL;                                                           \
  request *r = reply_begin(env, info, n, argv, mask, &idx, &stale, &a);     \
  if (!r) return stale ? ret_false(env) : NULL;                             \
  bool dead = atomic_load(&r->s->dead)

/* replyErr(id, errno): errno 0 means success for ops without data. */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  BEGIN(2, ALL_OPS);
  uint32_t err;
  if (!arg_u32(env, argv[1], &err) || err >= 4096) return throw_type(env, "errno must be 0..4095");
  if (dead) fuse_reply_none(r->req);
  else fuse_reply_err(r->req, (int)err);
  return reply_end(env, a, idx, r);
}

/* replyBuf(id, data: Uint8Array) for read. The kernel copies straight out of
 * the JS buffer's memory during the writev; nothing is retained. */
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  BEGIN(2, 1u << OP_READ);
  bool is = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array)
    return throw_type(env, "read reply must be a Uint8Array");
  if (len > r->len) len = r->len;
  if (dead) fuse_reply_none(r->req);
  else fuse_reply_buf(r->req, len ? data : NULL, len);
  return reply_end(env, a, idx, r);
}

/* Sends [off, off+len) of the regular file `fd` as a read reply. The file must
 * hold all of it: a descriptor that is not an open regular file, a file that
 * ends before off+len, or a read error is answered EIO (a short reply would read
 * as the end of the device; zeros would be wrong bytes). Any thread.
 * Two ways: spliced (the kernel moves the file's pages through a pipe; only when
 * the session could grow a pipe to hold a whole reply, see op_init), else one
 * pread into a pooled buffer (no page faults of fresh memory) and a write.
 * libfuse's own fallback for an fd reply allocates a fresh buffer per reply,
 * whose page faults cost more than the copy. Returns 0 if the data was sent,
 * else the errno the kernel got. */
static int send_fd_slice(session *s, fuse_req_t req, int fd, off_t off, size_t len) {
  if (len == 0) {
    fuse_reply_buf(req, NULL, 0);
    return 0;
  }
  if (s->splice_ok) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < off ||
        (uint64_t)(st.st_size - off) < len) {
      fuse_reply_err(req, EIO);
      return EIO;
    }
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
    bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
    bv.buf[0].fd = fd;
    bv.buf[0].pos = off;
    /* libfuse answers a failed read of the file with its errno itself; a
     * negative result means the reply could not be written (request gone). */
    int res = fuse_reply_data(req, &bv, 0);
    return res < 0 ? -res : 0;
  }
  /* OWNERSHIP: buf is ours from payload_alloc to payload_free below. */
  char *buf = payload_alloc(len);
  if (!buf) {
    fuse_reply_err(req, ENOMEM);
    return ENOMEM;
  }
  size_t done = 0;
  int err = 0;
  while (done < len) {
    ssize_t n = pread(fd, buf + done, len - done, off + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = EIO; /* an error, or the file ends early */
      break;
    }
    done += (size_t)n;
  }
  if (err) fuse_reply_err(req, err);
  else fuse_reply_buf(req, buf, len);
  payload_free(buf, len);
  return err;
}

/* An fd reply sent from libuv's pool (replyFd, when the JS thread could not). */
typedef struct fd_reply {
  request *r;
  int fd;
  off_t off;
  size_t len;
  int err; /* errno the kernel got instead of the data, 0 if sent */
  napi_async_work work;
  napi_ref done; /* JS callback, called with `err` on the JS thread */
} fd_reply;

/* Pool thread: only the reply; the request stays counted in `outstanding`, so
 * the session (and its fuse_req_t) outlives this. */
static void fd_reply_execute(napi_env env, void *data) {
  (void)env;
  fd_reply *f = data;
  if (atomic_load(&f->r->s->dead)) fuse_reply_none(f->r->req);
  else f->err = send_fd_slice(f->r->s, f->r->req, f->fd, f->off, f->len);
}

/* JS thread: the reply is out; free the request, then tell JS (which releases
 * the file range). OWNERSHIP: `f` and its request end here. */
static void fd_reply_complete(napi_env env, napi_status status, void *data) {
  fd_reply *f = data;
  if (status != napi_ok) {
    /* Cancelled before it ran (cannot happen: nothing cancels it); never leave the kernel waiting. */
    req_answer_err(f->r, EIO);
    f->err = EIO;
  } else {
    atomic_fetch_sub(&f->r->s->outstanding, 1);
  }
  req_finish(env, f->r);
  napi_value cb, undef, arg;
  if (env != NULL && napi_get_reference_value(env, f->done, &cb) == napi_ok && cb != NULL &&
      napi_get_undefined(env, &undef) == napi_ok && napi_create_int32(env, f->err, &arg) == napi_ok) {
    if (napi_call_function(env, undef, cb, 1, &arg, NULL) != napi_ok) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  if (env != NULL && napi_delete_reference(env, f->done) != napi_ok)
    fprintf(stderr, "s3zfuse: could not delete a callback reference\n");
  if (env != NULL && napi_delete_async_work(env, f->work) != napi_ok)
    fprintf(stderr, "s3zfuse: could not delete an async work\n");
  free(f);
}

/* The JS thread's attempt at an fd reply: only if every byte of [off, off+len)
 * is in the page cache now (preadv2 RWF_NOWAIT: never waits for the disk nor a
 * lock). Returns true if the reply was sent; false if nothing was sent (EAGAIN,
 * a short count, EOPNOTSUPP as on tmpfs, any other error: the caller then uses
 * the pool, which reads the whole range again and owns the error handling). */
static bool send_fd_slice_nowait(fuse_req_t req, int fd, off_t off, size_t len) {
  if (len == 0) {
    fuse_reply_buf(req, NULL, 0);
    return true;
  }
  /* OWNERSHIP: buf is ours from payload_alloc to payload_free below, on both outcomes. */
  char *buf = payload_alloc(len);
  if (!buf) return false;
  struct iovec iov = {.iov_base = buf, .iov_len = len};
  ssize_t n = preadv2(fd, &iov, 1, off, RWF_NOWAIT);
  bool whole = n >= 0 && (size_t)n == len;
  if (whole) fuse_reply_buf(req, buf, len);
  payload_free(buf, len);
  return whole;
}

/* replyFd(id, fd, offset, length, done(errno)) for read: the kernel gets
 * [offset, offset+length) of the file `fd` (send_fd_slice). Tried first on the
 * JS thread without blocking (send_fd_slice_nowait: measured faster than the
 * pool while the pages are cached); otherwise the reply (the file read and the
 * write to /dev/fuse) runs on libuv's pool, so neither a disk read of an
 * uncached page nor a lock holds the JS thread. With splicing on, always the
 * pool (no copy at all there).
 * Returns 0 (stale id), 1 (queued on the pool: `fd` and the range must stay as
 * they are until done(errno) is called, exactly once) or 2 (sent on this
 * thread: done is never called; the range may be let go of at once). Either
 * way the id is answered for JS (a second reply is refused). */
static napi_value js_reply_fd(napi_env env, napi_callback_info info) {
  BEGIN(5, 1u << OP_READ);
  uint32_t fd;
  uint64_t off, len;
  napi_valuetype t;
  if (!arg_u32(env, argv[1], &fd) || fd > INT32_MAX || !arg_u64(env, argv[2], &off) ||
      off > (uint64_t)INT64_MAX || !arg_u64(env, argv[3], &len) || len > r->len ||
      napi_typeof(env, argv[4], &t) != napi_ok || t != napi_function)
    return throw_type(env, "replyFd(id, fd, offset, length <= the request size, done)");
  /* Made before anything is sent or queued: once it is, nothing may fail (JS
   * would let go of the range the pool still reads). */
  napi_value sent_here, queued;
  CHECK(napi_create_uint32(env, 2, &sent_here));
  CHECK(napi_create_uint32(env, 1, &queued));
  if (!dead && !r->s->splice_ok && send_fd_slice_nowait(r->req, (int)fd, (off_t)off, (size_t)len)) {
    /* OWNERSHIP: answered here; the request leaves the table and is freed now. */
    table_remove(a, idx);
    atomic_fetch_sub(&r->s->outstanding, 1);
    req_finish(env, r);
    return sent_here;
  }
  fd_reply *f = calloc(1, sizeof *f);
  if (!f) return throw_errno(env, ENOMEM, "replyFd");
  f->r = r;
  f->fd = (int)fd;
  f->off = (off_t)off;
  f->len = (size_t)len;
  napi_value name;
  if (napi_create_reference(env, argv[4], 1, &f->done) != napi_ok) {
    free(f);
    return throw_type(env, "replyFd: cannot hold the callback");
  }
  CHECK_GOTO(napi_create_string_utf8(env, "s3zfuse.replyFd", NAPI_AUTO_LENGTH, &name));
  CHECK_GOTO(napi_create_async_work(env, NULL, name, fd_reply_execute, fd_reply_complete, f, &f->work));
  if (napi_queue_async_work(env, f->work) != napi_ok) {
    napi_status st = napi_delete_async_work(env, f->work);
    (void)st; /* reporting the queue failure below matters more */
    throw_type(env, "replyFd: cannot queue the reply");
    goto fail;
  }
  /* OWNERSHIP: the request leaves the table (JS cannot answer it again) and now
   * belongs to `f` until fd_reply_complete. */
  table_remove(a, idx);
  return queued;
fail:
  if (napi_delete_reference(env, f->done) != napi_ok)
    fprintf(stderr, "s3zfuse: could not delete a callback reference\n");
  free(f);
  return NULL;
}

/* replyWrite(id, count) */
static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  BEGIN(2, 1u << OP_WRITE);
  uint64_t count;
  if (!arg_u64(env, argv[1], &count) || count > r->len)
    return throw_type(env, "write count must be an integer between 0 and the request size");
  if (dead) fuse_reply_none(r->req);
  else fuse_reply_write(r->req, (size_t)count);
  return reply_end(env, a, idx, r);
}

/* replyEntry(id, attr: Float64Array, generation, attrTimeout, entryTimeout) */
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  BEGIN(5, 1u << OP_LOOKUP);
  double *v;
  double gen, at, et;
  if (!arg_f64array(env, argv[1], A_LEN, &v, NULL) || !arg_double(env, argv[2], &gen) ||
      !arg_double(env, argv[3], &at) || !arg_double(env, argv[4], &et))
    return throw_type(env, "bad entry reply");
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = (fuse_ino_t)v[A_INO];
  e.generation = (uint64_t)gen;
  e.attr_timeout = at;
  e.entry_timeout = et;
  vec_to_stat(v, &e.attr);
  if (dead) fuse_reply_none(r->req);
  else fuse_reply_entry(r->req, &e);
  return reply_end(env, a, idx, r);
}

/* replyAttr(id, attr: Float64Array, timeout) */
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  BEGIN(3, (1u << OP_GETATTR) | (1u << OP_SETATTR));
  double *v;
  double t;
  if (!arg_f64array(env, argv[1], A_LEN, &v, NULL) || !arg_double(env, argv[2], &t))
    return throw_type(env, "bad attr reply");
  struct stat st;
  vec_to_stat(v, &st);
  if (dead) fuse_reply_none(r->req);
  else fuse_reply_attr(r->req, &st, t);
  return reply_end(env, a, idx, r);
}

/* replyOpen(id, fh, flags: OPEN_*) for open and opendir. Returns true, false
 * (stale id) or 0 when the kernel refused the reply because the opener was
 * interrupted: then no release will come for `fh`, and JS must release it. */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  BEGIN(3, (1u << OP_OPEN) | (1u << OP_OPENDIR));
  uint64_t fh;
  uint32_t fl;
  if (!arg_u64(env, argv[1], &fh) || !arg_u32(env, argv[2], &fl))
    return throw_type(env, "bad open reply");
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = fh;
  fi.flags = r->flags;
  fi.direct_io = (fl & OPEN_DIRECT_IO) ? 1 : 0;
  fi.keep_cache = (fl & OPEN_KEEP_CACHE) ? 1 : 0;
  fi.nonseekable = (fl & OPEN_NONSEEKABLE) ? 1 : 0;
  fi.cache_readdir = (fl & OPEN_CACHE_READDIR) ? 1 : 0;
  int res = 0;
  if (dead) fuse_reply_none(r->req);
  else res = fuse_reply_open(r->req, &fi);
  napi_value out = reply_end(env, a, idx, r);
  if (!out || res != -ENOENT) return out;
  CHECK(napi_create_int32(env, 0, &out));
  return out;
}

/* replyStatfs(id, vec: Float64Array) */
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  BEGIN(2, 1u << OP_STATFS);
  double *v;
  if (!arg_f64array(env, argv[1], F_LEN, &v, NULL)) return throw_type(env, "bad statfs reply");
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = (unsigned long)v[F_BSIZE];
  st.f_frsize = (unsigned long)v[F_FRSIZE];
  st.f_blocks = (fsblkcnt_t)v[F_BLOCKS];
  st.f_bfree = (fsblkcnt_t)v[F_BFREE];
  st.f_bavail = (fsblkcnt_t)v[F_BAVAIL];
  st.f_files = (fsfilcnt_t)v[F_FILES];
  st.f_ffree = (fsfilcnt_t)v[F_FFREE];
  st.f_favail = (fsfilcnt_t)v[F_FAVAIL];
  st.f_fsid = (unsigned long)v[F_FSID];
  st.f_namemax = (unsigned long)v[F_NAMEMAX];
  if (dead) fuse_reply_none(r->req);
  else fuse_reply_statfs(r->req, &st);
  return reply_end(env, a, idx, r);
}

/* replyDir(id, names: string[], vec: Float64Array [ino, mode, nextOffset]*n).
 * Packs as many entries as fit in the request's size; the kernel asks again
 * from the last packed entry's next offset. Returns the number packed in
 * place of `true`. */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  BEGIN(3, 1u << OP_READDIR);
  bool is_arr = false;
  uint32_t n = 0;
  double *v;
  size_t vlen;
  if (napi_is_array(env, argv[1], &is_arr) != napi_ok || !is_arr ||
      napi_get_array_length(env, argv[1], &n) != napi_ok ||
      !arg_f64array(env, argv[2], 0, &v, &vlen) || vlen < (size_t)n * 3)
    return throw_type(env, "bad readdir reply");
  size_t cap = r->len;
  char *buf = malloc(cap ? cap : 1);
  if (!buf) return throw_errno(env, ENOMEM, "readdir reply");
  size_t used = 0;
  uint32_t packed = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value nv;
    char name[1024];
    size_t nl = 0;
    if (napi_get_element(env, argv[1], i, &nv) != napi_ok ||
        napi_get_value_string_utf8(env, nv, name, sizeof name, &nl) != napi_ok ||
        nl >= sizeof name - 1) {
      free(buf);
      return throw_type(env, "readdir names must be strings shorter than 1023 bytes");
    }
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_ino = (ino_t)v[i * 3];
    st.st_mode = (mode_t)v[i * 3 + 1];
    size_t need = fuse_add_direntry(r->req, buf + used, cap - used, name, &st,
                                    (off_t)v[i * 3 + 2]);
    if (need > cap - used) break;
    used += need;
    packed++;
  }
  if (dead) fuse_reply_none(r->req);
  else fuse_reply_buf(r->req, used ? buf : NULL, used);
  free(buf);
  napi_value res = reply_end(env, a, idx, r);
  if (!res) return NULL;
  napi_value out;
  CHECK(napi_create_uint32(env, packed, &out));
  return out;
}

/* ------------------------------------------------------------------------ */
/* session management (JS thread)                                           */

static void session_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session *s = data;
  /* Only free what is provably unused: a live loop still points at `s`. */
  if (s->destroyed || !s->thread_started) {
    direct_free(atomic_load(&s->direct));
    free(s);
  }
}

static bool get_session(napi_env env, napi_value v, session **out) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return false;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) return false;
  *out = p;
  return true;
}

static bool get_u32_prop(napi_env env, napi_value obj, const char *key, uint32_t *out) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return false;
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

/* mount(mountpoint: string, args: string[], cfg: {maxWrite, maxReadahead,
 *       maxBackground, congestionThreshold, threads, handlerMask, writeMode, spliceWrite},
 *       dispatch: Function) -> session external.
 * Throws an Error (with errno/code when known) if the mount fails. */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return throw_type(env, "mount(mountpoint, args, cfg, dispatch)");

  char mountpoint[4096];
  size_t mlen = 0;
  if (napi_get_value_string_utf8(env, argv[0], mountpoint, sizeof mountpoint, &mlen) != napi_ok ||
      mlen == 0 || mlen >= sizeof mountpoint - 1)
    return throw_type(env, "mountpoint must be a non-empty string");

  bool is_arr = false;
  uint32_t nargs = 0;
  if (napi_is_array(env, argv[1], &is_arr) != napi_ok || !is_arr ||
      napi_get_array_length(env, argv[1], &nargs) != napi_ok || nargs > 64)
    return throw_type(env, "args must be an array of strings");

  session *s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, ENOMEM, "mount");
  char **fargv = calloc(nargs + 2, sizeof(char *));
  char capture[LOG_CAPTURE_MAX];
  capture[0] = 0;
  struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
  bool mounted = false, tsfn_made = false;
  if (!fargv) {
    throw_errno(env, ENOMEM, "mount");
    goto fail;
  }
  fargv[0] = strdup("s3zmount");
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value el;
    size_t l = 0;
    CHECK_GOTO(napi_get_element(env, argv[1], i, &el));
    if (napi_get_value_string_utf8(env, el, NULL, 0, &l) != napi_ok) {
      throw_type(env, "args must be an array of strings");
      goto fail;
    }
    fargv[i + 1] = malloc(l + 1);
    if (!fargv[i + 1]) {
      throw_errno(env, ENOMEM, "mount");
      goto fail;
    }
    CHECK_GOTO(napi_get_value_string_utf8(env, el, fargv[i + 1], l + 1, &l));
  }
  uint32_t mask = 0, write_mode = 0, splice = 0;
  if (!get_u32_prop(env, argv[2], "maxWrite", &s->max_write) ||
      !get_u32_prop(env, argv[2], "maxReadahead", &s->max_readahead) ||
      !get_u32_prop(env, argv[2], "maxBackground", &s->max_background) ||
      !get_u32_prop(env, argv[2], "congestionThreshold", &s->congestion) ||
      !get_u32_prop(env, argv[2], "threads", &s->threads) ||
      !get_u32_prop(env, argv[2], "handlerMask", &mask) ||
      !get_u32_prop(env, argv[2], "writeMode", &write_mode) ||
      !get_u32_prop(env, argv[2], "spliceWrite", &splice)) {
    throw_type(env, "cfg must hold unsigned integers maxWrite, maxReadahead, maxBackground, "
                    "congestionThreshold, threads, handlerMask, writeMode, spliceWrite");
    goto fail;
  }
  if (write_mode > WRITE_LENT) {
    throw_type(env, "cfg.writeMode must be 0 (owned), 1 (borrowed) or 2 (lent)");
    goto fail;
  }
  s->mask = mask;
  s->write_mode = write_mode;
  s->splice_write = splice != 0;
  if (s->threads < 1) s->threads = 1;
  napi_valuetype ft;
  CHECK_GOTO(napi_typeof(env, argv[3], &ft));
  if (ft != napi_function) {
    throw_type(env, "dispatch must be a function");
    goto fail;
  }

  fargs.argc = (int)nargs + 1;
  fargs.argv = fargv;
  fargs.allocated = 0;

  log_capture = capture;
  log_capture_len = 0;
  s->se = fuse_session_new(&fargs, &ll_ops, sizeof ll_ops, s);
  if (!s->se) {
    log_capture = NULL;
    char msg[LOG_CAPTURE_MAX + 64];
    snprintf(msg, sizeof msg, "fuse_session_new failed%s%s", capture[0] ? ": " : "", capture);
    throw_errno(env, EINVAL, msg);
    goto fail;
  }
  errno = 0;
  if (fuse_session_mount(s->se, mountpoint) != 0) {
    int err = errno ? errno : EIO;
    log_capture = NULL;
    char msg[LOG_CAPTURE_MAX + 64];
    size_t cl = strlen(capture);
    while (cl && (capture[cl - 1] == '\n')) capture[--cl] = 0;
    snprintf(msg, sizeof msg, "fuse_session_mount failed%s%s", capture[0] ? ": " : "", capture);
    throw_errno(env, err, msg);
    goto fail;
  }
  log_capture = NULL;
  mounted = true;

  napi_value name;
  CHECK_GOTO(napi_create_string_utf8(env, "s3zfuse", NAPI_AUTO_LENGTH, &name));
  /* max_queue_size 0: unbounded, so worker threads never block on JS. */
  CHECK_GOTO(napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, s,
                                             call_js, &s->tsfn));
  tsfn_made = true;

  /* The loop thread (and libfuse's workers, which inherit the mask) must not
   * take the process's signals: Node handles them on its own thread. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int perr = pthread_create(&s->thread, NULL, loop_main, s);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (perr != 0) {
    throw_errno(env, perr, "pthread_create");
    goto fail;
  }
  s->thread_started = true;

  for (uint32_t i = 0; i <= nargs; i++) free(fargv[i]);
  free(fargv);
  fuse_opt_free_args(&fargs);

  napi_value ext;
  /* If this fails the loop runs with nobody to stop it; we can only
   * unmount by path from JS, so report it. */
  CHECK(napi_create_external(env, s, session_finalize, NULL, &ext));
  return ext;

fail:
  log_capture = NULL;
  if (tsfn_made && napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort) != napi_ok)
    fprintf(stderr, "s3zfuse: could not release the thread-safe function\n");
  if (mounted) fuse_session_unmount(s->se);
  if (s->se) fuse_session_destroy(s->se);
  if (fargv) {
    for (uint32_t i = 0; i <= nargs; i++) free(fargv[i]);
    free(fargv);
  }
  fuse_opt_free_args(&fargs);
  free(s);
  return NULL;
}

/* The session in argv[0] of a call taking `want` arguments (read into argv), or
 * NULL after throwing. */
static session *session_arg(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  session *s;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want ||
      !get_session(env, argv[0], &s)) {
    throw_type(env, "session expected");
    return NULL;
  }
  return s;
}

static napi_value undefined_value(napi_env env) {
  napi_value u;
  CHECK(napi_get_undefined(env, &u));
  return u;
}

/* destroy(session): after OP_ENDED and once JS has answered every request:
 * joins the loop thread, closes the device (lazy-unmounting if the mount is
 * still there) and frees libfuse's session. */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_arg(env, info, 1, argv);
  if (!s) return NULL;
  if (s->destroyed) return ret_false(env);
  if (!atomic_load(&s->dead)) return throw_type(env, "destroy() before the loop ended");
  long left = atomic_load(&s->outstanding);
  if (left != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "destroy() with %ld unanswered requests", left);
    return throw_type(env, msg);
  }
  if (s->thread_started) pthread_join(s->thread, NULL);
  fuse_session_unmount(s->se);
  fuse_session_destroy(s->se);
  s->se = NULL;
  s->destroyed = true;
  napi_value t;
  CHECK(napi_get_boolean(env, true, &t));
  return t;
}

/* markExiting(session): the process is exiting; worker threads stop handing
 * requests to JS (they answer ENOTCONN) and the loop thread leaves the TSFN
 * alone. */
static napi_value js_mark_exiting(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_arg(env, info, 1, argv);
  if (!s) return NULL;
  atomic_store(&s->exiting, true);
  return undefined_value(env);
}

/* refuse(session, errno): from now on new requests are answered `errno` by
 * the worker threads without reaching JS (0 lifts it). Used while the
 * session ends: the JS thread may then be blocked (a spawn whose child closes
 * a file of this mount on exec, waiting for FLUSH). */
static napi_value js_refuse(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  session *s = session_arg(env, info, 2, argv);
  if (!s) return NULL;
  uint32_t err;
  if (!arg_u32(env, argv[1], &err) || err >= 4096) return throw_type(env, "refuse(session, errno)");
  atomic_store(&s->refuse, (int)err);
  return undefined_value(env);
}

/* ------------------------------------------------------------------------ */
/* direct reads (s3zdirect.c): JS thread                                    */

/* The session's direct-read table, or NULL after throwing. */
static direct *direct_of(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  session *s = session_arg(env, info, want, argv);
  if (!s) return NULL;
  direct *d = atomic_load(&s->direct);
  if (!d) throw_type(env, "direct reads are not enabled on this session");
  return d;
}

/* directEnable(session, ino, blockSize, blockCount, fileBytes, mapLimit,
 * mapMinRead): from now on a read of `ino` within one block granted by
 * directGrant is answered by the worker thread that got it, from the file
 * registered for it (directFile): from a mapping of it when mapLimit > 0 and the
 * read is at least mapMinRead bytes (see s3zdirect.c), else by pread.
 * Once per session. */
static napi_value js_direct_enable(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  session *s = session_arg(env, info, 7, argv);
  if (!s) return NULL;
  uint64_t ino, bs, count, file_bytes, map_limit, map_min;
  if (!arg_u64(env, argv[1], &ino) || !arg_u64(env, argv[2], &bs) || !arg_u64(env, argv[3], &count) ||
      !arg_u64(env, argv[4], &file_bytes) || !arg_u64(env, argv[5], &map_limit) || !arg_u64(env, argv[6], &map_min))
    return throw_type(env, "directEnable(session, ino, blockSize, blockCount, fileBytes, mapLimit, mapMinRead)");
  if (atomic_load(&s->direct)) return throw_type(env, "direct reads are already enabled on this session");
  direct *d = direct_new(ino, bs, count, file_bytes, map_limit, map_min);
  if (!d) return throw_type(env, "directEnable: unsupported geometry (or no memory)");
  /* OWNERSHIP: the table belongs to the session from here; session_finalize frees it. */
  atomic_store_explicit(&s->direct, d, memory_order_release);
  return undefined_value(env);
}

/* directFile(session, file, fd): file number `file` of the layout is open as `fd`
 * (-1: none); the fd must stay open until directDisable has returned. */
static napi_value js_direct_file(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  direct *d = direct_of(env, info, 3, argv);
  if (!d) return NULL;
  uint64_t file;
  int32_t fd;
  if (!arg_u64(env, argv[1], &file) || napi_get_value_int32(env, argv[2], &fd) != napi_ok ||
      !direct_file(d, file, fd))
    return throw_type(env, "directFile(session, file, fd)");
  return undefined_value(env);
}

/* directGrant(session, index) -> true: the block may be read straight from its
 * file; false: the table is at its memory bound (reads of it stay with JS). */
static napi_value js_direct_grant(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  direct *d = direct_of(env, info, 2, argv);
  if (!d) return NULL;
  uint64_t index;
  if (!arg_u64(env, argv[1], &index)) return throw_type(env, "directGrant(session, index)");
  int err = direct_grant(d, index);
  if (err == EINVAL) return throw_type(env, "directGrant: index out of range");
  if (err && err != ENOSPC) return throw_errno(env, err, "directGrant");
  napi_value out;
  CHECK(napi_get_boolean(env, err == 0, &out));
  return out;
}

/* directRevoke(session, index): returns once no thread reads the block's file
 * range; a read that comes later goes to JS. */
static napi_value js_direct_revoke(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  direct *d = direct_of(env, info, 2, argv);
  if (!d) return NULL;
  uint64_t index;
  if (!arg_u64(env, argv[1], &index)) return throw_type(env, "directRevoke(session, index)");
  direct_revoke(d, index);
  return undefined_value(env);
}

/* directDisable(session): returns once no direct read runs; none ever starts again. */
static napi_value js_direct_disable(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  direct *d = direct_of(env, info, 1, argv);
  if (!d) return NULL;
  direct_disable(d);
  return undefined_value(env);
}

/* directDrain(session) -> Float64Array of blocks read directly since the last call
 * (each at most once per call; lossy when many). */
static napi_value js_direct_drain(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  direct *d = direct_of(env, info, 1, argv);
  if (!d) return NULL;
  double tmp[512];
  size_t n = direct_drain(d, tmp, sizeof tmp / sizeof tmp[0]);
  napi_value out;
  CHECK(make_f64(env, tmp, n, &out));
  return out;
}

/* directCounts(session) -> Float64Array [reads, bytes] answered directly, and
 * the times the mapped pages were let go of. */
static napi_value js_direct_counts(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  direct *d = direct_of(env, info, 1, argv);
  if (!d) return NULL;
  uint64_t reads, bytes, drops;
  direct_counts(d, &reads, &bytes, &drops);
  double v[3] = {(double)reads, (double)bytes, (double)drops};
  napi_value out;
  CHECK(make_f64(env, v, 3, &out));
  return out;
}

/* mountFs(source, target, fstype): mount(2) without options, for root (used
 * for fusectl). Throws with errno/code. */
static napi_value js_mount_fs(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char src[256], target[4096], type[64];
  size_t l1 = 0, l2 = 0, l3 = 0;
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], src, sizeof src, &l1) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], target, sizeof target, &l2) != napi_ok ||
      napi_get_value_string_utf8(env, argv[2], type, sizeof type, &l3) != napi_ok || l1 == 0 ||
      l2 == 0 || l3 == 0 || l1 >= sizeof src - 1 || l2 >= sizeof target - 1 ||
      l3 >= sizeof type - 1)
    return throw_type(env, "mountFs(source: string, target: string, fstype: string)");
  if (mount(src, target, type, 0, NULL) != 0) {
    char msg[4400];
    snprintf(msg, sizeof msg, "mount %s on %s", type, target);
    return throw_errno(env, errno, msg);
  }
  return undefined_value(env);
}

/* outstanding(session): fuse requests handed to JS and not yet answered. */
static napi_value js_outstanding(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  session *s = session_arg(env, info, 1, argv);
  if (!s) return NULL;
  napi_value out;
  CHECK(napi_create_double(env, (double)atomic_load(&s->outstanding), &out));
  return out;
}

/* umount(path, flags): umount2(2), for root. Throws with errno/code. */
static napi_value js_umount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  size_t l = 0;
  uint32_t flags = 0;
  if (argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &l) != napi_ok || l == 0 ||
      l >= sizeof path - 1 || !arg_u32(env, argv[1], &flags))
    return throw_type(env, "umount(path: string, flags: number)");
  if (umount2(path, (int)flags) != 0) {
    char msg[4200];
    snprintf(msg, sizeof msg, "umount2 %s", path);
    return throw_errno(env, errno, msg);
  }
  return undefined_value(env);
}

static void addon_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  addon *a = data;
  free(a->slots);
  free(a->gens);
  free(a->free_list);
  free(a);
}

static napi_value set_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  CHECK(napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, name, fn));
  return fn;
}

static napi_value set_int(napi_env env, napi_value obj, const char *name, int64_t v) {
  napi_value n;
  CHECK(napi_create_int64(env, v, &n));
  CHECK(napi_set_named_property(env, obj, name, n));
  return n;
}

static napi_value init(napi_env env, napi_value exports) {
  addon *a = calloc(1, sizeof *a);
  if (!a) return throw_errno(env, ENOMEM, "s3zfuse init");
  napi_status st = napi_set_instance_data(env, a, addon_finalize, NULL);
  if (st != napi_ok) {
    free(a);
    throw_status(env, st, "napi_set_instance_data");
    return NULL;
  }
  fuse_set_log_func(log_func);
  if (!set_fn(env, exports, "mount", js_mount) || !set_fn(env, exports, "destroy", js_destroy) ||
      !set_fn(env, exports, "markExiting", js_mark_exiting) ||
      !set_fn(env, exports, "outstanding", js_outstanding) ||
      !set_fn(env, exports, "umount", js_umount) ||
      !set_fn(env, exports, "refuse", js_refuse) ||
      !set_fn(env, exports, "mountFs", js_mount_fs) ||
      !set_fn(env, exports, "replyErr", js_reply_err) ||
      !set_fn(env, exports, "replyBuf", js_reply_buf) ||
      !set_fn(env, exports, "replyFd", js_reply_fd) ||
      !set_fn(env, exports, "replyWrite", js_reply_write) ||
      !set_fn(env, exports, "replyEntry", js_reply_entry) ||
      !set_fn(env, exports, "replyAttr", js_reply_attr) ||
      !set_fn(env, exports, "replyOpen", js_reply_open) ||
      !set_fn(env, exports, "replyStatfs", js_reply_statfs) ||
      !set_fn(env, exports, "replyDir", js_reply_dir) ||
      !set_fn(env, exports, "directEnable", js_direct_enable) ||
      !set_fn(env, exports, "directFile", js_direct_file) ||
      !set_fn(env, exports, "directGrant", js_direct_grant) ||
      !set_fn(env, exports, "directRevoke", js_direct_revoke) ||
      !set_fn(env, exports, "directDisable", js_direct_disable) ||
      !set_fn(env, exports, "directDrain", js_direct_drain) ||
      !set_fn(env, exports, "directCounts", js_direct_counts))
    return NULL;
  napi_value c;
  CHECK(napi_create_object(env, &c));
  if (!set_int(env, c, "FUSE_MAJOR_VERSION", FUSE_MAJOR_VERSION) ||
      !set_int(env, c, "FUSE_MINOR_VERSION", FUSE_MINOR_VERSION) ||
      !set_int(env, c, "FUSE_USE_VERSION", FUSE_USE_VERSION) ||
      !set_int(env, c, "MNT_DETACH", MNT_DETACH) || !set_int(env, c, "MNT_FORCE", MNT_FORCE) ||
      !set_int(env, c, "ATTR_LEN", A_LEN) || !set_int(env, c, "STATFS_LEN", F_LEN))
    return NULL;
  CHECK(napi_set_named_property(env, exports, "constants", c));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

_Static_assert(C_LEN <= 10 && S_LEN <= 10, "request.vec too small");
