/*
 * Hugging Face hub downloads and cache (src/hub.c) — internal helpers.
 *
 * The public entry point is llamita_hf_download() (include/llamita.h). This header adds what the CLI
 * and the tests need on top of it:
 *  - lm_resolve_model_arg(): turns the CLI's `-m PATH`, `-m hf://ORG/NAME[@REV]/FILE` or
 *    `--hf-repo ORG/NAME [--hf-file FILE]` into a local file path, downloading when needed;
 *  - lm_hf_cache_dir(): the cache root huggingface_hub would use;
 *  - a SHA-256 implementation (FIPS 180-4), used to verify LFS downloads against their ETag and
 *    exposed so a test tool can compare it with Python's hashlib.
 */
#ifndef LM_HUB_H
#define LM_HUB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Resolves the model argument of a CLI command to a local path (malloc'd, caller frees):
 *  - m_arg "hf://ORG/NAME/FILE" or "hf://ORG/NAME@REVISION/FILE": downloaded / found in the cache
 *    with llamita_hf_download (FILE may be a glob and may contain '/'; "hf://ORG/NAME" alone means
 *    the repository's only *.gguf file);
 *  - hf_repo "ORG/NAME" (hf_file NULL = "*.gguf", which must match exactly one file): the same;
 *  - any other m_arg: returned unchanged (a copy), without checking that the file exists.
 * Progress goes to stderr when it is a terminal. m_arg together with hf_repo, hf_file without
 * hf_repo, or neither given: NULL with the reason in err. */
char *lm_resolve_model_arg(const char *m_arg, const char *hf_repo, const char *hf_file, char *err,
                           size_t err_size);

/* Downloads (or finds in the cache) the file named by uri = "hf://ORG/NAME[@REVISION][/FILE]" (FILE
 * may be a glob and contain '/'; absent = "*.gguf"; a REVISION such as refs%2Fpr%2F1 is %-decoded)
 * with llamita_hf_download. Returns the local path (malloc'd) or NULL with err. */
char *lm_hf_download_uri(const char *uri, bool progress, char *err, size_t err_size);

/* The hub cache root, as huggingface_hub computes it: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE,
 * else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub ("~"
 * expanded). malloc'd; NULL with err when no home directory can be found. */
char *lm_hf_cache_dir(char *err, size_t err_size);

/* SHA-256. Usage: init, update any number of times, final (writes 32 bytes). */
typedef struct lm_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;   /* total bytes hashed so far */
    uint8_t buf[64];    /* [64] pending partial block */
    size_t buf_len;
} lm_sha256;
void lm_sha256_init(lm_sha256 *s);
void lm_sha256_update(lm_sha256 *s, const void *data, size_t len);
void lm_sha256_final(lm_sha256 *s, uint8_t out[32]);
/* Lower-case hex of a 32-byte digest into hex[65] (NUL-terminated). */
void lm_sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
