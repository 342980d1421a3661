/*
 * `llamita pull REPO [FILE] [--revision REV] [-q]`: downloads a file of a Hugging Face repository
 * into the hub cache (huggingface_hub's layout, see src/hub.c) — or finds it there — and prints its
 * local path on stdout. Uses llamita_hf_download() (and src/hub.h's parser for hf:// arguments).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hub.h"
#include "llamita.h"

static const char PULL_HELP[] =
    "usage: llamita pull REPO [FILE] [--revision REV] [-q]\n"
    "       llamita pull hf://ORG/NAME[@REV]/FILE\n"
    "\n"
    "Downloads FILE of the Hugging Face repository REPO (ORG/NAME) into the local cache, or finds it\n"
    "there, and prints the file's local path on stdout. FILE may be a glob such as '*Q8_0.gguf' (quote\n"
    "it): exactly one file must match, else the candidates are listed. Without FILE, the repository's\n"
    "only .gguf file.\n"
    "\n"
    "  -r, --revision REV   branch, tag or commit (default main)\n"
    "  -q, --quiet          no progress bar (it is shown only when stderr is a terminal anyway)\n"
    "\n"
    "The cache is huggingface_hub's: $HF_HUB_CACHE, else $HF_HOME/hub, else\n"
    "~/.cache/huggingface/hub, in models--ORG--NAME/{blobs,refs,snapshots}; a file downloaded by\n"
    "either tool is found by the other. Downloads resume where they stopped, and LFS files are\n"
    "checked against their size and sha256.\n"
    "\n"
    "Environment: HF_TOKEN (private or gated repositories), HF_ENDPOINT (default\n"
    "https://huggingface.co), HF_HUB_OFFLINE=1 (use the cache only).\n"
    "\n"
    "Example: llamita pull TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF tinyllama-1.1b-chat-v1.0.Q8_0.gguf\n";

static int cmd_pull(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0;
    const char *revision = NULL;
    bool quiet = false;
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (!a.no_more_opts && is_help(arg)) {
            fputs(PULL_HELP, stdout);
            return 0;
        } else if (!a.no_more_opts && !strcmp(arg, "--")) a.no_more_opts = true;
        else if (opt_val(&a, "-r", "--revision", &v)) revision = v;
        else if (opt_flag(&a, "-q", "--quiet")) quiet = true;
        else if (!a.no_more_opts && arg[0] == '-' && arg[1]) usage_error("unknown option '%s' for 'pull'", arg);
        else if (n_pos < 2) pos[n_pos++] = arg;
        else usage_error("too many arguments ('%s'): pull takes REPO and FILE", arg);
    }
    if (n_pos == 0) usage_error("missing REPO (ORG/NAME)");

    char err[2048] = "";
    char *path;
    if (!strncmp(pos[0], "hf://", 5)) {
        /* hf://ORG/NAME[@REV][/FILE]: the same parsing as -m hf://... of the other commands */
        if (pos[1] || revision)
            usage_error("give FILE and the revision inside '%s' (hf://ORG/NAME@REV/FILE), not as arguments", pos[0]);
        path = lm_hf_download_uri(pos[0], !quiet, err, sizeof err);
        if (!path) die("%s", err[0] ? err : "download failed");
    } else {
        path = llamita_hf_download(pos[0], pos[1] ? pos[1] : "*.gguf", revision, !quiet, err, sizeof err);
        if (!path) die("%s", err[0] ? err : "download failed");
    }
    printf("%s\n", path);
    free(path); /* llamita_free() is free() */
    if (fflush(stdout) != 0) die("cannot write to standard output");
    return 0;
}

const cli_command cli_cmd_pull = {
    "pull", "download a model file from the Hugging Face hub (or find it in the cache)",
    "usage: llamita pull REPO [FILE] [--revision REV] [-q]; see 'llamita pull --help'", PULL_HELP, cmd_pull};
