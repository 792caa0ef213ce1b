/* A main() for fuzz targets built without libFuzzer: runs every file named on
 * the command line (directories: every file in them) through the target once,
 * so a corpus is replayed by any compiler. Exits 0 when all ran. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define INPUT_MAX (1024 * 1024)

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    size_t n;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    buf = malloc(INPUT_MAX);
    if (buf == NULL) {
        fclose(f);
        return -1;
    }
    n = fread(buf, 1, INPUT_MAX, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int i, runs = 0, bad = 0;

    for (i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *e;

        if (stat(argv[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            bad += run_file(argv[i]) != 0;
            runs++;
            continue;
        }
        d = opendir(argv[i]);
        if (d == NULL) {
            perror(argv[i]);
            bad++;
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];

            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            bad += run_file(path) != 0;
            runs++;
        }
        closedir(d);
    }
    printf("replayed %d inputs, %d unreadable\n", runs, bad);
    return bad ? 1 : 0;
}
