/* libFuzzer harness: the readers of a dataset folder written by another process or tampered with.
 * Byte 0 picks the target:
 *  even: the rest is a _SUCCESS written into a fixed folder of part files; fn_dataset_files reads it
 *        (byte 0 bit 1: FN_DATASET_UNCOMMITTED; bit 2: the folder also holds a folder and a FIFO named like
 *        parts, which must be refused).
 *  odd:  the rest is [u16 LE length A][A: the previous manifest of shard 1/2][B: the manifest of shard 2/2];
 *        fn_dataset_write of shard 1/2 (no inputs) reads both (resume note, commit), then fn_dataset_files
 *        reads the _SUCCESS it may have written.
 * The folders live in /dev/shm. The model is opened once (FRUITNET_WEIGHTS, else weights/resnet50.fnw).
 * With FUZZ_DATASET_SEEDS=DIR set, writes real seeds into DIR and exits. */
#include "fruitnet.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64], fixed[96], odd[96], ds[96];
static fn_model *model;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p), 0;
}
static void rm_tree(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }
static void cleanup(void)
{
    rm_tree(root);
    fn_model_close(model);
}

static int put(const char *dir, const char *name, const void *b, size_t n)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(b, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static char *slurp(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    char *b = malloc(1 << 20);
    *n = b ? fread(b, 1, 1 << 20, f) : 0;
    fclose(f);
    return b;
}

static int write_shard(int k, fn_dataset_report *rep, fn_error *e)
{
    fn_inputs *in;
    if (fn_inputs_new(&in, e) != FN_OK)
        return -1;
    int rc = fn_inputs_finish(in, k, 2, NULL, NULL, e);
    fn_dataset_options o = {.part_size = 4, .shard_k = k, .shard_n = 2, .codec = FN_CODEC_UNCOMPRESSED};
    if (!rc)
        rc = fn_dataset_write(ds, model, in, &o, NULL, rep, e);
    fn_inputs_free(in);
    return rc;
}

static void seeds(const char *out)
{
    fn_dataset_report rep;
    fn_error e;
    if (write_shard(2, &rep, &e) || write_shard(1, &rep, &e) || !rep.committed) {
        fprintf(stderr, "fuzz_dataset: seeds: %s\n", e.msg);
        exit(1);
    }
    size_t n1, n2, ns;
    char p[256];
    snprintf(p, sizeof p, "%s/_manifest-s00001of00002.tsv", ds);
    char *m1 = slurp(p, &n1);
    snprintf(p, sizeof p, "%s/_manifest-s00002of00002.tsv", ds);
    char *m2 = slurp(p, &n2);
    snprintf(p, sizeof p, "%s/_SUCCESS", ds);
    char *ok = slurp(p, &ns);
    char *b = malloc(3 + n1 + n2);
    b[0] = 1, b[1] = (char)(n1 & 255), b[2] = (char)(n1 >> 8);
    memcpy(b + 3, m1, n1);
    memcpy(b + 3 + n1, m2, n2);
    put(out, "manifests", b, 3 + n1 + n2);
    b[0] = 0;
    memcpy(b + 1, ok, ns);
    put(out, "success_dataset", b, 1 + ns); /* names parts absent from the fixed folder */
    static const char good[] = "\0fruitnet-dataset\t1\npart-00000.parquet\t10\t1\npart-00001.parquet\t20\t2\n";
    put(out, "success_fixed", good, sizeof good - 1);
    static const char spark[] = "\0";
    put(out, "success_empty", spark, 1);
    static const char odd1[] = "\4fruitnet-dataset\t1\npart-00000.parquet\t10\t1\n";
    put(out, "success_odd", odd1, sizeof odd1 - 1);
    free(m1), free(m2), free(ok), free(b);
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(root, sizeof root, "/dev/shm/fuzz-dataset-%d", (int)getpid());
    snprintf(fixed, sizeof fixed, "%s/fixed", root);
    snprintf(odd, sizeof odd, "%s/odd", root);
    snprintf(ds, sizeof ds, "%s/ds", root);
    if (mkdir(root, 0700) != 0 || mkdir(fixed, 0700) != 0 || mkdir(odd, 0700) != 0)
        abort();
    atexit(cleanup);
    /* the fixed folder: two parts, a hidden one, a temporary, a foreign file, a folder named like a part */
    if (put(fixed, "part-00000.parquet", "0123456789", 10) || put(fixed, "part-00001.parquet", "01234567890123456789", 20) ||
        put(fixed, ".part-00002.parquet", "x", 1) || put(fixed, "part-00003.parquet.tmp.1", "x", 1) ||
        put(fixed, "_manifest-s00001of00001.tsv", "x", 1) || put(fixed, "README", "x", 1))
        abort();
    /* the odd folder: a part beside a folder and a FIFO named like parts */
    char p[160];
    snprintf(p, sizeof p, "%s/sub.parquet", odd);
    if (put(odd, "part-00000.parquet", "0123456789", 10) || mkdir(p, 0700))
        abort();
    snprintf(p, sizeof p, "%s/part-00001.parquet", odd);
    if (mkfifo(p, 0600))
        abort();
    const char *w = getenv("FRUITNET_WEIGHTS");
    fn_error e;
    if (fn_model_open(w ? w : "weights/resnet50.fnw", NULL, &model, &e) != FN_OK) {
        fprintf(stderr, "fuzz_dataset: %s\n", e.msg);
        abort();
    }
    const char *s = getenv("FUZZ_DATASET_SEEDS");
    if (s)
        seeds(s);
    return 0;
}

static void check_files(const char *dir, int flags)
{
    char **files;
    int n;
    fn_error e;
    if (fn_dataset_files(dir, flags, &files, &n, &e) == FN_OK) {
        size_t dl = strlen(dir);
        for (int i = 0; i < n; i++) {
            struct stat st; /* inside the folder, existing, a regular .parquet file */
            if (strncmp(files[i], dir, dl) || files[i][dl] != '/' || strchr(files[i] + dl + 1, '/') ||
                stat(files[i], &st) != 0 || !S_ISREG(st.st_mode))
                abort();
        }
        fn_free_list(files, n);
    } else if (!e.msg[0] || !strstr(e.msg, dir)) { /* an error names the folder or its file */
        fprintf(stderr, "error without the folder: %s\n", e.msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!(data[0] & 1)) {
        const char *dir = data[0] & 4 ? odd : fixed;
        if (put(dir, "_SUCCESS", data + 1, size - 1))
            abort();
        check_files(dir, data[0] & 2 ? FN_DATASET_UNCOMMITTED : 0);
        return 0;
    }
    if (size < 3)
        return 0;
    size_t na = (size_t)data[1] | (size_t)data[2] << 8;
    if (na > size - 3)
        na = size - 3;
    rm_tree(ds);
    if (mkdir(ds, 0700) != 0 || put(ds, "_manifest-s00001of00002.tsv", data + 3, na) ||
        put(ds, "_manifest-s00002of00002.tsv", data + 3 + na, size - 3 - na))
        abort();
    fn_dataset_report rep;
    fn_error e;
    if (write_shard(1, &rep, &e) != FN_OK) {
        fprintf(stderr, "fuzz_dataset: shard 1/2 failed: %s\n", e.msg); /* nothing read may make it fail */
        abort();
    }
    if (rep.committed) { /* a commit is always readable: _SUCCESS names exactly the parts on disk */
        char **files;
        int n;
        if (fn_dataset_files(ds, 0, &files, &n, &e) != FN_OK) {
            fprintf(stderr, "fuzz_dataset: committed but unreadable: %s\n", e.msg);
            abort();
        }
        fn_free_list(files, n);
    }
    check_files(ds, 0);
    return 0;
}
