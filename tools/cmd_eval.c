/*
 * `llamita eval`: accuracy on multiple-choice benchmarks (HellaSwag, OpenBookQA, WinoGrande, ARC-c,
 * ARC-e, BoolQ, PIQA, LAMBADA), scored as lm-evaluation-harness does (src/eval.c, docs/eval.md), or
 * HellaSwag as llama.cpp's --hellaswag does (--scoring llamacpp); `--suite seed` runs the seed's
 * seven tasks and prints its table with the average.
 *
 * Output: stdout gets a Markdown table (-o md) or a JSON list of {task, metric, score, stderr, n}
 * (-o json; scores in percent, ppl plain); stderr gets a progress bar with ETA (redrawn on a
 * terminal, otherwise a line every 10%). --dump-ll FILE writes one JSON object per item with the
 * per-choice log-likelihoods.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "eval.h"
#include "evaldata.h"
#include "llamita.h"

static const char EVAL_HELP[] =
    "usage: llamita eval -m MODEL --task TASK --data FILE [options]\n"
    "       llamita eval --suite seed -m MODEL --data-dir DIR [options]\n"
    "\n"
    "Scores a model on a multiple-choice benchmark: the log-likelihood of each choice given the\n"
    "context, as lm-evaluation-harness computes it; reports acc, acc_norm (normalized by the choice's\n"
    "length in characters) and their standard errors. See docs/eval.md.\n"
    "\n"
    "  -m, --model FILE      GGUF model\n"
    "      --task TASK       hellaswag, openbookqa, winogrande, arc_challenge, arc_easy, boolq, piqa,\n"
    "                        lambada\n"
    "      --data FILE       data file (llm-foundry JSONL, hellaswag_val_full.txt, PIQA valid.jsonl,\n"
    "                        OpenBookQA TSV; the format is detected)\n"
    "      --labels FILE     labels of PIQA's original valid.jsonl (default: next to the data)\n"
    "      --suite seed      run the seed's seven tasks, files found in --data-dir DIR\n"
    "      --data-dir DIR    folder with the data files of the suite\n"
    "      --limit N         only the first N items of each task\n"
    "      --scoring S       harness (default) or llamacpp (mean log-prob per token after the prefix\n"
    "                        common to the choices, with BOS, as llama-perplexity --hellaswag)\n"
    "      --bos yes|no      put BOS first (default: no for harness scoring, as the harness does with\n"
    "                        Llama tokenizers; the model's add_bos for llamacpp scoring)\n"
    "  -t, --threads N       threads (default: physical cores)\n"
    "  -c, --ctx-size N      longest sequence evaluated; longer ones are left-truncated (default 2048;\n"
    "                        harness scoring: the model's training context if smaller)\n"
    "  -b, --batch-size N    tokens per forward step (default 512)\n"
    "  -o, --output FMT      md (default) or json\n"
    "      --dump-ll FILE    write one JSON line per item: line, gold, predictions, per-choice ll,\n"
    "                        token counts and greedy flags\n"
    "\n"
    "Example: llamita eval -m model.gguf --task arc_easy --data llmfoundry_arc_easy.jsonl --limit 200\n";

static const lm_eval_task SEED_TASKS[7] = {LM_TASK_HELLASWAG, LM_TASK_OPENBOOKQA,   LM_TASK_WINOGRANDE,
                                           LM_TASK_ARC_CHALLENGE, LM_TASK_ARC_EASY, LM_TASK_BOOLQ,
                                           LM_TASK_PIQA};
static const char *const SEED_NAMES[7] = {"HellaSwag", "OBQA", "WinoGrande", "ARC-c", "ARC-e", "BoolQ", "PIQA"};

typedef struct eval_cfg {
    const char *fmt;
    lm_eval_opts opts;
    int32_t limit;
    FILE *dump;
    bool tty;
} eval_cfg;

/* One finished task: its metrics and time. */
typedef struct task_result {
    lm_eval_task task;
    int32_t n_metrics;
    lm_eval_metric m[2];
    double seconds;
} task_result;

/* Progress on stderr: a redrawn bar on a terminal, else a line at every 10%. */
typedef struct progress {
    bool tty;
    const char *name;
    int32_t total;
    double t0;
    int last_decile;
} progress;

static void progress_show(progress *p, int32_t done) {
    const double el = now_s() - p->t0;
    const double frac = p->total > 0 ? (double)done / p->total : 1.0;
    const double eta = done > 0 ? el / done * (p->total - done) : 0.0;
    if (p->tty) {
        char bar[31];
        const int w = (int)(frac * 30.0);
        for (int i = 0; i < 30; i++) bar[i] = i < w ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%-14s [%s] %6d/%-6d %5.1f%%  %6.1fs  ETA %6.1fs ", p->name, bar, (int)done,
                (int)p->total, 100.0 * frac, el, eta);
        if (done >= p->total) fputc('\n', stderr);
        fflush(stderr);
    } else {
        const int dec = (int)(frac * 10.0);
        if (dec > p->last_decile || done >= p->total) {
            p->last_decile = dec;
            fprintf(stderr, "%s: %d/%d items (%.0f%%), %.1fs, ETA %.1fs\n", p->name, (int)done, (int)p->total,
                    100.0 * frac, el, eta);
        }
    }
}

/* Writes one item's result as a JSON line. */
static void dump_item(FILE *f, lm_eval_task task, const lm_eval_item *it, const lm_eval_choice *r,
                      lm_eval_scoring scoring) {
    int32_t pa, pn;
    lm_eval_predict(it, r, scoring, &pa, &pn);
    fprintf(f, "{\"task\": \"%s\", \"line\": %d, \"gold\": %d, \"pred\": %d, \"pred_norm\": %d, \"ll\": [",
            lm_eval_task_name(task), (int)it->line, (int)it->gold, (int)pa, (int)pn);
    for (int32_t c = 0; c < it->n_choices; c++) fprintf(f, "%s%.17g", c ? ", " : "", r[c].ll);
    fprintf(f, "], \"n_tokens\": [");
    for (int32_t c = 0; c < it->n_choices; c++) fprintf(f, "%s%d", c ? ", " : "", (int)r[c].n_tokens);
    fprintf(f, "], \"greedy\": [");
    for (int32_t c = 0; c < it->n_choices; c++) fprintf(f, "%s%s", c ? ", " : "", r[c].greedy ? "true" : "false");
    fprintf(f, "]}\n");
}

/* Loads and scores one task; fills *tr. Dies with "error: ..." on bad data. */
static void run_task(llamita_model *m, lm_eval_task task, const char *data, const char *labels,
                     const eval_cfg *cfg, task_result *tr) {
    char err[1024] = "";
    lm_eval_set *set = lm_eval_load(task, data, labels, cfg->limit, err, sizeof err);
    if (!set) die("%s", err);
    if (set->n_items == 0) die("%s: no items", data);
    lm_eval_opts o = cfg->opts;
    if (task == LM_TASK_LAMBADA) o.scoring = LM_SCORING_HARNESS; /* one choice: no common-prefix rule */
    int32_t max_choices = 1, n_res = 0;
    for (int32_t i = 0; i < set->n_items; i++) {
        max_choices = (set->items[i].n_choices > max_choices ? set->items[i].n_choices : max_choices);
        n_res += set->items[i].n_choices;
    }
    lm_eval_scorer *sc = lm_eval_scorer_new(m, &o, max_choices, err, sizeof err);
    if (!sc) die("%s: %s", lm_eval_task_name(task), err);
    lm_eval_choice *res = xmalloc(sizeof *res * (size_t)n_res);
    double *x = xmalloc(sizeof *x * (size_t)set->n_items);
    progress pg = {cfg->tty, lm_eval_task_name(task), set->n_items, now_s(), 0};
    progress_show(&pg, 0);
    int32_t done = 0, k = 0;
    while (done < set->n_items) {
        const int32_t n = lm_eval_score_pack(sc, set->items + done, set->n_items - done, res + k, err, sizeof err);
        if (n < 0) die("%s: %s", data, err);
        for (int32_t i = done; i < done + n; i++) {
            if (cfg->dump) dump_item(cfg->dump, task, &set->items[i], res + k, o.scoring);
            k += set->items[i].n_choices;
        }
        done += n;
        progress_show(&pg, done);
    }
    tr->task = task;
    tr->seconds = now_s() - pg.t0;
    int64_t n_dec = 0, n_rows = 0, n_calls = 0;
    lm_eval_scorer_stats(sc, &n_dec, &n_rows, &n_calls);
    fprintf(stderr, "%s: %d items in %.1f s: %lld tokens decoded in %lld forward calls (%.0f tokens/s), %lld logits rows\n",
            lm_eval_task_name(task), (int)set->n_items, tr->seconds, (long long)n_dec, (long long)n_calls,
            tr->seconds > 0 ? (double)n_dec / tr->seconds : 0.0, (long long)n_rows);
    tr->n_metrics = lm_eval_metrics(task, o.scoring, set->items, set->n_items, res, x, tr->m);
    free(x);
    free(res);
    lm_eval_scorer_free(sc);
    lm_eval_set_free(set);
}

static void print_md_rows(const task_result *r, int n) {
    printf("| task | metric | score | ± | n | time |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < r[i].n_metrics; j++) {
            const lm_eval_metric *mm = &r[i].m[j];
            printf("| %s | %s | %.2f | %.2f | %d | %.1f s |\n", lm_eval_task_name(r[i].task), mm->metric,
                   mm->score, mm->stderr_, (int)mm->n, r[i].seconds);
        }
}

/* The seed's metric of a task result (acc_norm or acc). */
static const lm_eval_metric *seed_metric(const task_result *r) {
    const char *want = lm_eval_seed_metric(r->task);
    for (int j = 0; j < r->n_metrics; j++)
        if (!strcmp(r->m[j].metric, want)) return &r->m[j];
    return &r->m[0];
}

static int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *task_name = NULL, *data = NULL, *labels = NULL, *suite = NULL,
               *data_dir = NULL, *dump_path = NULL;
    eval_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fmt = "md";
    cfg.opts = lm_eval_default_opts();
    args a = {argc, 2, argv, false};
    for (; a.i < argc; a.i++) {
        const char *arg = argv[a.i], *v;
        if (is_help(arg)) {
            fputs(EVAL_HELP, stdout);
            return 0;
        } else if (opt_val(&a, "-m", "--model", &v)) model_path = v;
        else if (opt_val(&a, NULL, "--task", &v)) task_name = v;
        else if (opt_val(&a, NULL, "--data", &v)) data = v;
        else if (opt_val(&a, NULL, "--labels", &v)) labels = v;
        else if (opt_val(&a, NULL, "--suite", &v)) suite = v;
        else if (opt_val(&a, NULL, "--data-dir", &v)) data_dir = v;
        else if (opt_val(&a, NULL, "--dump-ll", &v)) dump_path = v;
        else if (opt_val(&a, NULL, "--limit", &v)) cfg.limit = (int32_t)parse_int(arg, v, 1, INT32_MAX);
        else if (opt_val(&a, "-t", "--threads", &v)) cfg.opts.n_threads = (int32_t)parse_int(arg, v, 1, 512);
        else if (opt_val(&a, "-c", "--ctx-size", &v)) cfg.opts.max_len = (int32_t)parse_int(arg, v, 8, 1 << 20);
        else if (opt_val(&a, "-b", "--batch-size", &v)) cfg.opts.n_batch = (int32_t)parse_int(arg, v, 1, 1 << 16);
        else if (opt_val(&a, NULL, "--scoring", &v)) {
            if (!strcmp(v, "harness")) cfg.opts.scoring = LM_SCORING_HARNESS;
            else if (!strcmp(v, "llamacpp")) cfg.opts.scoring = LM_SCORING_LLAMACPP;
            else usage_error("--scoring: unknown method '%s' (harness or llamacpp)", v);
        } else if (opt_val(&a, NULL, "--bos", &v)) {
            if (!strcmp(v, "yes")) cfg.opts.bos = 1;
            else if (!strcmp(v, "no")) cfg.opts.bos = 0;
            else usage_error("--bos: '%s' (yes or no)", v);
        } else if (opt_val(&a, "-o", "--output", &v)) {
            if (strcmp(v, "md") != 0 && strcmp(v, "json") != 0)
                usage_error("-o: unknown output format '%s' (md or json)", v);
            cfg.fmt = v;
        } else usage_error("unknown option '%s' for 'eval'", arg);
    }
    if (!model_path) usage_error("missing -m MODEL");
    if (suite) {
        if (strcmp(suite, "seed") != 0) usage_error("--suite: unknown suite '%s' (seed)", suite);
        if (!data_dir) usage_error("--suite seed needs --data-dir DIR");
        if (task_name || data) usage_error("--suite and --task/--data are exclusive");
    } else {
        if (!task_name) usage_error("missing --task TASK (or --suite seed)");
        if (!data) usage_error("missing --data FILE");
        if (data_dir) usage_error("--data-dir goes with --suite");
    }
    int task = -1;
    if (task_name) {
        task = lm_eval_task_from_name(task_name);
        if (task < 0)
            usage_error("--task: unknown task '%s' (hellaswag, openbookqa, winogrande, arc_challenge, "
                        "arc_easy, boolq, piqa, lambada)", task_name);
    }
    const bool json = !strcmp(cfg.fmt, "json");
    cfg.tty = isatty(fileno(stderr)) != 0;
    char err[1024] = "";
    /* find every data file first, so a missing one fails before minutes of work */
    char *paths[7] = {0};
    if (suite)
        for (int i = 0; i < 7; i++) {
            paths[i] = lm_eval_find_data(SEED_TASKS[i], data_dir, err, sizeof err);
            if (!paths[i]) die("%s", err);
        }
    if (dump_path) {
        cfg.dump = fopen(dump_path, "w");
        if (!cfg.dump) die("--dump-ll: cannot write '%s'", dump_path);
    }
    llamita_model *m = load_model(model_path, false);
    task_result res[7];
    int n_res = 0;
    if (suite)
        for (int i = 0; i < 7; i++) run_task(m, SEED_TASKS[i], paths[i], NULL, &cfg, &res[n_res++]);
    else run_task(m, (lm_eval_task)task, data, labels, &cfg, &res[n_res++]);

    /* average of the seed's metrics (standard error: independent tasks, sqrt(sum se^2) / 7) */
    double avg = 0.0, avg_se = 0.0;
    if (suite) {
        for (int i = 0; i < 7; i++) {
            const lm_eval_metric *mm = seed_metric(&res[i]);
            avg += mm->score / 7.0;
            avg_se += mm->stderr_ * mm->stderr_;
        }
        avg_se = sqrt(avg_se) / 7.0;
    }
    if (json) {
        printf("[\n");
        bool first = true;
        for (int i = 0; i < n_res; i++)
            for (int j = 0; j < res[i].n_metrics; j++) {
                const lm_eval_metric *mm = &res[i].m[j];
                printf("%s  {\"task\": ", first ? "" : ",\n");
                cli_json_str(stdout, lm_eval_task_name(res[i].task));
                printf(", \"metric\": ");
                cli_json_str(stdout, mm->metric);
                printf(", \"score\": %.4f, \"stderr\": %.4f, \"n\": %d}", mm->score, mm->stderr_, (int)mm->n);
                first = false;
            }
        if (suite) printf(",\n  {\"task\": \"average\", \"metric\": \"seed\", \"score\": %.4f, \"stderr\": %.4f, \"n\": 7}",
                          avg, avg_se);
        printf("\n]\n");
    } else {
        print_md_rows(res, n_res);
        if (suite) {
            printf("\n|");
            for (int i = 0; i < 7; i++) printf(" %s |", SEED_NAMES[i]);
            printf(" average |\n|");
            for (int i = 0; i < 8; i++) printf("---|");
            printf("\n|");
            for (int i = 0; i < 7; i++) printf(" %.2f ± %.2f |", seed_metric(&res[i])->score, seed_metric(&res[i])->stderr_);
            printf(" %.2f ± %.2f |\n", avg, avg_se);
            printf("\n(acc_norm for HellaSwag, OBQA, ARC-c, ARC-e, PIQA; acc for WinoGrande, BoolQ; %s scoring)\n",
                   cfg.opts.scoring == LM_SCORING_LLAMACPP ? "llama.cpp" : "lm-evaluation-harness");
        }
    }
    if (fflush(stdout) != 0) die("cannot write to standard output");
    if (cfg.dump && fclose(cfg.dump) != 0) die("--dump-ll: cannot write '%s'", dump_path);
    for (int i = 0; i < 7; i++) free(paths[i]);
    llamita_model_free(m);
    return 0;
}

const cli_command cli_cmd_eval = {
    "eval", "accuracy on HellaSwag, OBQA, WinoGrande, ARC, BoolQ, PIQA, LAMBADA (lm-eval-harness scoring)",
    "usage: llamita eval -m MODEL --task TASK --data FILE [--limit N] [-o md|json] | --suite seed --data-dir DIR; "
    "see 'llamita eval --help'",
    EVAL_HELP, cmd_eval};
