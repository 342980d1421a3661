/* Helpers shared by the C tests (cmocka). Include after <cmocka.h>'s prerequisites:
 *   #include <stdarg.h> <stddef.h> <stdint.h> <setjmp.h> <cmocka.h>  then "test_util.h"
 *
 * lm_test_shared_dir()  path of ../shared (or $LLAMITA_SHARED), or NULL when absent.
 * LM_REQUIRE_SHARED()   inside a test: prints a visible SKIP reason and skips when ../shared is absent.
 * lm_test_shared_path(buf, size, "fixtures/x.gguf")  joins a path under the shared folder.
 * lm_test_tmpdir()      a per-process temporary folder (created on first use, under $TMPDIR or /tmp).
 * lm_test_read_file(path, &size)  whole file in a malloc'd, NUL-terminated buffer (NULL if
 *                       unreadable); caller frees.
 */
#ifndef LM_TEST_UTIL_H
#define LM_TEST_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef LM_SOURCE_DIR
#define LM_SOURCE_DIR "."
#endif

static inline const char *lm_test_shared_dir(void) {
    static char path[2048];
    static int done = 0;
    if (!done) {
        done = 1;
        const char *env = getenv("LLAMITA_SHARED");
        if (env && *env) snprintf(path, sizeof path, "%s", env);
        else snprintf(path, sizeof path, "%s/../shared", LM_SOURCE_DIR);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) path[0] = 0;
    }
    return path[0] ? path : NULL;
}

static inline const char *lm_test_shared_path(char *buf, size_t size, const char *rel) {
    snprintf(buf, size, "%s/%s", lm_test_shared_dir() ? lm_test_shared_dir() : "(no-shared)", rel);
    return buf;
}

#define LM_REQUIRE_SHARED()                                                                    \
    do {                                                                                       \
        if (!lm_test_shared_dir()) {                                                           \
            fprintf(stderr, "SKIP: %s: ../shared not found (set LLAMITA_SHARED to its path)\n", \
                    __func__);                                                                 \
            skip();                                                                            \
        }                                                                                      \
    } while (0)

static inline const char *lm_test_tmpdir(void) {
    static char dir[2048];
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/llamita-test-XXXXXX", (t && *t) ? t : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
    }
    return dir;
}

static inline void *lm_test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) { fclose(f); return NULL; }
    char *buf = malloc((size_t)n + 1); /* NUL-terminated, so text files can be used as strings */
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) buf[n] = 0;
    fclose(f);
    if (buf && size) *size = (size_t)n;
    return buf;
}
#endif
