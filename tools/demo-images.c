/*
 * demo-images — writes a few synthetic "fruit" PNGs (coloured discs and
 * ellipses on a white background, 100x100 like Fruits-360) into
 * OUTDIR/<Class>/<n>.png, so `make demo` runs where Fruits-360 is absent.
 * Not installed; used only by the Makefile.
 */
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct fruit {
    const char *name;
    unsigned char r, g, b;
    double rx, ry; /* radii as a fraction of the image */
} fruit;

static const fruit fruits[] = {
    {"Banana", 235, 205, 60, 0.45, 0.16}, {"Apple Red", 190, 30, 40, 0.36, 0.34},
    {"Lemon", 245, 225, 70, 0.33, 0.27},  {"Kiwi", 120, 90, 50, 0.34, 0.28},
    {"Orange", 245, 140, 20, 0.37, 0.37}, {"Plum", 90, 30, 80, 0.30, 0.30},
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: demo-images OUTDIR\n");
        return 2;
    }
    const int W = 100, H = 100, per_class = 4;
    unsigned char *px = malloc((size_t)W * H * 3);
    mkdir(argv[1], 0777);
    for (size_t f = 0; f < sizeof fruits / sizeof fruits[0]; f++) {
        char dir[4096], path[4200];
        snprintf(dir, sizeof dir, "%s/%s", argv[1], fruits[f].name);
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            perror(dir);
            return 1;
        }
        for (int k = 0; k < per_class; k++) {
            double ang = 0.4 * k, ca = cos(ang), sa = sin(ang), shade = 1.0 - 0.08 * k;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double u = (x - W / 2.0) / W, v = (y - H / 2.0) / H;
                    double a = (u * ca + v * sa) / fruits[f].rx, b = (-u * sa + v * ca) / fruits[f].ry;
                    double d = a * a + b * b;
                    unsigned char *p = px + ((size_t)y * W + x) * 3;
                    if (d <= 1.0) {
                        double l = shade * (1.0 - 0.35 * d);
                        p[0] = (unsigned char)(fruits[f].r * l);
                        p[1] = (unsigned char)(fruits[f].g * l);
                        p[2] = (unsigned char)(fruits[f].b * l);
                    } else {
                        p[0] = p[1] = p[2] = 255;
                    }
                }
            snprintf(path, sizeof path, "%s/%d_100.png", dir, k);
            if (!stbi_write_png(path, W, H, 3, px, W * 3)) {
                fprintf(stderr, "demo-images: %s: write failed\n", path);
                return 1;
            }
        }
    }
    free(px);
    return 0;
}
