/*
 * nullfs: the C reference for `npm run bench:fuse`. Same semantics as the JS
 * no-op filesystem in scripts/bench-fuse/jsfs.js: a root directory holding
 * one file, "data", of a fixed virtual size; reads return a byte pattern
 * (0xa5: real pages, not the kernel's zero page), writes are
 * acknowledged and dropped; the file is opened with direct_io so the page
 * cache does not hide the filesystem. libfuse3 low-level API, multi-threaded
 * loop, 1 MiB requests.
 *
 * usage: nullfs MOUNTPOINT [THREADS]
 * Runs in the foreground; prints "ready" once INIT is done; SIGTERM/SIGINT
 * end the loop and unmount.
 */
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024u * 1024u)
#define FILE_SIZE (64ull * 1024 * MIB)
#define FILE_INO 2
#define FILE_NAME "data"

static char pattern[MIB];

static void fill_attr(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0644;
    st->st_nlink = 1;
    st->st_size = FILE_SIZE;
    st->st_blocks = FILE_SIZE / 512;
  }
  st->st_blksize = 4096;
}

static void nf_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->max_write = MIB;
  conn->max_readahead = MIB;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  printf("ready\n");
  fflush(stdout);
}

static void nf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (parent != FUSE_ROOT_ID || strcmp(name, FILE_NAME) != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = FILE_INO;
  e.attr_timeout = 1;
  e.entry_timeout = 1;
  fill_attr(FILE_INO, &e.attr);
  fuse_reply_entry(req, &e);
}

static void nf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  if (ino != FUSE_ROOT_ID && ino != FILE_INO) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  fill_attr(ino, &st);
  fuse_reply_attr(req, &st, 1);
}

static void nf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  (void)attr;
  (void)to_set;
  nf_getattr(req, ino, fi);
}

static void nf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != FILE_INO) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

static void nf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  if ((unsigned long long)off >= FILE_SIZE) size = 0;
  else if (off + size > FILE_SIZE) size = FILE_SIZE - off;
  if (size > MIB) size = MIB;
  fuse_reply_buf(req, pattern, size);
}

static void nf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  (void)ino;
  (void)buf;
  (void)off;
  (void)fi;
  fuse_reply_write(req, size);
}

static void nf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  (void)fi;
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  char buf[1024];
  size_t used = 0;
  const char *names[] = {".", "..", FILE_NAME};
  fuse_ino_t inos[] = {FUSE_ROOT_ID, FUSE_ROOT_ID, FILE_INO};
  if (size > sizeof buf) size = sizeof buf;
  for (off_t i = off; i < 3; i++) {
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_ino = inos[i];
    st.st_mode = i < 2 ? S_IFDIR : S_IFREG;
    size_t need = fuse_add_direntry(req, buf + used, size - used, names[i], &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
}

static const struct fuse_lowlevel_ops ops = {
    .init = nf_init,
    .lookup = nf_lookup,
    .getattr = nf_getattr,
    .setattr = nf_setattr,
    .open = nf_open,
    .read = nf_read,
    .write = nf_write,
    .readdir = nf_readdir,
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MOUNTPOINT [THREADS]\n", argv[0]);
    return 2;
  }
  int threads = argc > 2 ? atoi(argv[2]) : 16;
  memset(pattern, 0xa5, sizeof pattern);
  char *fargv[] = {argv[0], "-o", "fsname=nullfs,subtype=nullfs", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (!se) return 1;
  int ret = 1;
  if (fuse_set_signal_handlers(se) != 0) goto out_destroy;
  if (fuse_session_mount(se, argv[1]) != 0) goto out_signals;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, threads);
  fuse_loop_cfg_set_idle_threads(cfg, threads);
  ret = fuse_session_loop_mt(se, cfg) != 0;
  fuse_loop_cfg_destroy(cfg);
  fuse_session_unmount(se);
out_signals:
  fuse_remove_signal_handlers(se);
out_destroy:
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  return ret;
}
