/* libFuzzer harness: the TF.js converter (model.json + one shard + labels.json) on arbitrary bytes.
 * Input layout: u16 json length, json bytes, the rest is the shard. labels.json is a valid fixed file. */
#include "fruitnet.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void put(const char *name, const void *d, size_t n)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(d, 1, n, f);
        fclose(f);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(dir, sizeof dir, "/tmp/fruitnet-fuzz-tfjs-%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0)
        abort();
    char *t = malloc(20000), *p = t;
    p += sprintf(p, "{");
    for (int i = 0; i < 1000; i++)
        p += sprintf(p, "%s\"%d\": \"l%d\"", i ? "," : "", i, i);
    sprintf(p, "}");
    put("labels.json", t, strlen(t));
    free(t);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t jl = (size_t)data[0] | (size_t)data[1] << 8;
    if (jl > size - 2)
        jl = size - 2;
    put("model.json", data + 2, jl);
    put("s1.bin", data + 2 + jl, size - 2 - jl);
    char mj[128], lj[128], out[128];
    snprintf(mj, sizeof mj, "%s/model.json", dir);
    snprintf(lj, sizeof lj, "%s/labels.json", dir);
    snprintf(out, sizeof out, "%s/out.fnw", dir);
    fn_error e;
    if (fn_convert_tfjs(mj, lj, NULL, out, &e) == FN_OK) {
        fn_weights *w;
        if (fn_weights_open(out, &w, &e) != FN_OK) /* what the converter writes must load */
            abort();
        fn_weights_close(w);
        unlink(out);
    }
    return 0;
}
