/*
 * Benchmark data sets for `llamita eval` (src/evaldata.c): reading the data files of the seed's seven
 * tasks (plus LAMBADA) in the formats users have, and turning every item into the texts that are scored.
 *
 * An item is a multiple-choice question: choice i is scored as the log-likelihood of the text cont[i]
 * given the text ctx[i] (the model sees ctx[i] immediately followed by cont[i]). Most tasks share one
 * context between all choices (ctx[i] all equal, the strings themselves may be shared or copies);
 * WinoGrande's "partial" scoring has a different context per choice and one shared continuation.
 * The prompt texts follow lm-evaluation-harness (the reference for the seed's table), see
 * docs/eval.md; e.g. ARC: ctx = "Question: {q}\nAnswer:", cont = " {choice}".
 *
 * Supported inputs (the format is detected from the content, not the file name):
 *  - llm-foundry JSONL, {"query", "choices", "gold"} (ARC, BoolQ, OpenBookQA, PIQA, HellaSwag) and
 *    {"context_options", "continuation", "gold"} (WinoGrande), {"context", "continuation"} (LAMBADA:
 *    one choice, gold 0; scored for greedy exact match and perplexity);
 *  - llama.cpp's hellaswag_val_full.txt (6 lines per task: context, gold index, 4 endings);
 *  - PIQA's original valid.jsonl {"goal","sol1","sol2"} with its labels file (one 0/1 per line; by
 *    default the file named like the data with "-labels.lst" in place of ".jsonl");
 *  - the OpenBookQA TSV (ID, Question Stem, Choices "(A) .. (B) .. (C) .. (D) ..", Complete Question,
 *    Answer Key; the header row is optional, columns are found by its names);
 *  - also (not in ../shared): WinoGrande's original jsonl {"sentence","option1","option2","answer"} and
 *    the HF HellaSwag jsonl {"activity_label","ctx_a","ctx_b","endings","label"} (harness preprocess).
 * The exact rule of every task and format is the table at the top of src/evaldata.c (for docs/eval.md).
 * Note: llama.cpp's hellaswag_val_full.txt is used as given (= what llama.cpp's --hellaswag scores); it
 * differs from the harness's text in that ctx_b was not capitalized (~3240 of 10042 contexts end in a
 * lower-case sentence start, e.g. "... on a roof. he" where the harness has "... on a roof. He").
 */
#ifndef LM_EVALDATA_H
#define LM_EVALDATA_H
#include <stddef.h>
#include <stdint.h>

typedef enum lm_eval_task {
    LM_TASK_HELLASWAG,
    LM_TASK_OPENBOOKQA,
    LM_TASK_WINOGRANDE,
    LM_TASK_ARC_CHALLENGE,
    LM_TASK_ARC_EASY,
    LM_TASK_BOOLQ,
    LM_TASK_PIQA,
    LM_TASK_LAMBADA,
    LM_TASK_COUNT
} lm_eval_task;

/* Task name as on the command line ("hellaswag", "openbookqa", "winogrande", "arc_challenge",
 * "arc_easy", "boolq", "piqa", "lambada"); lm_eval_task_from_name returns -1 for an unknown name. */
const char *lm_eval_task_name(lm_eval_task task);
int lm_eval_task_from_name(const char *name);

typedef struct lm_eval_item {
    int32_t n_choices; /* >= 1 (LAMBADA 1, BoolQ 2, PIQA 2, WinoGrande 2, others usually 4) */
    char **ctx;        /* [n_choices] context text of each choice (UTF-8, NUL-terminated) */
    char **cont;       /* [n_choices] continuation text scored for each choice (non-empty) */
    int32_t gold;      /* index of the right choice, in [0, n_choices) */
    int32_t line;      /* 1-based line of the data file where the item starts (for messages) */
} lm_eval_item;

typedef struct lm_eval_set {
    lm_eval_task task;
    int32_t n_items;
    lm_eval_item *items; /* [n_items] */
    char *source;        /* a copy of the data file's path (the format detected is in `format`) */
    const char *format;  /* static string: "llm-foundry jsonl", "hellaswag txt", "piqa jsonl", "obqa tsv",
                            "winogrande jsonl" or "hellaswag jsonl" */
    void *priv;          /* loader's own storage (string arena) */
} lm_eval_set;

/* Reads a data file for a task. labels_path is only used by formats with a separate labels file (PIQA's
 * original format; NULL = the default name next to the data). limit > 0 keeps only the first `limit`
 * items (the rest of the file is not checked: reading stops there). Returns NULL on
 * error with a message naming the file, the line and what was wrong (e.g. "x.jsonl:12: "gold" is 4 but
 * there are 4 choices", "x.jsonl:3: empty choice 2", "x.jsonl:7: missing field "query""), or when the
 * file's format does not fit the task. The caller frees the set with lm_eval_set_free.
 * Items: ctx[i] of choices that share a context are the same pointer (compare pointers to find shared
 * contexts cheaply; the scorer may also compare the strings). Strings are never empty except possibly
 * ctx (a continuation always starts with " "). A PIQA labels file must have exactly one 0/1 line per data
 * item (at least as many when `limit` stops early). */
lm_eval_set *lm_eval_load(lm_eval_task task, const char *path, const char *labels_path, int32_t limit,
                          char *err, size_t err_size);
void lm_eval_set_free(lm_eval_set *set);

/* Finds the data file of a task in a folder (for `--suite seed --data-dir DIR`): the first that exists
 * of the names users have, e.g. hellaswag: "hellaswag_val_full.txt", "llmfoundry_hellaswag.jsonl",
 * "hellaswag.jsonl"; arc_easy: "llmfoundry_arc_easy.jsonl", "arc_easy.jsonl"; ... Returns a malloc'ed
 * path (caller frees) or NULL with a message listing the names tried. */
char *lm_eval_find_data(lm_eval_task task, const char *dir, char *err, size_t err_size);

#endif
