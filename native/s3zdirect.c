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
 *   - A read is answered here only if it lies within one granted block and its
 *     file holds every byte of it: a read past the file's end, or a failed
 *     pread, sends nothing, and the request goes to JS (which answers holes,
 *     errors and everything else).
 *   - Mapped files (map_limit > 0): the first file registered under each file
 *     number is mapped read-only, whole, and a read of at least map_min bytes is
 *     answered by handing the kernel a pointer into the mapping: the kernel
 *     copies the file's pages straight into the reader's buffer, with no copy in
 *     user space (a pread into a buffer, then the writev, copied every byte
 *     twice). This thread never touches the mapping itself, so a page the kernel
 *     cannot read ends that request with EIO, never a signal. Each such read
 *     checks (fstat) that its fd is still the mapped file (st_dev, st_ino) and
 *     holds the range; otherwise it goes by pread. The pages the kernel maps
 *     count as this process's resident file pages: once `map_limit` bytes were
 *     answered so since the last time, the answering thread unmaps those pages
 *     (MADV_DONTNEED; the page cache keeps them), which bounds them near
 *     map_limit. A mapping lives until direct_disable (after the drain) or
 *     direct_free.
 *   - direct_disable clears `on` and waits for `active` (threads inside
 *     direct_read) to drain: after it, no file descriptor registered here is
 *     read again, and no mapping is left, so JS may close them.
 */
#include "s3zdirect.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
  /* Mappings (map_limit > 0): maps[f] is read by worker threads; owned[f] (what
   * to unmap) and map_tried[f] only by the JS thread, and by direct_free. */
  _Atomic(char *) maps[MAX_FILES];
  bool map_tried[MAX_FILES]; /* one mmap per file number, whether it worked or not */
  dev_t map_dev[MAX_FILES]; /* which file was mapped: set before maps[f] is published */
  ino_t map_ino[MAX_FILES];
  char *owned[MAX_FILES];
  unsigned nfiles; /* files registered: indices below it (JS thread) */
  uint64_t map_limit, map_min; /* reads below map_min go by pread */
  atomic_ullong mapped_since; /* bytes answered from mappings since the last unmap */
  atomic_ullong drops;        /* times their pages were let go */
  atomic_bool on;
  atomic_long active; /* threads inside direct_read */
  atomic_ullong reads, bytes;
  pthread_mutex_t touch_lock;
  double touched[TOUCH_RING]; /* block indices (exact: < 2^53) */
  size_t ntouched;
};

direct *direct_new(uint64_t ino, uint64_t block_size, uint64_t block_count, uint64_t file_bytes, uint64_t map_limit, uint64_t map_min) {
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
  d->map_limit = map_limit;
  d->map_min = map_min;
  for (unsigned i = 0; i < MAX_FILES; i++) atomic_init(&d->fds[i], -1);
  atomic_init(&d->on, true);
  return d;
}

/* Only when no thread can read maps[] any more (after the drain of disable, or in free). */
static void unmap_all(direct *d) {
  for (unsigned f = 0; f < d->nfiles; f++) {
    atomic_store(&d->maps[f], NULL);
    /* OWNERSHIP: the mapping made in direct_file ends here. */
    if (d->owned[f]) munmap(d->owned[f], d->file_bytes);
    d->owned[f] = NULL;
  }
}

void direct_free(direct *d) {
  if (!d) return;
  unmap_all(d);
  for (uint64_t i = 0; i < d->nchunks; i++) free(atomic_load(&d->chunks[i]));
  free(d->chunks);
  pthread_mutex_destroy(&d->touch_lock);
  free(d);
}

bool direct_file(direct *d, uint64_t file, int fd) {
  if (file >= MAX_FILES || fd < -1) return false;
  if (file >= d->nfiles) d->nfiles = (unsigned)file + 1;
  /* Mapped once per file number: another file registered later under it is read by
   * pread (can_map compares st_dev/st_ino), so no mapping changes under a reader. */
  if (d->map_limit > 0 && fd >= 0 && !d->map_tried[file] && atomic_load(&d->on)) {
    d->map_tried[file] = true;
    struct stat st;
    void *m = fstat(fd, &st) == 0 ? mmap(NULL, d->file_bytes, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    /* A file that cannot be mapped (address space, a filesystem without mmap) is read by pread. */
    if (m != MAP_FAILED) {
      d->map_dev[file] = st.st_dev;
      d->map_ino[file] = st.st_ino;
      /* OWNERSHIP: the mapping belongs to the table until unmap_all. */
      d->owned[file] = m;
      atomic_store_explicit(&d->maps[file], (char *)m, memory_order_release);
    }
  }
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
  /* Readers hold the count only across one pread, or one mapped reply (the page cache, or one disk read). */
  while (atomic_load(w) & W_READERS) sched_yield();
}

void direct_disable(direct *d) {
  atomic_store(&d->on, false);
  while (atomic_load(&d->active) > 0) sched_yield();
  unmap_all(d);
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

void direct_counts(direct *d, uint64_t *reads, uint64_t *bytes, uint64_t *drops) {
  *drops = atomic_load(&d->drops);
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

/* Before the reply: whoever the reply wakes sees it counted. */
static void count_read(direct *d, word *w, uint64_t index, size_t size) {
  note_touched(d, w, index);
  atomic_fetch_add(&d->reads, 1);
  atomic_fetch_add(&d->bytes, size);
}

/* Lets go of the pages the kernel mapped for mapped answers (see the invariants). */
static void drop_mapped_pages(direct *d) {
  for (unsigned f = 0; f < MAX_FILES; f++) {
    char *m = atomic_load(&d->maps[f]);
    if (m) madvise(m, d->file_bytes, MADV_DONTNEED);
  }
  atomic_fetch_add(&d->drops, 1);
}

/* True when `fd` is still the file mapped as file `f` and holds [at, at+size): past its
 * end the kernel could not read the mapping, and would answer EIO. */
static bool can_map(direct *d, uint64_t f, int fd, uint64_t at, size_t size) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != d->map_dev[f] || st.st_ino != d->map_ino[f] || st.st_size < 0 ||
      (uint64_t)st.st_size < at + size)
    return false;
  return true;
}

/* Counts bytes answered from mappings; past map_limit, lets go of their pages. */
static void account_mapped(direct *d, size_t size) {
  uint64_t before = atomic_fetch_add(&d->mapped_since, size);
  /* Exactly one thread sees the count cross the limit. */
  if (before < d->map_limit && before + size >= d->map_limit) {
    atomic_fetch_sub(&d->mapped_since, before + size);
    drop_mapped_pages(d);
  }
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
    bool whole = false, mapped = false;
    if (atomic_fetch_add(w, 1) & W_GRANTED) {
      uint64_t file = (uint64_t)off / d->file_bytes;
      uint64_t at = (uint64_t)off % d->file_bytes;
      int fd = atomic_load(&d->fds[file]);
      char *map = atomic_load_explicit(&d->maps[file], memory_order_acquire);
      /* The reply is sent while this thread counts as a reader: revoke waits for it. */
      if (fd >= 0 && map && size >= d->map_min && can_map(d, file, fd, at, size)) {
        count_read(d, w, index, size);
        fuse_reply_buf(req, map + at, size);
        sent = mapped = true;
      } else if (fd >= 0 && (buf = payload_alloc(size)) != NULL) {
        /* OWNERSHIP: buf is ours from payload_alloc to payload_free below. */
        ssize_t n;
        do n = pread(fd, buf, size, (off_t)at);
        while (n < 0 && errno == EINTR);
        whole = n >= 0 && (size_t)n == size;
      }
    }
    atomic_fetch_sub(w, 1);
    if (mapped) account_mapped(d, size);
    if (whole) {
      count_read(d, w, index, size);
      fuse_reply_buf(req, buf, size);
      sent = true;
    }
    if (buf) payload_free(buf, size);
  }
  atomic_fetch_sub(&d->active, 1);
  return sent;
}
