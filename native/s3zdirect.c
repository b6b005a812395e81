/*
 * Direct reads (see s3zdirect.h): the table of granted blocks and the read
 * that worker threads run from it.
 *
 * State, per block: one atomic word, GRANTED | TOUCHED | a count of the worker
 * threads reading the block's file range right now (low 16 bits; there are at
 * most a few hundred worker threads). The table is cut into chunks of 4096
 * blocks, allocated by the JS thread on the first grant inside them (at most
 * MAX_CHUNKS: then a grant is refused and those reads stay with JS), published
 * with release order and freed only by direct_free.
 *
 * Invariants
 *   - A reader adds itself to the block's count before it tests GRANTED and
 *     takes itself off once its pread has returned. direct_revoke clears
 *     GRANTED and then waits for the count to drain (all on one atomic word, so
 *     in one total order): when it returns, no thread reads that range, and a
 *     reader that comes later sees GRANTED clear. JS may then punch or rewrite
 *     the range.
 *   - A read is answered here only if it lies within one granted block and one
 *     pread returned every byte: a short or failed read sends nothing, and the
 *     request goes to JS (which answers holes, errors and everything else).
 *   - direct_disable clears `on` and waits for `active` (threads inside
 *     direct_read) to drain: after it, no file descriptor registered here is
 *     read again, so JS may close them.
 */
#include "s3zdirect.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK_BITS 12u
#define CHUNK ((uint64_t)1 << CHUNK_BITS)
#define W_GRANTED 0x80000000u
#define W_TOUCHED 0x40000000u
#define W_READERS 0x0000ffffu
#define MAX_FILES 8192u /* 2^53 bytes of device in files of at least 2^40 */
#define TOUCH_RING 4096u
#define MAX_BLOCKS ((uint64_t)1 << 32) /* 1 Mi chunk pointers at most (8 MiB, untouched until used) */
#define MAX_CHUNKS 4096u                   /* 64 MiB of chunks: then grants are refused */

typedef _Atomic uint32_t word;

struct direct {
  uint64_t ino, block_size, block_count, file_bytes, nchunks;
  unsigned allocated; /* chunks allocated (JS thread only) */
  _Atomic(word *) *chunks;
  atomic_int fds[MAX_FILES]; /* -1: not registered */
  atomic_bool on;
  atomic_long active; /* threads inside direct_read */
  atomic_ullong reads, bytes;
  pthread_mutex_t touch_lock;
  double touched[TOUCH_RING]; /* block indices (exact: < 2^53) */
  size_t ntouched;
};

direct *direct_new(uint64_t ino, uint64_t block_size, uint64_t block_count, uint64_t file_bytes) {
  if (block_size == 0 || block_count == 0 || block_count > MAX_BLOCKS || file_bytes == 0 ||
      file_bytes % block_size != 0 || (block_count * block_size + file_bytes - 1) / file_bytes > MAX_FILES)
    return NULL;
  direct *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->nchunks = (block_count + CHUNK - 1) >> CHUNK_BITS;
  d->chunks = calloc(d->nchunks, sizeof *d->chunks);
  if (!d->chunks || pthread_mutex_init(&d->touch_lock, NULL) != 0) {
    free(d->chunks);
    free(d);
    return NULL;
  }
  d->ino = ino;
  d->block_size = block_size;
  d->block_count = block_count;
  d->file_bytes = file_bytes;
  for (unsigned i = 0; i < MAX_FILES; i++) atomic_init(&d->fds[i], -1);
  atomic_init(&d->on, true);
  return d;
}

void direct_free(direct *d) {
  if (!d) return;
  for (uint64_t i = 0; i < d->nchunks; i++) free(atomic_load(&d->chunks[i]));
  free(d->chunks);
  pthread_mutex_destroy(&d->touch_lock);
  free(d);
}

bool direct_file(direct *d, uint64_t file, int fd) {
  if (file >= MAX_FILES || fd < -1) return false;
  atomic_store(&d->fds[file], fd);
  return true;
}

static word *entry(direct *d, uint64_t index) {
  word *chunk = atomic_load_explicit(&d->chunks[index >> CHUNK_BITS], memory_order_acquire);
  return chunk ? &chunk[index & (CHUNK - 1)] : NULL;
}

int direct_grant(direct *d, uint64_t index) {
  if (index >= d->block_count) return EINVAL;
  word *w = entry(d, index);
  if (!w) {
    if (d->allocated >= MAX_CHUNKS) return ENOSPC;
    /* OWNERSHIP: the chunk belongs to the table from here until direct_free. Only
     * the JS thread allocates, so no other thread can publish this slot meanwhile. */
    word *chunk = calloc(CHUNK, sizeof *chunk);
    if (!chunk) return ENOMEM;
    d->allocated++;
    atomic_store_explicit(&d->chunks[index >> CHUNK_BITS], chunk, memory_order_release);
    w = &chunk[index & (CHUNK - 1)];
  }
  atomic_fetch_or(w, W_GRANTED);
  return 0;
}

void direct_revoke(direct *d, uint64_t index) {
  if (index >= d->block_count) return;
  word *w = entry(d, index);
  if (!w) return;
  atomic_fetch_and(w, ~W_GRANTED);
  /* Readers hold the count only across one pread (the page cache, or one disk read). */
  while (atomic_load(w) & W_READERS) sched_yield();
}

void direct_disable(direct *d) {
  atomic_store(&d->on, false);
  while (atomic_load(&d->active) > 0) sched_yield();
}

size_t direct_drain(direct *d, double *out, size_t cap) {
  pthread_mutex_lock(&d->touch_lock);
  size_t n = d->ntouched < cap ? d->ntouched : cap;
  for (size_t i = 0; i < n; i++) out[i] = d->touched[i];
  /* What did not fit stays for the next call. */
  for (size_t i = n; i < d->ntouched; i++) d->touched[i - n] = d->touched[i];
  d->ntouched -= n;
  pthread_mutex_unlock(&d->touch_lock);
  /* Cleared after the copy: a read in between only sets it again. */
  for (size_t i = 0; i < n; i++) {
    word *w = entry(d, (uint64_t)out[i]);
    if (w) atomic_fetch_and(w, ~W_TOUCHED);
  }
  return n;
}

void direct_counts(direct *d, uint64_t *reads, uint64_t *bytes) {
  *reads = atomic_load(&d->reads);
  *bytes = atomic_load(&d->bytes);
}

static void note_touched(direct *d, word *w, uint64_t index) {
  if (atomic_fetch_or(w, W_TOUCHED) & W_TOUCHED) return; /* already queued */
  pthread_mutex_lock(&d->touch_lock);
  /* A full ring drops the index: recency is a hint; the bit stays set until a
   * drain, so the block is queued again only after JS has seen a later one. */
  if (d->ntouched < TOUCH_RING) d->touched[d->ntouched++] = (double)index;
  else atomic_fetch_and(w, ~W_TOUCHED);
  pthread_mutex_unlock(&d->touch_lock);
}

bool direct_read(direct *d, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  if (ino != d->ino || size == 0 || off < 0) return false;
  uint64_t index = (uint64_t)off / d->block_size;
  if (index >= d->block_count || ((uint64_t)off + size - 1) / d->block_size != index) return false;
  atomic_fetch_add(&d->active, 1);
  bool sent = false;
  word *w = atomic_load(&d->on) ? entry(d, index) : NULL;
  if (w) {
    char *buf = NULL;
    bool whole = false;
    if (atomic_fetch_add(w, 1) & W_GRANTED) {
      uint64_t file = (uint64_t)off / d->file_bytes;
      int fd = atomic_load(&d->fds[file]);
      /* OWNERSHIP: buf is ours from payload_alloc to payload_free below. */
      if (fd >= 0 && (buf = payload_alloc(size)) != NULL) {
        ssize_t n;
        do n = pread(fd, buf, size, (off_t)((uint64_t)off % d->file_bytes));
        while (n < 0 && errno == EINTR);
        whole = n >= 0 && (size_t)n == size;
      }
    }
    atomic_fetch_sub(w, 1);
    if (whole) {
      note_touched(d, w, index);
      atomic_fetch_add(&d->reads, 1);
      atomic_fetch_add(&d->bytes, size);
      fuse_reply_buf(req, buf, size);
      sent = true;
    }
    if (buf) payload_free(buf, size);
  }
  atomic_fetch_sub(&d->active, 1);
  return sent;
}
