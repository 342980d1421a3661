#!/usr/bin/env python3
"""Independent reader of the benchmark data files (the Python side of tests/test_evaldata.c).

Builds each item's texts the way lm-evaluation-harness does (zero-shot), written from the harness's task
definitions and not from src/evaldata.c, and prints one JSON object per item:
    {"line": L, "gold": G, "ctx": [...], "cont": [...]}
Usage: evaldata_np.py TASK FILE [--labels FILE] [--limit N]
Only the happy path: the C loader's error handling is tested in C.
"""
import csv
import json
import re
import sys


def question_answer(q):
    q = q[:-1] if q.endswith("\n") else q
    if not q.startswith("Question: "):
        q = "Question: " + q
    return q + "\nAnswer:"


def hs_pre(text):
    # harness: lm_eval/tasks/hellaswag/utils.py preprocess()
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def item(line, gold, ctx, cont):
    return {"line": line, "gold": gold, "ctx": ctx, "cont": cont}


def numbered_lines(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    return [(i + 1, l[:-1] if l.endswith("\r") else l) for i, l in enumerate(lines)]


def read_jsonl(task, path, labels):
    out = []
    for ln, s in numbered_lines(path):
        if not s.strip():
            continue
        d = json.loads(s)
        if "context_options" in d:
            c = " " + d["continuation"]
            opts = d["context_options"]
            out.append(item(ln, d["gold"], list(opts), [c] * len(opts)))
        elif "sentence" in d:
            i = d["sentence"].index("_")
            c = " " + d["sentence"][i + 1:].strip()
            ctx = [d["sentence"][:i] + d["option1"], d["sentence"][:i] + d["option2"]]
            out.append(item(ln, int(d["answer"]) - 1, ctx, [c, c]))
        elif "goal" in d:
            ctx = question_answer(d["goal"])
            out.append(item(ln, None, [ctx, ctx], [" " + d["sol1"], " " + d["sol2"]]))
        elif "query" in d:
            q = d["query"]
            if task in ("arc_easy", "arc_challenge", "piqa"):
                ctx = question_answer(q)
            elif task == "boolq":
                ctx = (q[len("Passage: "):] if q.startswith("Passage: ") else q) + "\nAnswer:"
            else:
                ctx = q
            n = len(d["choices"])
            out.append(item(ln, d["gold"], [ctx] * n, [" " + c for c in d["choices"]]))
        elif "ctx_a" in d:
            ctx = hs_pre(d["activity_label"] + ": " + d["ctx_a"] + " " + d["ctx_b"].capitalize())
            n = len(d["endings"])
            out.append(item(ln, int(d["label"]), [ctx] * n, [" " + hs_pre(e) for e in d["endings"]]))
        else:
            out.append(item(ln, 0, [d["context"]], [" " + d["continuation"]]))
    if out and out[0]["gold"] is None:
        if labels is None:
            labels = path[:-6] + "-labels.lst" if path.endswith(".jsonl") else path + "-labels.lst"
        with open(labels) as f:
            labs = [int(x) for x in f.read().split()]
        for it, g in zip(out, labs):
            it["gold"] = g
    return out


def read_hellaswag_txt(path):
    lines = [l for _, l in numbered_lines(path)]
    while lines and not lines[-1].strip():
        lines.pop()
    out = []
    for b in range(0, len(lines), 6):
        ctx = lines[b]
        out.append(item(b + 1, int(lines[b + 1]), [ctx] * 4, [" " + e for e in lines[b + 2:b + 6]]))
    return out


def read_obqa_tsv(path):
    out = []
    hdr = ["ID", "Question Stem", "Choices", "Complete Question", "Answer Key"]
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    for i, r in enumerate(rows):
        if i == 0 and r[0] == "ID":
            hdr = r
            continue
        if not r:
            continue
        d = dict(zip(hdr, r))
        choices = re.split(r" \([B-Z]\) ", d["Choices"][len("(A) "):])
        stem = d["Question Stem"]
        out.append(item(i + 1, ord(d["Answer Key"].strip()) - ord("A"), [stem] * len(choices),
                        [" " + c for c in choices]))
    return out


def main(argv):
    task, path = argv[1], argv[2]
    labels, limit = None, 0
    i = 3
    while i < len(argv):
        if argv[i] == "--labels":
            labels = argv[i + 1]
        elif argv[i] == "--limit":
            limit = int(argv[i + 1])
        i += 2
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip("\ufeff \t\r\n")
    if head.startswith("{"):
        items = read_jsonl(task, path, labels)
    elif "\t" in head.split("\n")[0]:
        items = read_obqa_tsv(path)
    else:
        items = read_hellaswag_txt(path)
    if limit > 0:
        items = items[:limit]
    w = sys.stdout
    for it in items:
        w.write(json.dumps(it, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv)
