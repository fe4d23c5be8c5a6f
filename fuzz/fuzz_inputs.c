/* libFuzzer harness: the @list parser (fn_inputs_add_list_memory) and fn_inputs_finish on arbitrary bytes.
 * The lines are resolved against a small fixed tree in /dev/shm (files, a symlink, a hard link, a folder
 * named like an image, a FIFO, a directory loop), made once; each input runs inside it (the working folder
 * is restored after each input and before an abort, so libFuzzer's relative corpus and artifact paths work).
 * Input: byte 0 picks the shard (n = 1 + b % 4, k = 1 + (b / 4) % n), the rest is the list text. */
#include "fruitnet.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64];
static int home = -1; /* the working folder libFuzzer was started in */

#define CHECK(x)                                                                                                \
    do {                                                                                                       \
        if (!(x)) {                                                                                            \
            if (fchdir(home) != 0) {}                                                                          \
            fprintf(stderr, "fuzz_inputs: check failed: %s\n", #x);                                            \
            abort();                                                                                           \
        }                                                                                                      \
    } while (0)

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p), 0;
}
static void cleanup(void) { nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void put(const char *name, const char *text)
{
    FILE *f = fopen(name, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(root, sizeof root, "/dev/shm/fuzz-inputs-%d", (int)getpid());
    if ((home = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || mkdir(root, 0700) != 0 || chdir(root) != 0)
        abort();
    atexit(cleanup);
    mkdir("Apple", 0700);
    mkdir("Banana", 0700);
    mkdir("dir.jpg", 0700);
    put("Apple/a.jpg", "a");
    put("Apple/b.png", "bb");
    put("Banana/c.JPEG", "ccc");
    put("Banana/notes.txt", "x");
    if (symlink("../Apple/a.jpg", "Banana/link.jpg") || link("Apple/b.png", "Banana/hard.png") ||
        mkfifo("fifo.jpg", 0600) || symlink(".", "Apple/loop") || symlink("missing.jpg", "dangling.jpg") ||
        fchdir(home) != 0)
        abort();
    return 0;
}

static size_t skipped;
static void on_skip(void *ctx, const char *path, const char *reason, int is_error)
{
    (void)ctx, (void)is_error;
    CHECK(path && reason && reason[0]); /* every skipped entry is named, with a reason */
    skipped++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int n = 1 + data[0] % 4, k = 1 + (data[0] / 4) % n;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    fn_inputs *in;
    fn_error e;
    if (fn_inputs_new(&in, &e) != FN_OK || chdir(root) != 0)
        return 0;
    skipped = 0;
    int rc = fn_inputs_add_list_memory(in, text, len, "fuzz.list", on_skip, NULL, &e);
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (rc == FN_OK && fn_inputs_finish(in, k, n, on_skip, NULL, &e) == FN_OK) {
        size_t c = fn_inputs_count(in);
        CHECK(c <= lines);
        for (size_t i = 0; i < c; i++) {
            const char *p = fn_inputs_path(in, i), *l = fn_inputs_label(in, i);
            CHECK(p && l && p[0] && fn_inputs_size(in, i) >= 0);
            CHECK(i == 0 || strcmp(fn_inputs_path(in, i - 1), p) < 0); /* sorted, each path once */
            struct stat st; /* only regular files are listed */
            CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode));
        }
    }
    fn_inputs_free(in);
    CHECK(fchdir(home) == 0);
    return 0;
}
