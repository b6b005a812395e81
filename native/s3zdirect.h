/*
 * Direct reads: a libfuse worker thread answers a read of a granted block
 * itself, from the file that holds it, without waking the JS thread.
 * Mechanism only (s3zdirect.c has the invariants); which blocks are granted,
 * and when they stop being, is decided in JS (src/store/cache.ts).
 */
#ifndef S3Z_DIRECT_H
#define S3Z_DIRECT_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct direct direct;

/* Block i of inode `ino` lies at byte (i * block_size) % file_bytes of file
 * number (i * block_size) / file_bytes. map_limit > 0: reads of at least map_min
 * bytes are answered from mappings of the files, whose resident pages are let go
 * of after every map_limit bytes so answered; the others, and all with
 * map_limit 0, by pread. NULL on bad geometry or no memory. */
direct *direct_new(uint64_t ino, uint64_t block_size, uint64_t block_count, uint64_t file_bytes, uint64_t map_limit, uint64_t map_min);
/* Only once no worker thread can call direct_read any more. */
void direct_free(direct *d);

/* Any thread below: JS thread. */
bool direct_file(direct *d, uint64_t file, int fd);
/* 0; ENOSPC when the table is at its memory bound (the block stays with JS);
 * ENOMEM; EINVAL (index out of range). */
int direct_grant(direct *d, uint64_t index);
/* Returns once no thread reads the block's file range; none starts after. */
void direct_revoke(direct *d, uint64_t index);
/* Returns once no direct read runs; none starts ever again, and no mapping is left. */
void direct_disable(direct *d);
/* Moves up to `cap` indices of blocks read directly since the last call into `out`. */
size_t direct_drain(direct *d, double *out, size_t cap);
/* Reads and bytes answered here; times the mapped pages were let go of. */
void direct_counts(direct *d, uint64_t *reads, uint64_t *bytes, uint64_t *drops);

/* Worker threads: true if the request was answered here; false: nothing was
 * sent, the caller hands it to JS as usual. */
bool direct_read(direct *d, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);

/* s3zfuse.c's pooled reply buffers (payload_alloc never returns NULL for a
 * size it pools unless memory is exhausted). */
void *payload_alloc(size_t size);
void payload_free(void *p, size_t size);

#endif
