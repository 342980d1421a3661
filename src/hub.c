/*
 * Hugging Face hub: download model files into huggingface_hub's cache, or find them there.
 *
 * Cache layout (identical to huggingface_hub's, so either tool finds what the other downloaded):
 *   <cache>/models--ORG--NAME/blobs/<etag>                 file contents, named by their ETag
 *                                                          (sha256 for LFS files, git blob sha1 else)
 *   <cache>/models--ORG--NAME/blobs/<etag>.incomplete      a download in progress (resumed with Range)
 *   <cache>/models--ORG--NAME/snapshots/<commit>/<file>    relative symlink to ../../blobs/<etag>
 *   <cache>/models--ORG--NAME/refs/<revision>              the commit hash the revision pointed to
 *   <cache>/.locks/models--ORG--NAME/<etag>.lock           flock()ed while a blob is written (the
 *                                                          same file and lock kind as huggingface_hub's
 *                                                          filelock on POSIX)
 * <cache> is lm_hf_cache_dir() ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub, ...).
 *
 * Protocol (as huggingface_hub does it):
 *  1. HEAD {endpoint}/{repo}/resolve/{revision}/{file} without following redirects (relative
 *     redirects, used for renamed repositories, are followed). The answer gives X-Repo-Commit,
 *     X-Linked-Etag or ETag (quoted; "W/" dropped), X-Linked-Size or Content-Length, and for LFS
 *     files a Location (the CDN).
 *  2. If snapshots/<commit>/<file> exists, it is the answer: nothing is downloaded.
 *  3. Else GET the Location (or the resolve URL itself when the HEAD answered 200), following
 *     redirects, into blobs/<etag>.incomplete, resuming with "Range: bytes=N-" from what is already
 *     there and retrying a cut connection a few times. The token goes only to the hub's own origin
 *     (scheme, host and port of the endpoint), never to the CDN.
 *  4. Verify the size (when announced) and, for LFS files (64-hex ETag), the sha256 while streaming.
 *     On mismatch the .incomplete is deleted and the cache stays as it was.
 *  5. fsync + rename the blob into place, then create the symlink (temporary name + rename), then
 *     write refs/<revision>: a corrupt or partial file is never visible under snapshots/.
 *  Globs (FILE with * ? or [) are matched (fnmatch, like Python's fnmatch: '*' also matches '/')
 *  against the file list of GET {endpoint}/api/models/{repo}[/revision/{rev}] ("siblings").
 *  When the hub cannot be reached (or answers 401/403/5xx or "repository not found") and the file is
 *  in the cache for that revision, the cached file is used, as huggingface_hub does.
 *  HF_HUB_OFFLINE=1 (or true/yes/on): the cache only, no request at all.
 *
 * Environment: HF_ENDPOINT, HF_TOKEN (else HUGGING_FACE_HUB_TOKEN, else the token file
 * $HF_TOKEN_PATH or $HF_HOME/token), HF_HUB_OFFLINE, HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME,
 * HF_HUB_ETAG_TIMEOUT (seconds for the HEAD request, default 10), HF_HUB_DOWNLOAD_TIMEOUT (seconds
 * without any data before a download attempt is abandoned, default 10).
 *
 * Not part of the inference core: links libcurl and cJSON.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "common.h"
#include "hub.h"
#include "llamita.h"

#define HUB_DEFAULT_ENDPOINT "https://huggingface.co"
#define HUB_MAX_REDIRECTS 10
#define HUB_MAX_ATTEMPTS 5          /* GET attempts per download (resuming each time) */
#define HUB_LIST_MAX_BYTES (64u << 20) /* cap on the JSON file list */

/* =================================================================================================
 * SHA-256 (FIPS 180-4)
 * =============================================================================================== */

static const uint32_t SHA256_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* Processes one 64-byte block into the state h[8]. */
static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr32(w[i - 15], 7) ^ rotr32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr32(w[i - 2], 17) ^ rotr32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + SHA256_K[i] + w[i];
        uint32_t S0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
        uint32_t mj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + mj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

void lm_sha256_init(lm_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->n_bytes = 0;
    s->buf_len = 0;
}

void lm_sha256_update(lm_sha256 *s, const void *data, size_t len) {
    const uint8_t *p = data;
    s->n_bytes += len;
    if (s->buf_len > 0) {
        size_t take = LM_MIN(len, 64 - s->buf_len);
        memcpy(s->buf + s->buf_len, p, take);
        s->buf_len += take;
        p += take;
        len -= take;
        if (s->buf_len < 64) return;
        sha256_block(s->h, s->buf);
        s->buf_len = 0;
    }
    for (; len >= 64; p += 64, len -= 64) sha256_block(s->h, p);
    if (len > 0) {
        memcpy(s->buf, p, len);
        s->buf_len = len;
    }
}

void lm_sha256_final(lm_sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->n_bytes * 8;
    uint8_t pad[72];
    size_t npad = (s->buf_len < 56 ? 56 : 120) - s->buf_len; /* 0x80, zeros, to 56 mod 64 */
    memset(pad, 0, sizeof pad);
    pad[0] = 0x80;
    for (int i = 0; i < 8; i++) pad[npad + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t n_keep = s->n_bytes;
    lm_sha256_update(s, pad, npad + 8);
    s->n_bytes = n_keep;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void lm_sha256_hex(const uint8_t digest[32], char hex[65]) {
    static const char xd[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = xd[digest[i] >> 4];
        hex[2 * i + 1] = xd[digest[i] & 15];
    }
    hex[64] = 0;
}

/* =================================================================================================
 * Small string, environment and file helpers
 * =============================================================================================== */

/* malloc'd printf; NULL on out-of-memory. */
static char *fmt_alloc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_alloc(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

/* The variable's value, or NULL when unset or empty. */
static const char *env_get(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* huggingface_hub's truthy values: 1, ON, YES, TRUE (any case). */
static bool env_true(const char *name) {
    const char *v = env_get(name);
    if (!v) return false;
    return !strcmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcasecmp(v, "true");
}

/* Seconds from a variable (positive number), else def. */
static long env_seconds(const char *name, long def) {
    const char *v = env_get(name);
    if (!v) return def;
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d > 0) || d > 86400.0) return def;
    return d < 1.0 ? 1 : (long)d;
}

/* The home directory ($HOME, else the password database); NULL when unknown. */
static const char *home_dir(void) {
    const char *h = env_get("HOME");
    if (h) return h;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
}

/* Expands a leading "~" or "~/" (as Python's os.path.expanduser does for the current user).
 * malloc'd; NULL when a home directory is needed and unknown. */
static char *expand_user(const char *p) {
    if (p[0] != '~' || (p[1] != 0 && p[1] != '/')) return dup_str(p);
    const char *h = home_dir();
    return h ? fmt_alloc("%s%s", h, p + 1) : NULL;
}

/* $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (malloc'd; NULL if no
 * home directory). */
static char *hf_home(void) {
    const char *v = env_get("HF_HOME");
    if (v) return expand_user(v);
    v = env_get("XDG_CACHE_HOME");
    if (v) {
        char *x = expand_user(v);
        char *r = x ? fmt_alloc("%s/huggingface", x) : NULL;
        free(x);
        return r;
    }
    const char *h = home_dir();
    return h ? fmt_alloc("%s/.cache/huggingface", h) : NULL;
}

char *lm_hf_cache_dir(char *err, size_t err_size) {
    const char *v = env_get("HF_HUB_CACHE");
    if (!v) v = env_get("HUGGINGFACE_HUB_CACHE");
    char *r = NULL;
    if (v) {
        r = expand_user(v);
    } else {
        char *home = hf_home();
        r = home ? fmt_alloc("%s/hub", home) : NULL;
        free(home);
    }
    if (!r) lm_seterr(err, err_size, "cannot find the Hugging Face cache: HOME is not set; set HF_HOME");
    return r;
}

/* The access token: $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, else the first line of the token file
 * ($HF_TOKEN_PATH, else $HF_HOME/token) — huggingface_hub's order. malloc'd, NULL when none. */
static char *hf_token(void) {
    const char *v = env_get("HF_TOKEN");
    if (!v) v = env_get("HUGGING_FACE_HUB_TOKEN");
    char buf[4096];
    char *path = NULL;
    if (!v) {
        const char *tp = env_get("HF_TOKEN_PATH");
        if (tp) {
            path = expand_user(tp);
        } else {
            char *home = hf_home();
            path = home ? fmt_alloc("%s/token", home) : NULL;
            free(home);
        }
        FILE *f = path ? fopen(path, "r") : NULL;
        free(path);
        if (!f) return NULL;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        v = buf;
    }
    while (*v && isspace((unsigned char)*v)) v++;
    size_t n = 0;
    while (v[n] && !isspace((unsigned char)v[n]) && (unsigned char)v[n] >= 0x20) n++;
    if (n == 0) return NULL;
    return strndup(v, n);
}

/* $HF_ENDPOINT without trailing slashes, or https://huggingface.co. malloc'd. */
static char *hf_endpoint(void) {
    const char *v = env_get("HF_ENDPOINT");
    if (!v) v = HUB_DEFAULT_ENDPOINT;
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '/') n--;
    return strndup(v, n);
}

/* mkdir -p. True on success (or when the directory exists). */
static bool mkdir_p(const char *path) {
    char *p = strdup(path);
    if (!p) return false;
    bool ok = true;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) ok = false;
            *s = c;
            if (!ok || c == 0) break;
        }
    }
    if (ok) {
        struct stat st;
        ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
    }
    free(p);
    return ok;
}

/* The directory part of path (malloc'd). */
static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? strndup(path, (size_t)(s - path)) : strdup(".");
}

/* True when path exists and is (or links to) a regular file. */
static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Writes text to path atomically (temporary file + rename). True on success. */
static bool write_file_atomic(const char *path, const char *text) {
    char *tmp = fmt_alloc("%s.llamita-tmp.%ld", path, (long)getpid());
    if (!tmp) return false;
    FILE *f = fopen(tmp, "w");
    bool ok = f != NULL;
    if (ok) {
        ok = fputs(text, f) >= 0;
        ok = (fclose(f) == 0) && ok;
    }
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    free(tmp);
    return ok;
}

/* First line of a small file, trimmed (malloc'd), or NULL. */
static char *read_line_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    size_t k = 0;
    while (buf[k] && !isspace((unsigned char)buf[k])) k++;
    return k ? strndup(buf, k) : NULL;
}

/* =================================================================================================
 * Validation (names that become paths under the cache must not escape it)
 * =============================================================================================== */

static bool is_word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* huggingface_hub's rule: [NAMESPACE/]NAME, each of [A-Za-z0-9_.-] beginning and ending with a word
 * character, no "--" nor "..", at most 96 characters, not ending in ".git". */
static bool valid_repo_id(const char *r) {
    size_t n = strlen(r);
    if (n == 0 || n > 96) return false;
    if (strstr(r, "--") || strstr(r, "..")) return false;
    if (n >= 4 && !strcmp(r + n - 4, ".git")) return false;
    int slashes = 0;
    const char *part = r;
    for (const char *p = r;; p++) {
        if (*p == '/' || *p == 0) {
            size_t len = (size_t)(p - part);
            if (len == 0 || !is_word_char(part[0]) || !is_word_char(part[len - 1])) return false;
            if (*p == 0) break;
            if (++slashes > 1) return false;
            part = p + 1;
        } else if (!is_word_char(*p) && *p != '-' && *p != '.') {
            return false;
        }
    }
    return true;
}

/* A relative path inside a repository: no leading '/', no empty, "." or ".." components, no
 * control characters or backslashes. */
static bool valid_rel_path(const char *f) {
    if (!*f || *f == '/' || strlen(f) > 4096) return false;
    const char *part = f;
    for (const char *p = f;; p++) {
        if (*p == '/' || *p == 0) {
            size_t len = (size_t)(p - part);
            if (len == 0 || (len == 1 && part[0] == '.') || (len == 2 && part[0] == '.' && part[1] == '.'))
                return false;
            if (*p == 0) break;
            part = p + 1;
        } else if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '\\') {
            return false;
        }
    }
    return true;
}

/* A single safe path component made of [A-Za-z0-9._-], not starting with '.', at most 128 chars
 * (commit hashes and ETags from the server). */
static bool valid_token(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-') return false;
    return true;
}

static bool is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

/* A full commit hash (40 lower-case hex digits, as huggingface_hub's REGEX_COMMIT_HASH). */
static bool is_commit_hash(const char *s) {
    if (!is_hex(s, 40)) return false;
    for (const char *p = s; *p; p++)
        if (isupper((unsigned char)*p)) return false;
    return true;
}

static bool is_glob(const char *s) { return strpbrk(s, "*?[") != NULL; }

/* Python's urllib.parse.quote: keeps [A-Za-z0-9_.~-] (and '/' when keep_slash), %XX the rest.
 * malloc'd. */
static char *url_quote(const char *s, bool keep_slash) {
    size_t n = strlen(s);
    char *o = malloc(3 * n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~' || (keep_slash && c == '/')) {
            o[k++] = (char)c;
        } else {
            static const char xd[] = "0123456789ABCDEF";
            o[k++] = '%';
            o[k++] = xd[c >> 4];
            o[k++] = xd[c & 15];
        }
    }
    o[k] = 0;
    return o;
}

/* "ORG/NAME" -> "models--ORG--NAME" (malloc'd). */
static char *repo_folder_name(const char *repo_id) {
    size_t n = strlen(repo_id), k = 0;
    char *o = malloc(8 + 2 * n + 1);
    if (!o) return NULL;
    memcpy(o, "models--", 8);
    k = 8;
    for (size_t i = 0; i < n; i++) {
        if (repo_id[i] == '/') {
            o[k++] = '-';
            o[k++] = '-';
        } else {
            o[k++] = repo_id[i];
        }
    }
    o[k] = 0;
    return o;
}

/* Replaces control characters by spaces (for server-provided text in one-line messages). */
static void sanitize_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = ' ';
}

/* =================================================================================================
 * HTTP (libcurl)
 * =============================================================================================== */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;
static void curl_init_once(void) { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* The interesting headers of the last response seen (reset at each status line, so after
 * redirects they belong to the final response). Strings are malloc'd. */
typedef struct hub_headers {
    long status;
    char *commit;        /* X-Repo-Commit */
    char *linked_etag;   /* X-Linked-Etag */
    char *etag;          /* ETag */
    char *location;      /* Location */
    char *error_code;    /* X-Error-Code (RepoNotFound, EntryNotFound, RevisionNotFound, GatedRepo) */
    char *error_message; /* X-Error-Message */
    char *content_range; /* Content-Range */
    int64_t linked_size; /* X-Linked-Size, -1 if absent */
    int64_t content_length; /* Content-Length, -1 if absent */
} hub_headers;

static void headers_clear(hub_headers *h) {
    free(h->commit);
    free(h->linked_etag);
    free(h->etag);
    free(h->location);
    free(h->error_code);
    free(h->error_message);
    free(h->content_range);
    memset(h, 0, sizeof *h);
    h->linked_size = -1;
    h->content_length = -1;
}

static int64_t parse_size(const char *v) {
    if (!isdigit((unsigned char)*v)) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end) return -1;
    return (int64_t)x;
}

/* Progress bar state (drawn only when on). */
typedef struct hub_progress {
    bool on;
    const char *name;   /* file name shown */
    int64_t total;      /* expected size, -1 unknown */
    int64_t resumed;    /* bytes already there when this download started (not counted in the rate) */
    int64_t done;       /* bytes in the file now */
    double t0, last;    /* start time and time of the last redraw */
    bool drawn;
} hub_progress;

/* One transfer: headers, and the body either into memory (mem) or into a file (fd >= 0). */
typedef struct hub_xfer {
    hub_headers h;
    char curl_err[CURL_ERROR_SIZE];
    char abort_msg[512]; /* why our callback stopped the transfer */
    bool abort_bad_data; /* the data is wrong (size/range): the .incomplete must go */
    /* memory body */
    char *mem;
    size_t mem_len, mem_cap, mem_max;
    /* file body */
    int fd;
    const char *file_path;
    int64_t offset;   /* bytes in the file before this response (where its body goes) */
    int64_t got;      /* body bytes of this response written */
    int64_t expected; /* total size of the file, -1 unknown */
    lm_sha256 *sha;   /* NULL: no hashing */
    bool started;     /* the first body byte of the final response was seen */
    hub_progress *prog;
} hub_xfer;

static size_t on_header(char *buf, size_t size, size_t nitems, void *user) {
    hub_xfer *x = user;
    size_t n = size * nitems;
    if (n >= 5 && !memcmp(buf, "HTTP/", 5)) {
        headers_clear(&x->h);
        const char *sp = memchr(buf, ' ', n);
        if (sp) x->h.status = strtol(sp + 1, NULL, 10);
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t name_len = (size_t)(colon - buf);
    const char *v = colon + 1, *e = buf + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
    char **slot = NULL;
    int64_t *num = NULL;
#define HDR(name) (name_len == sizeof(name) - 1 && !strncasecmp(buf, name, name_len))
    if (HDR("X-Repo-Commit")) slot = &x->h.commit;
    else if (HDR("X-Linked-Etag")) slot = &x->h.linked_etag;
    else if (HDR("ETag")) slot = &x->h.etag;
    else if (HDR("Location")) slot = &x->h.location;
    else if (HDR("X-Error-Code")) slot = &x->h.error_code;
    else if (HDR("X-Error-Message")) slot = &x->h.error_message;
    else if (HDR("Content-Range")) slot = &x->h.content_range;
    else if (HDR("X-Linked-Size")) num = &x->h.linked_size;
    else if (HDR("Content-Length")) num = &x->h.content_length;
#undef HDR
    if (slot) {
        free(*slot);
        *slot = strndup(v, (size_t)(e - v));
    } else if (num) {
        char tmp[32];
        size_t len = LM_MIN((size_t)(e - v), sizeof tmp - 1);
        memcpy(tmp, v, len);
        tmp[len] = 0;
        *num = parse_size(tmp);
    }
    return n;
}

static size_t on_body_mem(char *buf, size_t size, size_t nitems, void *user) {
    hub_xfer *x = user;
    size_t n = size * nitems;
    if (x->h.status >= 300 && x->h.status < 400) return n; /* a redirect's body */
    if (x->mem_len + n + 1 > x->mem_max) {
        snprintf(x->abort_msg, sizeof x->abort_msg, "the answer is larger than %zu bytes", x->mem_max);
        return 0;
    }
    if (x->mem_len + n + 1 > x->mem_cap) {
        size_t cap = LM_MAX(x->mem_cap * 2, x->mem_len + n + 1);
        cap = LM_MAX(cap, (size_t)4096);
        char *nb = realloc(x->mem, cap);
        if (!nb) {
            snprintf(x->abort_msg, sizeof x->abort_msg, "out of memory");
            return 0;
        }
        x->mem = nb;
        x->mem_cap = cap;
    }
    memcpy(x->mem + x->mem_len, buf, n);
    x->mem_len += n;
    x->mem[x->mem_len] = 0;
    return n;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *fmt_bytes(double b, char *buf, size_t n) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, n, "%.1f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0) snprintf(buf, n, "%.1f KiB", b / 1024.0);
    else snprintf(buf, n, "%.0f B", b);
    return buf;
}

/* Redraws the progress line: name, bytes done / total, percent, rate, ETA. At most 10 times a
 * second unless final. */
static void progress_draw(hub_progress *p, bool final) {
    if (!p || !p->on) return;
    double t = mono_s();
    if (!final && p->drawn && t - p->last < 0.1) return;
    p->last = t;
    p->drawn = true;
    char done[32], total[32], rate[32], eta[32] = "";
    double el = t - p->t0;
    double sp = el > 0.05 ? (double)(p->done - p->resumed) / el : 0.0;
    fmt_bytes((double)p->done, done, sizeof done);
    if (p->total > 0) {
        fmt_bytes((double)p->total, total, sizeof total);
        if (sp > 0 && p->done < p->total) {
            double s = (double)(p->total - p->done) / sp;
            if (s < 360000) snprintf(eta, sizeof eta, " ETA %d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
        }
    } else {
        snprintf(total, sizeof total, "?");
    }
    fmt_bytes(sp, rate, sizeof rate);
    int pct = p->total > 0 ? (int)(100.0 * (double)p->done / (double)p->total) : 0;
    char bar[21];
    int fill = p->total > 0 ? pct / 5 : 0;
    for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
    bar[20] = 0;
    const char *name = p->name;
    size_t nl = strlen(name);
    if (nl > 32) name += nl - 32;
    fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s%s\x1b[K", name, bar, pct, done, total, rate, eta);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

/* Writes all of buf to fd. */
static bool write_fd(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        buf += w;
        n -= (size_t)w;
    }
    return true;
}

/* Body of a download: checks where the server's data starts (206 Content-Range; a 200 to a ranged
 * request restarts the file), then appends to the file, hashes, and draws progress. */
static size_t on_body_file(char *buf, size_t size, size_t nitems, void *user) {
    hub_xfer *x = user;
    size_t n = size * nitems;
    if (x->h.status >= 300 && x->h.status < 400) return n; /* a redirect's body */
    if (!x->started) {
        x->started = true;
        if (x->h.status == 206) {
            long long start = -1;
            if (!x->h.content_range || sscanf(x->h.content_range, "bytes %lld-", &start) != 1 ||
                start != (long long)x->offset) {
                snprintf(x->abort_msg, sizeof x->abort_msg,
                         "the server answered the range request for bytes %" PRId64 "- with '%s'", x->offset,
                         x->h.content_range ? x->h.content_range : "no Content-Range");
                x->abort_bad_data = true;
                return 0;
            }
        } else if (x->offset > 0) {
            /* the server ignored Range: start over */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
                snprintf(x->abort_msg, sizeof x->abort_msg, "cannot truncate '%s': %s", x->file_path, strerror(errno));
                return 0;
            }
            x->offset = 0;
            if (x->sha) lm_sha256_init(x->sha);
            if (x->prog) x->prog->resumed = 0;
        }
    }
    if (x->expected >= 0 && x->offset + x->got + (int64_t)n > x->expected) {
        snprintf(x->abort_msg, sizeof x->abort_msg,
                 "size mismatch: the server sent more than the announced %" PRId64 " bytes", x->expected);
        x->abort_bad_data = true;
        return 0;
    }
    if (!write_fd(x->fd, buf, n)) {
        snprintf(x->abort_msg, sizeof x->abort_msg, "cannot write '%s': %s", x->file_path, strerror(errno));
        return 0;
    }
    if (x->sha) lm_sha256_update(x->sha, buf, n);
    x->got += (int64_t)n;
    if (x->prog) {
        x->prog->done = x->offset + x->got;
        progress_draw(x->prog, false);
    }
    return n;
}

/* True when url has the same scheme, host and port as base (the hub's origin): only then does the
 * token go with a request. */
static bool same_origin(const char *url, const char *base) {
    CURLU *a = curl_url(), *b = curl_url();
    bool same = false;
    char *sa = NULL, *sb = NULL, *ha = NULL, *hb = NULL, *pa = NULL, *pb = NULL;
    if (a && b && curl_url_set(a, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_set(b, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_get(a, CURLUPART_SCHEME, &sa, 0) == CURLUE_OK &&
        curl_url_get(b, CURLUPART_SCHEME, &sb, 0) == CURLUE_OK &&
        curl_url_get(a, CURLUPART_HOST, &ha, 0) == CURLUE_OK &&
        curl_url_get(b, CURLUPART_HOST, &hb, 0) == CURLUE_OK &&
        curl_url_get(a, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) == CURLUE_OK &&
        curl_url_get(b, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT) == CURLUE_OK)
        same = !strcasecmp(sa, sb) && !strcasecmp(ha, hb) && !strcmp(pa, pb);
    curl_free(sa);
    curl_free(sb);
    curl_free(ha);
    curl_free(hb);
    curl_free(pa);
    curl_free(pb);
    curl_url_cleanup(a);
    curl_url_cleanup(b);
    return same;
}

/* Resolves a Location (absolute or relative) against the URL it came from. malloc'd or NULL. */
static char *resolve_location(const char *from, const char *loc) {
    CURLU *u = curl_url();
    char *s = NULL, *r = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, from, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
        r = strdup(s);
    curl_free(s);
    curl_url_cleanup(u);
    return r;
}

/* A Location with no scheme and no host ("/path"): huggingface_hub follows these in its HEAD. */
static bool is_relative_location(const char *loc) {
    if (loc[0] == '/' && loc[1] == '/') return false;
    for (const char *p = loc; *p && *p != '/' && *p != '?' && *p != '#'; p++)
        if (*p == ':') return false;
    return true;
}

/* An easy handle set up for url with our callbacks; the token (if any) goes in an Authorization
 * header only when url is on the hub's origin. *hl receives the header list to free after. */
static CURL *hub_easy(hub_xfer *x, const char *url, const char *endpoint, const char *token,
                      struct curl_slist **hl) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    struct curl_slist *l = NULL;
    l = curl_slist_append(l, "Accept-Encoding: identity");
    if (token && same_origin(url, endpoint)) {
        char *a = fmt_alloc("Authorization: Bearer %s", token);
        if (a) l = curl_slist_append(l, a);
        free(a);
    }
    *hl = l;
    char ua[96];
    snprintf(ua, sizeof ua, "llamita/%s; %s", llamita_version(), curl_version());
    for (char *p = ua; *p; p++)
        if (*p == ' ' && p[1] == 'O') { *p = 0; break; } /* keep it short */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->curl_err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, env_seconds("HF_HUB_ETAG_TIMEOUT", 10));
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)HUB_MAX_REDIRECTS);
    x->curl_err[0] = 0;
    return c;
}

/* What went wrong, for the caller's decision to fall back to the cache. */
enum {
    HUB_OK = 0,
    HUB_ERR_FALLBACK = -1, /* network failure or an HTTP error after which a cached copy may be used */
    HUB_ERR_FATAL = -2,    /* anything else (no such file or revision, bad data, local I/O) */
};

/* Message for a transport failure (no HTTP answer). */
static void net_error(char *err, size_t err_size, const char *url, CURLcode rc, const hub_xfer *x) {
    char msg[CURL_ERROR_SIZE + 64];
    snprintf(msg, sizeof msg, "%s", x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc));
    sanitize_line(msg);
    lm_seterr(err, err_size, "cannot reach %s: %s; pass -m FILE to use a local file", url, msg);
}

/* Message for an HTTP error status; returns HUB_ERR_FALLBACK or HUB_ERR_FATAL as huggingface_hub
 * decides (missing file or revision in a repository that exists: fatal; the rest may fall back). */
static int http_error(char *err, size_t err_size, const hub_xfer *x, const char *url, const char *endpoint,
                      const char *repo_id, const char *file, const char *revision, bool have_token) {
    long st = x->h.status;
    char detail[512] = "";
    if (x->h.error_message) {
        snprintf(detail, sizeof detail, ": %s", x->h.error_message);
        sanitize_line(detail);
    }
    const char *code = x->h.error_code ? x->h.error_code : "";
    char what[1024];
    if (revision && strcmp(revision, "main") != 0)
        snprintf(what, sizeof what, "%s/%s (revision %s)", repo_id, file, revision);
    else
        snprintf(what, sizeof what, "%s/%s", repo_id, file);
    if (st == 401) {
        if (have_token)
            lm_seterr(err, err_size,
                      "token rejected by the hub for %s: check HF_TOKEN (HTTP 401 from %s%s; or no such repository)",
                      repo_id, url, detail);
        else
            lm_seterr(err, err_size,
                      "%s needs a token: set HF_TOKEN (HTTP 401 from %s%s: a private or gated repository, or no "
                      "such repository)",
                      repo_id, url, detail);
        return HUB_ERR_FALLBACK;
    }
    if (st == 403) {
        lm_seterr(err, err_size,
                  "access to %s is forbidden (HTTP 403 from %s%s); a gated repository needs its conditions "
                  "accepted at %s/%s with the account of HF_TOKEN",
                  repo_id, url, detail, endpoint, repo_id);
        return HUB_ERR_FALLBACK;
    }
    if (st == 404) {
        const char *why = !strcmp(code, "EntryNotFound")      ? " (no such file in the repository)"
                          : !strcmp(code, "RevisionNotFound") ? " (no such revision)"
                          : !strcmp(code, "RepoNotFound")     ? " (no such repository)"
                                                              : "";
        lm_seterr(err, err_size, "repository or file not found: %s%s (HTTP 404 from %s%s)", what, why, url, detail);
        return (!strcmp(code, "EntryNotFound") || !strcmp(code, "RevisionNotFound")) ? HUB_ERR_FATAL
                                                                                   : HUB_ERR_FALLBACK;
    }
    if (st >= 500) {
        lm_seterr(err, err_size, "the hub failed with HTTP %ld for %s%s; try again later, or pass -m FILE to use a "
                  "local file", st, url, detail);
        return HUB_ERR_FALLBACK;
    }
    lm_seterr(err, err_size, "unexpected HTTP %ld from %s%s", st, url, detail);
    return HUB_ERR_FALLBACK;
}

/* Strips W/ and quotes from an ETag (in place). */
static void normalize_etag(char *e) {
    char *s = e;
    if (s[0] == 'W' && s[1] == '/') s += 2;
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    memmove(e, s, n);
    e[n] = 0;
}

/* File metadata from the HEAD request. */
typedef struct hub_meta {
    char *commit;   /* X-Repo-Commit */
    char *etag;     /* normalized X-Linked-Etag or ETag */
    char *location; /* absolute URL to GET */
    int64_t size;   /* X-Linked-Size or Content-Length; -1 unknown */
} hub_meta;

static void meta_free(hub_meta *m) {
    free(m->commit);
    free(m->etag);
    free(m->location);
    memset(m, 0, sizeof *m);
}

/* HEAD of the resolve URL (relative redirects followed, others not). Fills *m. Returns HUB_OK or
 * an error code with err set. */
static int hub_head(const char *url0, const char *endpoint, const char *token, const char *repo_id,
                    const char *file, const char *revision, hub_meta *m, char *err, size_t err_size) {
    memset(m, 0, sizeof *m);
    char *url = strdup(url0);
    int ret = HUB_ERR_FATAL;
    hub_xfer x;
    memset(&x, 0, sizeof x);
    headers_clear(&x.h);
    if (!url) {
        lm_seterr(err, err_size, "out of memory");
        return HUB_ERR_FATAL;
    }
    for (int hop = 0;; hop++) {
        if (hop > HUB_MAX_REDIRECTS) {
            lm_seterr(err, err_size, "too many redirects from %s", url0);
            break;
        }
        struct curl_slist *hl = NULL;
        CURL *c = hub_easy(&x, url, endpoint, token, &hl);
        if (!c) {
            lm_seterr(err, err_size, "cannot initialize libcurl");
            break;
        }
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, env_seconds("HF_HUB_ETAG_TIMEOUT", 10));
        headers_clear(&x.h);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        curl_slist_free_all(hl);
        if (rc != CURLE_OK) {
            net_error(err, err_size, url, rc, &x);
            ret = HUB_ERR_FALLBACK;
            break;
        }
        long st = x.h.status;
        if (st >= 300 && st < 400 && x.h.location && is_relative_location(x.h.location)) {
            char *next = resolve_location(url, x.h.location);
            if (!next) {
                lm_seterr(err, err_size, "bad redirect from %s to '%s'", url, x.h.location);
                break;
            }
            free(url);
            url = next;
            continue;
        }
        if (st >= 400 || st < 200) {
            ret = http_error(err, err_size, &x, url, endpoint, repo_id, file, revision, token != NULL);
            break;
        }
        const char *et = x.h.linked_etag ? x.h.linked_etag : x.h.etag;
        if (!x.h.commit || !et) {
            lm_seterr(err, err_size,
                      "the answer from %s lacks the %s header: is HF_ENDPOINT a Hugging Face hub? (or a proxy "
                      "strips headers)",
                      url, !x.h.commit ? "X-Repo-Commit" : "ETag");
            break;
        }
        m->commit = strdup(x.h.commit);
        m->etag = strdup(et);
        if (m->etag) normalize_etag(m->etag);
        /* a redirect's Content-Length is the size of its own body, not the file's */
        m->size = x.h.linked_size >= 0 ? x.h.linked_size : (st < 300 ? x.h.content_length : -1);
        if (st >= 300 && st < 400) {
            if (!x.h.location) {
                lm_seterr(err, err_size, "HTTP %ld without a Location from %s", st, url);
                break;
            }
            m->location = resolve_location(url, x.h.location);
        } else {
            m->location = strdup(url);
        }
        if (!m->commit || !m->etag || !m->location) {
            lm_seterr(err, err_size, "out of memory (or bad redirect) for %s", url);
            break;
        }
        if (!valid_token(m->commit) || !valid_token(m->etag)) {
            char c1[64], c2[64];
            snprintf(c1, sizeof c1, "%.40s", m->commit);
            snprintf(c2, sizeof c2, "%.40s", m->etag);
            sanitize_line(c1);
            sanitize_line(c2);
            lm_seterr(err, err_size, "the hub's answer for %s has an unusable commit '%s' or ETag '%s'", url, c1, c2);
            break;
        }
        ret = HUB_OK;
        break;
    }
    if (ret != HUB_OK) meta_free(m);
    headers_clear(&x.h);
    free(url);
    return ret;
}

/* Lists the repository's files (GET {endpoint}/api/models/{repo}[/revision/{rev}]).
 * *files: malloc'd array of malloc'd names, *n_files its length. */
static int hub_list_files(const char *endpoint, const char *token, const char *repo_id, const char *revision,
                          const char *pattern, char ***files, size_t *n_files, char *err, size_t err_size) {
    *files = NULL;
    *n_files = 0;
    char *url;
    if (!strcmp(revision, "main")) {
        url = fmt_alloc("%s/api/models/%s", endpoint, repo_id);
    } else {
        char *q = url_quote(revision, false);
        url = q ? fmt_alloc("%s/api/models/%s/revision/%s", endpoint, repo_id, q) : NULL;
        free(q);
    }
    if (!url) {
        lm_seterr(err, err_size, "out of memory");
        return HUB_ERR_FATAL;
    }
    hub_xfer x;
    memset(&x, 0, sizeof x);
    headers_clear(&x.h);
    x.mem_max = HUB_LIST_MAX_BYTES;
    int ret = HUB_ERR_FATAL;
    struct curl_slist *hl = NULL;
    CURL *c = hub_easy(&x, url, endpoint, token, &hl);
    if (!c) {
        lm_seterr(err, err_size, "cannot initialize libcurl");
        free(url);
        return HUB_ERR_FATAL;
    }
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_mem);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, env_seconds("HF_HUB_DOWNLOAD_TIMEOUT", 10));
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    cJSON *root = NULL;
    if (rc != CURLE_OK) {
        if (x.abort_msg[0]) lm_seterr(err, err_size, "cannot list the files of %s: %s", repo_id, x.abort_msg);
        else {
            net_error(err, err_size, url, rc, &x);
            ret = HUB_ERR_FALLBACK;
        }
        goto done;
    }
    if (x.h.status != 200) {
        ret = http_error(err, err_size, &x, url, endpoint, repo_id, pattern, revision, token != NULL);
        goto done;
    }
    root = x.mem ? cJSON_ParseWithLength(x.mem, x.mem_len) : NULL;
    const cJSON *sib = root ? cJSON_GetObjectItemCaseSensitive(root, "siblings") : NULL;
    if (!cJSON_IsArray(sib)) {
        lm_seterr(err, err_size, "the file list from %s is not the hub's JSON (no \"siblings\" array)", url);
        goto done;
    }
    size_t cap = (size_t)cJSON_GetArraySize(sib);
    char **list = calloc(cap ? cap : 1, sizeof *list);
    if (!list) {
        lm_seterr(err, err_size, "out of memory");
        goto done;
    }
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, sib) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "rfilename");
        if (cJSON_IsString(f) && f->valuestring && n < cap) {
            list[n] = strdup(f->valuestring);
            if (list[n]) n++;
        }
    }
    *files = list;
    *n_files = n;
    ret = HUB_OK;
done:
    cJSON_Delete(root);
    free(x.mem);
    headers_clear(&x.h);
    free(url);
    return ret;
}

/* =================================================================================================
 * Cache lookups
 * =============================================================================================== */

/* The commit a revision points to in the cache: the revision itself when it is a commit hash, else
 * refs/<revision>. malloc'd or NULL. */
static char *cache_commit(const char *repo_dir, const char *revision) {
    if (is_commit_hash(revision)) return strdup(revision);
    char *ref = fmt_alloc("%s/refs/%s", repo_dir, revision);
    char *c = ref ? read_line_file(ref) : NULL;
    free(ref);
    if (c && !valid_token(c)) {
        free(c);
        c = NULL;
    }
    return c;
}

/* The snapshot path of file for revision when it exists in the cache (malloc'd), else NULL. */
static char *cache_lookup(const char *repo_dir, const char *revision, const char *file) {
    char *commit = cache_commit(repo_dir, revision);
    if (!commit) return NULL;
    char *p = fmt_alloc("%s/snapshots/%s/%s", repo_dir, commit, file);
    free(commit);
    if (p && !is_file(p)) {
        free(p);
        p = NULL;
    }
    return p;
}

typedef struct name_list {
    char **v;
    size_t n, cap;
} name_list;

static bool names_add(name_list *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv) return false;
        l->v = nv;
        l->cap = cap;
    }
    char *d = strdup(s);
    if (!d) return false;
    l->v[l->n++] = d;
    return true;
}

static void names_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Adds the files under dir (relative names prefixed by rel) to l, recursively (depth-limited). */
static void walk_files(const char *dir, const char *rel, int depth, name_list *l) {
    if (depth > 16) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ., .., and our temporary names */
        char *full = fmt_alloc("%s/%s", dir, e->d_name);
        char *name = *rel ? fmt_alloc("%s/%s", rel, e->d_name) : strdup(e->d_name);
        struct stat st;
        if (full && name && stat(full, &st) == 0) {
            if (S_ISDIR(st.st_mode)) walk_files(full, name, depth + 1, l);
            else if (S_ISREG(st.st_mode)) names_add(l, name);
        }
        free(full);
        free(name);
    }
    closedir(d);
}

/* The files of the cached snapshot of revision (relative names). False when that snapshot is not
 * in the cache. */
static bool cache_list(const char *repo_dir, const char *revision, char ***files, size_t *n) {
    *files = NULL;
    *n = 0;
    char *commit = cache_commit(repo_dir, revision);
    if (!commit) return false;
    char *dir = fmt_alloc("%s/snapshots/%s", repo_dir, commit);
    free(commit);
    struct stat st;
    if (!dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        free(dir);
        return false;
    }
    name_list l = {0};
    walk_files(dir, "", 0, &l);
    free(dir);
    *files = l.v;
    *n = l.n;
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* Picks the one file of files[] matching pattern (fnmatch, '*' matches '/' too, as Python's
 * fnmatch). Returns it (malloc'd) or NULL with err listing the candidates (several) or the .gguf
 * files (none). `where` names the list's origin for the message. */
static char *match_one(char **files, size_t n, const char *pattern, const char *repo_id, const char *where,
                       char *err, size_t err_size) {
    qsort(files, n, sizeof *files, cmp_str);
    size_t hits = 0;
    const char *hit = NULL;
    for (size_t i = 0; i < n; i++)
        if (fnmatch(pattern, files[i], 0) == 0) {
            hits++;
            hit = files[i];
        }
    if (hits == 1) {
        char *r = strdup(hit);
        if (!r) lm_seterr(err, err_size, "out of memory");
        return r;
    }
    char list[3072] = "";
    size_t len = 0, shown = 0, total = 0;
    bool any_gguf = false;
    for (size_t i = 0; i < n; i++) any_gguf |= ends_with(files[i], ".gguf");
    for (size_t i = 0; i < n; i++) {
        bool show = hits > 1 ? fnmatch(pattern, files[i], 0) == 0 : (!any_gguf || ends_with(files[i], ".gguf"));
        if (!show) continue;
        total++;
        if (len + strlen(files[i]) + 8 < sizeof list - 16) {
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", shown ? ", " : "", files[i]);
            shown++;
        }
    }
    if (shown < total) snprintf(list + len, sizeof list - len, ", ... (%zu more)", total - shown);
    if (hits > 1)
        lm_seterr(err, err_size, "%zu files of %s%s match '%s': %s; give one exact name", hits, repo_id, where,
                  pattern, list);
    else if (total == 0)
        lm_seterr(err, err_size, "no file of %s%s matches '%s' (the repository has no files)", repo_id, where,
                  pattern);
    else
        lm_seterr(err, err_size, "no file of %s%s matches '%s'; its %s: %s", repo_id, where, pattern,
                  any_gguf ? ".gguf files are" : "files are", list);
    return NULL;
}

/* =================================================================================================
 * Download of one blob
 * =============================================================================================== */

/* Hashes the first n bytes of fd into sha. False on a read error. */
static bool hash_prefix(int fd, int64_t n, lm_sha256 *sha) {
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) return false;
    if (lseek(fd, 0, SEEK_SET) != 0) {
        free(buf);
        return false;
    }
    int64_t left = n;
    bool ok = true;
    while (left > 0) {
        ssize_t r = read(fd, buf, (size_t)LM_MIN((int64_t)cap, left));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            ok = false;
            break;
        }
        lm_sha256_update(sha, buf, (size_t)r);
        left -= r;
    }
    free(buf);
    return ok && lseek(fd, n, SEEK_SET) == n;
}

static bool is_retryable(CURLcode rc) {
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
           rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM || rc == CURLE_SSL_CONNECT_ERROR;
}

/* Downloads url into incomplete_path (resuming from its current contents), then checks its size
 * (expected >= 0) and, when sha256_hex is given, its sha256. On success the file is complete and
 * fsync'ed (the caller renames it). On bad data the .incomplete is deleted. Returns HUB_OK or an
 * error code with err set. */
static int hub_fetch_blob(const char *url, const char *endpoint, const char *token, const char *incomplete_path,
                          int64_t expected, const char *sha256_hex, const char *display_name, bool progress,
                          const char *repo_id, const char *file, const char *revision, char *err, size_t err_size) {
    int fd = open(incomplete_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        lm_seterr(err, err_size, "cannot create '%s': %s", incomplete_path, strerror(errno));
        return HUB_ERR_FATAL;
    }
    int ret = HUB_ERR_FATAL;
    bool discard = false; /* delete the .incomplete (its data is known bad) */
    lm_sha256 sha;
    lm_sha256_init(&sha);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        lm_seterr(err, err_size, "cannot stat '%s': %s", incomplete_path, strerror(errno));
        goto out;
    }
    int64_t have = (int64_t)st.st_size;
    if (expected >= 0 && have > expected) { /* not a prefix of this file: start over */
        if (ftruncate(fd, 0) != 0) {
            lm_seterr(err, err_size, "cannot truncate '%s': %s", incomplete_path, strerror(errno));
            goto out;
        }
        have = 0;
    }
    if (sha256_hex && have > 0 && !hash_prefix(fd, have, &sha)) {
        lm_seterr(err, err_size, "cannot read '%s': %s", incomplete_path, strerror(errno ? errno : EIO));
        goto out;
    }
    if (lseek(fd, have, SEEK_SET) != have) {
        lm_seterr(err, err_size, "cannot seek in '%s': %s", incomplete_path, strerror(errno));
        goto out;
    }
    /* enough room? */
    if (expected > have) {
        char *dir = dir_of(incomplete_path);
        struct statvfs vs;
        if (dir && statvfs(dir, &vs) == 0) {
            uint64_t free_b = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
            if (free_b < (uint64_t)(expected - have)) {
                char a[32], b[32];
                lm_seterr(err, err_size, "not enough disk space in %s: %s needs %s more, %s free", dir, display_name,
                          fmt_bytes((double)(expected - have), a, sizeof a), fmt_bytes((double)free_b, b, sizeof b));
                free(dir);
                goto out;
            }
        }
        free(dir);
    }

    hub_progress prog = {0};
    prog.on = progress && isatty(STDERR_FILENO);
    prog.name = display_name;
    prog.total = expected;
    prog.resumed = have;
    prog.done = have;
    prog.t0 = mono_s();

    bool complete = expected >= 0 && have == expected;
    for (int attempt = 1; !complete; attempt++) {
        hub_xfer x;
        memset(&x, 0, sizeof x);
        headers_clear(&x.h);
        x.fd = fd;
        x.file_path = incomplete_path;
        x.offset = have;
        x.expected = expected;
        x.sha = sha256_hex ? &sha : NULL;
        x.prog = &prog;
        struct curl_slist *hl = NULL;
        CURL *c = hub_easy(&x, url, endpoint, token, &hl);
        if (!c) {
            lm_seterr(err, err_size, "cannot initialize libcurl");
            goto out;
        }
        char range[48];
        if (have > 0) {
            snprintf(range, sizeof range, "%" PRId64 "-", have);
            curl_easy_setopt(c, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_file);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, env_seconds("HF_HUB_DOWNLOAD_TIMEOUT", 10));
        progress_draw(&prog, false);
        CURLcode rc = curl_easy_perform(c);
        long status = x.h.status;
        curl_easy_cleanup(c);
        curl_slist_free_all(hl);
        have = x.offset + x.got;
        if (rc == CURLE_OK) {
            headers_clear(&x.h);
            complete = true;
            break;
        }
        if (prog.drawn) {
            fputc('\n', stderr);
            prog.drawn = false;
        }
        if (x.abort_msg[0]) {
            lm_seterr(err, err_size, "download of %s from %s failed: %s", display_name, url, x.abort_msg);
            discard = x.abort_bad_data;
            headers_clear(&x.h);
            goto out;
        }
        if (rc == CURLE_HTTP_RETURNED_ERROR) {
            if (status == 416 && have > 0 && attempt < HUB_MAX_ATTEMPTS) { /* our partial file is not a prefix */
                headers_clear(&x.h);
                if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
                    lm_seterr(err, err_size, "cannot truncate '%s': %s", incomplete_path, strerror(errno));
                    goto out;
                }
                have = 0;
                lm_sha256_init(&sha);
                prog.resumed = 0;
                continue;
            }
            /* the metadata said it exists: no silent fallback mid-download, so the kind is ignored */
            (void)http_error(err, err_size, &x, url, endpoint, repo_id, file, revision, token != NULL);
            headers_clear(&x.h);
            goto out;
        }
        if (is_retryable(rc) && attempt < HUB_MAX_ATTEMPTS) {
            headers_clear(&x.h);
            if (progress)
                fprintf(stderr, "llamita: download of %s interrupted after %" PRId64 " bytes (%s); resuming\n",
                        display_name, have, x.curl_err[0] ? x.curl_err : curl_easy_strerror(rc));
            struct timespec ts = {0, 200000000L * attempt};
            nanosleep(&ts, NULL);
            continue;
        }
        {
            char msg[CURL_ERROR_SIZE + 64];
            snprintf(msg, sizeof msg, "%s", x.curl_err[0] ? x.curl_err : curl_easy_strerror(rc));
            sanitize_line(msg);
            if (expected >= 0)
                lm_seterr(err, err_size,
                          "download of %s interrupted after %" PRId64 " of %" PRId64
                          " bytes: %s (%s); run the same command again to resume",
                          display_name, have, expected, msg, url);
            else
                lm_seterr(err, err_size, "download of %s interrupted after %" PRId64 " bytes: %s (%s)", display_name,
                          have, msg, url);
        }
        headers_clear(&x.h);
        goto out;
    }
    if (prog.on) {
        prog.done = have;
        progress_draw(&prog, true);
    }
    if (fstat(fd, &st) != 0) {
        lm_seterr(err, err_size, "cannot stat '%s': %s", incomplete_path, strerror(errno));
        goto out;
    }
    if (expected >= 0 && (int64_t)st.st_size != expected) {
        lm_seterr(err, err_size,
                  "size mismatch for %s: the hub announced %" PRId64 " bytes, the download has %" PRId64
                  "; discarded (the cache is unchanged)",
                  display_name, expected, (int64_t)st.st_size);
        discard = true;
        goto out;
    }
    if (sha256_hex) {
        uint8_t dig[32];
        char hex[65];
        lm_sha256_final(&sha, dig);
        lm_sha256_hex(dig, hex);
        if (strcasecmp(hex, sha256_hex) != 0) {
            lm_seterr(err, err_size,
                      "sha256 mismatch for %s: expected %s (its ETag), got %s; discarded (the cache is unchanged)",
                      display_name, sha256_hex, hex);
            discard = true;
            goto out;
        }
    }
    if (fsync(fd) != 0) {
        lm_seterr(err, err_size, "cannot sync '%s': %s", incomplete_path, strerror(errno));
        goto out;
    }
    /* drop the written (now clean) small-folio pages: the first load reads the file back into large
     * folios, mapped with huge pages (see lm_gguf_open in gguf.c) */
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ret = HUB_OK;
out:
    close(fd);
    if (discard) unlink(incomplete_path);
    return ret;
}

/* Creates link_path -> target (relative symlink) atomically: a temporary name then rename. Falls
 * back to a hard link to blob_path where symlinks are not supported. */
static bool make_link(const char *target, const char *blob_path, const char *link_path, char *err, size_t err_size) {
    char *dir = dir_of(link_path);
    const char *base = strrchr(link_path, '/');
    base = base ? base + 1 : link_path;
    char *tmp = dir ? fmt_alloc("%s/.%s.llamita-tmp.%ld", dir, base, (long)getpid()) : NULL;
    free(dir);
    if (!tmp) {
        lm_seterr(err, err_size, "out of memory");
        return false;
    }
    unlink(tmp);
    bool ok = symlink(target, tmp) == 0;
    if (!ok && (errno == EPERM || errno == ENOSYS || errno == EOPNOTSUPP)) ok = link(blob_path, tmp) == 0;
    if (!ok) {
        lm_seterr(err, err_size, "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return false;
    }
    if (rename(tmp, link_path) != 0) {
        lm_seterr(err, err_size, "cannot create '%s': %s", link_path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return false;
    }
    free(tmp);
    return true;
}

/* Writes refs/<revision> = commit (atomically) unless it already says so. */
static bool write_ref(const char *repo_dir, const char *revision, const char *commit, char *err, size_t err_size) {
    if (is_commit_hash(revision)) return true;
    char *ref = fmt_alloc("%s/refs/%s", repo_dir, revision);
    char *dir = ref ? dir_of(ref) : NULL;
    bool ok = ref && dir && mkdir_p(dir);
    if (ok) {
        char *cur = read_line_file(ref);
        bool same = cur && !strcmp(cur, commit);
        free(cur);
        if (!same) ok = write_file_atomic(ref, commit);
    }
    if (!ok) lm_seterr(err, err_size, "cannot write '%s': %s", ref ? ref : "refs", strerror(errno ? errno : EIO));
    free(ref);
    free(dir);
    return ok;
}

/* =================================================================================================
 * llamita_hf_download
 * =============================================================================================== */

/* After a failed request (reason `why`): the cached copy of file for revision (malloc'd) when
 * there is one, announced on stderr when progress is on; else NULL. */
static char *cache_fallback(const char *repo_dir, const char *revision, const char *file, bool progress,
                            const char *why) {
    char *p = cache_lookup(repo_dir, revision, file);
    if (p && progress) fprintf(stderr, "llamita: %s\nllamita: using the cached %s\n", why, p);
    return p;
}

LLAMITA_API char *llamita_hf_download(const char *repo_id, const char *filename, const char *revision,
                                      bool progress, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!repo_id || !valid_repo_id(repo_id)) {
        lm_seterr(err, err_size, "invalid repository id '%s': expected ORG/NAME", repo_id ? repo_id : "(null)");
        return NULL;
    }
    if (!filename || !valid_rel_path(filename)) {
        lm_seterr(err, err_size, "invalid file name '%s' for %s", filename ? filename : "(null)", repo_id);
        return NULL;
    }
    if (!revision || !*revision) revision = "main";
    if (!valid_rel_path(revision)) {
        lm_seterr(err, err_size, "invalid revision '%s'", revision);
        return NULL;
    }
    pthread_once(&g_curl_once, curl_init_once);

    char *result = NULL, *cache = NULL, *repo_dir = NULL, *endpoint = NULL, *token = NULL, *file = NULL;
    char *url = NULL, *pointer = NULL, *blob = NULL, *incomplete = NULL, *lock_path = NULL, *qrev = NULL,
         *qfile = NULL, *folder = NULL, *target = NULL, *pdir = NULL;
    hub_meta meta = {0};
    int lock_fd = -1;
    const bool offline = env_true("HF_HUB_OFFLINE");

    cache = lm_hf_cache_dir(err, err_size);
    if (!cache) goto done;
    folder = repo_folder_name(repo_id);
    repo_dir = folder ? fmt_alloc("%s/%s", cache, folder) : NULL;
    endpoint = hf_endpoint();
    if (!repo_dir || !endpoint) {
        lm_seterr(err, err_size, "out of memory");
        goto done;
    }
    token = offline ? NULL : hf_token();

    /* 1. a glob picks one file, from the hub's list (or the cached snapshot's) */
    if (is_glob(filename)) {
        char **files = NULL;
        size_t n = 0;
        if (offline) {
            if (!cache_list(repo_dir, revision, &files, &n)) {
                lm_seterr(err, err_size,
                          "HF_HUB_OFFLINE is set and %s (revision %s) is not in the cache (%s); unset it to "
                          "download, or pass -m FILE",
                          repo_id, revision, repo_dir);
                goto done;
            }
            file = match_one(files, n, filename, repo_id, " (cached)", err, err_size);
        } else {
            int r = hub_list_files(endpoint, token, repo_id, revision, filename, &files, &n, err, err_size);
            if (r == HUB_OK) {
                file = match_one(files, n, filename, repo_id, "", err, err_size);
            } else if (r == HUB_ERR_FALLBACK && cache_list(repo_dir, revision, &files, &n)) {
                char saved[1024];
                snprintf(saved, sizeof saved, "%s", err ? err : "");
                file = match_one(files, n, filename, repo_id, " (cached)", err, err_size);
                if (file) {
                    result = cache_fallback(repo_dir, revision, file, progress, saved);
                    if (!result) lm_seterr(err, err_size, "%s", saved);
                    names_free(files, n);
                    goto done;
                }
                lm_seterr(err, err_size, "%s", saved);
            }
        }
        names_free(files, n);
        if (!file) goto done;
        if (!valid_rel_path(file)) {
            lm_seterr(err, err_size, "the hub lists an unusable file name '%s' in %s", file, repo_id);
            goto done;
        }
    } else {
        file = strdup(filename);
        if (!file) {
            lm_seterr(err, err_size, "out of memory");
            goto done;
        }
    }

    /* 2. a pinned commit already in the cache, or offline mode: no request */
    if (is_commit_hash(revision) || offline) {
        result = cache_lookup(repo_dir, revision, file);
        if (result) goto done;
        if (offline) {
            lm_seterr(err, err_size,
                      "HF_HUB_OFFLINE is set and %s/%s (revision %s) is not in the cache (%s); unset it to "
                      "download, or pass -m FILE",
                      repo_id, file, revision, repo_dir);
            goto done;
        }
    }

    /* 3. metadata */
    qrev = url_quote(revision, false);
    qfile = url_quote(file, true);
    url = qrev && qfile ? fmt_alloc("%s/%s/resolve/%s/%s", endpoint, repo_id, qrev, qfile) : NULL;
    if (!url) {
        lm_seterr(err, err_size, "out of memory");
        goto done;
    }
    int r = hub_head(url, endpoint, token, repo_id, file, revision, &meta, err, err_size);
    if (r != HUB_OK) {
        if (r == HUB_ERR_FALLBACK) {
            char saved[1024];
            snprintf(saved, sizeof saved, "%s", err ? err : "");
            result = cache_fallback(repo_dir, revision, file, progress, saved);
            if (result && err && err_size) err[0] = 0;
        }
        goto done;
    }

    /* 4. already there? */
    pointer = fmt_alloc("%s/snapshots/%s/%s", repo_dir, meta.commit, file);
    blob = fmt_alloc("%s/blobs/%s", repo_dir, meta.etag);
    incomplete = fmt_alloc("%s/blobs/%s.incomplete", repo_dir, meta.etag);
    lock_path = fmt_alloc("%s/.locks/%s/%s.lock", cache, folder, meta.etag);
    pdir = pointer ? dir_of(pointer) : NULL;
    if (!pointer || !blob || !incomplete || !lock_path || !pdir) {
        lm_seterr(err, err_size, "out of memory");
        goto done;
    }
    {
        /* relative target: one "../" per directory level between snapshots/<commit>/<file> and blobs */
        size_t depth = 2;
        for (const char *p = file; *p; p++) depth += *p == '/';
        size_t tl = depth * 3 + 6 + strlen(meta.etag) + 1;
        target = malloc(tl);
        if (!target) {
            lm_seterr(err, err_size, "out of memory");
            goto done;
        }
        target[0] = 0;
        for (size_t i = 0; i < depth; i++) strcat(target, "../");
        strcat(target, "blobs/");
        strcat(target, meta.etag);
    }
    if (is_file(pointer)) {
        if (!write_ref(repo_dir, revision, meta.commit, err, err_size)) goto done;
        result = pointer;
        pointer = NULL;
        goto done;
    }

    /* 5. download the blob (under the lock), link it, record the ref */
    char *blobs_dir = dir_of(blob), *lock_dir = dir_of(lock_path);
    bool dirs_ok = blobs_dir && lock_dir && mkdir_p(blobs_dir) && mkdir_p(lock_dir);
    if (!dirs_ok)
        lm_seterr(err, err_size, "cannot create the cache folders under %s: %s", repo_dir,
                  strerror(errno ? errno : ENOMEM));
    free(blobs_dir);
    free(lock_dir);
    if (!dirs_ok) goto done;
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) {
        lm_seterr(err, err_size, "cannot create the lock file '%s': %s", lock_path, strerror(errno));
        goto done;
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (progress) fprintf(stderr, "llamita: waiting for another download of %s/%s to finish\n", repo_id, file);
        while (flock(lock_fd, LOCK_EX) != 0) {
            if (errno != EINTR) {
                lm_seterr(err, err_size, "cannot lock '%s': %s", lock_path, strerror(errno));
                goto done;
            }
        }
    }
    if (!is_file(blob)) {
        /* an LFS file's ETag is its sha256: verify it */
        const char *sha = is_hex(meta.etag, 64) ? meta.etag : NULL;
        const char *slash = strrchr(file, '/');
        r = hub_fetch_blob(meta.location, endpoint, token, incomplete, meta.size, sha, slash ? slash + 1 : file,
                           progress, repo_id, file, revision, err, err_size);
        if (r != HUB_OK) goto done;
        if (rename(incomplete, blob) != 0) {
            lm_seterr(err, err_size, "cannot rename '%s' to '%s': %s", incomplete, blob, strerror(errno));
            goto done;
        }
    }
    if (!mkdir_p(pdir)) {
        lm_seterr(err, err_size, "cannot create the folder '%s': %s", pdir, strerror(errno ? errno : ENOMEM));
        goto done;
    }
    if (!make_link(target, blob, pointer, err, err_size)) goto done;
    if (!write_ref(repo_dir, revision, meta.commit, err, err_size)) goto done;
    result = pointer;
    pointer = NULL;

done:
    if (lock_fd >= 0) close(lock_fd); /* releases the flock */
    meta_free(&meta);
    free(cache);
    free(folder);
    free(repo_dir);
    free(endpoint);
    if (token) {
        memset(token, 0, strlen(token));
        free(token);
    }
    free(file);
    free(url);
    free(pointer);
    free(blob);
    free(incomplete);
    free(lock_path);
    free(qrev);
    free(qfile);
    free(target);
    free(pdir);
    return result;
}

/* =================================================================================================
 * CLI model argument
 * =============================================================================================== */

/* Decodes %XX escapes in place (for revisions such as refs%2Fpr%2F1 in hf:// URLs). */
static void url_unquote(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char h[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(h, NULL, 16);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

char *lm_resolve_model_arg(const char *m_arg, const char *hf_repo, const char *hf_file, char *err,
                           size_t err_size) {
    if (m_arg && hf_repo) {
        lm_seterr(err, err_size, "give either -m MODEL or --hf-repo REPO, not both");
        return NULL;
    }
    if (hf_file && !hf_repo) {
        lm_seterr(err, err_size, "--hf-file needs --hf-repo ORG/NAME");
        return NULL;
    }
    if (hf_repo) return llamita_hf_download(hf_repo, hf_file ? hf_file : "*.gguf", NULL, true, err, err_size);
    if (!m_arg || !*m_arg) {
        lm_seterr(err, err_size, "no model given: pass -m FILE, -m hf://ORG/NAME/FILE or --hf-repo ORG/NAME --hf-file FILE");
        return NULL;
    }
    if (strncmp(m_arg, "hf://", 5) != 0) {
        char *r = strdup(m_arg);
        if (!r) lm_seterr(err, err_size, "out of memory");
        return r;
    }
    return lm_hf_download_uri(m_arg, true, err, err_size);
}

char *lm_hf_download_uri(const char *uri, bool progress, char *err, size_t err_size) {
    if (strncmp(uri, "hf://", 5) != 0) {
        lm_seterr(err, err_size, "bad model '%s': expected hf://ORG/NAME/FILE", uri);
        return NULL;
    }
    /* hf://ORG/NAME[@REV][/FILE] */
    const char *rest = uri + 5;
    const char *s1 = strchr(rest, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    size_t repo_len = s2 ? (size_t)(s2 - rest) : strlen(rest);
    char *repo = strndup(rest, repo_len);
    if (!repo) {
        lm_seterr(err, err_size, "out of memory");
        return NULL;
    }
    char *rev = NULL;
    char *at = strchr(repo, '@');
    if (at) {
        *at = 0;
        rev = at + 1;
        url_unquote(rev);
    }
    const char *file = s2 && s2[1] ? s2 + 1 : "*.gguf";
    char *r = NULL;
    if (!s1 || s1 == rest || !valid_repo_id(repo) || !strchr(repo, '/') || (rev && !*rev))
        lm_seterr(err, err_size, "bad model '%s': expected hf://ORG/NAME/FILE (or hf://ORG/NAME@REVISION/FILE)", uri);
    else
        r = llamita_hf_download(repo, file, rev, progress, err, err_size);
    free(repo);
    return r;
}
