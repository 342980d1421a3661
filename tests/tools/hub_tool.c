/*
 * Helper for tests/py/test_hub.py: exercises src/hub.c's internal functions.
 *   hub_tool sha256 FILE...            prints lm_sha256 of each file's bytes (lower-case hex), one a line
 *   hub_tool resolve M HF_REPO HF_FILE  prints lm_resolve_model_arg's path ("-" = NULL argument)
 *   hub_tool cache-dir                 prints lm_hf_cache_dir()
 *   hub_tool download REPO FILE [REV]  prints llamita_hf_download's path (progress on)
 * Errors: "error: <message>" on stderr, exit 1. Usage errors exit 2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "llamita.h"

static const char *arg_or_null(const char *s) { return strcmp(s, "-") ? s : NULL; }

int main(int argc, char **argv) {
    char err[2048] = "";
    char *out = NULL;
    if (argc >= 3 && !strcmp(argv[1], "sha256")) {
        for (int i = 2; i < argc; i++) {
            FILE *f = fopen(argv[i], "rb");
            if (!f) {
                fprintf(stderr, "error: cannot open %s\n", argv[i]);
                return 1;
            }
            lm_sha256 s;
            lm_sha256_init(&s);
            /* odd chunk size so the block-boundary logic is exercised */
            static char buf[4099];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, f)) > 0) lm_sha256_update(&s, buf, n);
            fclose(f);
            uint8_t d[32];
            char hex[65];
            lm_sha256_final(&s, d);
            lm_sha256_hex(d, hex);
            printf("%s\n", hex);
        }
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "resolve"))
        out = lm_resolve_model_arg(arg_or_null(argv[2]), arg_or_null(argv[3]), arg_or_null(argv[4]), err, sizeof err);
    else if (argc == 2 && !strcmp(argv[1], "cache-dir"))
        out = lm_hf_cache_dir(err, sizeof err);
    else if ((argc == 4 || argc == 5) && !strcmp(argv[1], "download"))
        out = llamita_hf_download(argv[2], argv[3], argc == 5 ? argv[4] : NULL, true, err, sizeof err);
    else {
        fprintf(stderr, "usage: hub_tool sha256 FILE... | resolve M HF_REPO HF_FILE | cache-dir | download REPO FILE [REV]\n");
        return 2;
    }
    if (!out) {
        fprintf(stderr, "error: %s\n", err[0] ? err : "(no message)");
        return 1;
    }
    printf("%s\n", out);
    free(out);
    return 0;
}
