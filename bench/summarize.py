#!/usr/bin/env python3
"""Summarizes a bench/compare.sh results folder as Markdown (stdout). Python 3 standard library only.

    python3 bench/summarize.py RESULTS_DIR

Per type and thread count: pp and tg tokens/s of llamita and llama.cpp (median over the A/B rounds
of each round's mean: a round disturbed by another process on this shared machine does not move
it), their ratio (the median of the per-round ratios, with their range), the memory bandwidth
measured by membw in the same rounds (median of the rounds' best), the bytes a decode step reads
(every weight except token_embd, of which one row, plus the KV cache rows attended to, on average
(N + 1) / 2 cells over a tgN run), the bandwidth bound (bandwidth / bytes per token) and the
fraction of it each engine reaches. Then peak RSS against file size + KV cache (n_ctx 2048) + 64 MB.
"""
import glob
import json
import os
import re
import statistics
import sys


def read_info(path):
    """Tensor bytes and hyperparameters from `llamita info` output."""
    tensors, hp = {}, {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^\s*\d+\s+(\S+)\s+(\S+)\s+\[(.*?)\]\s+(\d+)\s+(\d+)\s*$", line)
            if m:
                tensors[m.group(1)] = int(m.group(5))
                continue
            m = re.match(r"^\s+llama\.(\S+)\s+\S+\s+(\S+)\s*$", line)
            if m:
                hp[m.group(1)] = m.group(2)
            m = re.match(r"^\s+(n_vocab|n_layer|n_embd|n_head|n_head_kv)\s+(\d+)", line)
            if m:
                hp[m.group(1)] = m.group(2)
    return tensors, hp


def bytes_per_token(tensors, hp, n_gen):
    n_vocab = int(hp["n_vocab"])
    n_layer, n_embd = int(hp["n_layer"]), int(hp["n_embd"])
    n_head, n_head_kv = int(hp["n_head"]), int(hp["n_head_kv"])
    head_dim = n_embd // n_head
    weights = sum(b for name, b in tensors.items() if name != "token_embd.weight")
    weights += tensors.get("token_embd.weight", 0) / n_vocab  # one row
    kv_cell = n_layer * n_head_kv * head_dim * 2 * 2  # K and V, f16
    return weights + kv_cell * (n_gen + 1) / 2.0, weights, kv_cell


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def speed(entries, engine, kind):
    """tokens/s of the pp (kind 'pp') or tg test in one bench JSON output."""
    for e in entries or []:
        n_prompt, n_gen = e.get("n_prompt", 0), e.get("n_gen", 0)
        if (kind == "pp" and n_prompt > 0 and n_gen == 0) or (kind == "tg" and n_gen > 0 and n_prompt == 0):
            return e["tokens_per_second"] if engine == "llamita" else e["avg_ts"]
    return None


def fmt(x, nd=2):
    return "—" if x is None else ("%.*f" % (nd, x))


def main():
    out = sys.argv[1]
    env = open(os.path.join(out, "env.txt")).read() if os.path.exists(os.path.join(out, "env.txt")) else ""
    m = re.search(r"P=(\d+) N=(\d+)", env)
    P, N = (int(m.group(1)), int(m.group(2))) if m else (512, 128)
    build = None
    for p in glob.glob(os.path.join(out, "llamacpp-*.json")):
        d = load_json(p)
        if d:
            build = "%s (%s)" % (d[0].get("build_commit"), d[0].get("build_number"))
            break
    print("```\n" + env.strip() + ("\nllama.cpp build: %s" % build if build else "") + "\n```\n")
    types = []
    for p in sorted(glob.glob(os.path.join(out, "llamita-*-t*-r*.json"))):
        t = re.match(r".*/llamita-(.+)-t\d+-r\d+\.json$", p).group(1)
        if t not in types:
            types.append(t)
    order = ["F16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"]
    types.sort(key=lambda t: order.index(t) if t in order else 99)

    rows = []
    print("| type | threads | pp%d llamita | pp%d llama.cpp | pp ratio | tg%d llamita | tg%d llama.cpp | tg ratio "
          "| bandwidth GB/s | MB read / token | tg bound t/s | llamita %% of bound | llama.cpp %% of bound |" % (P, P, N, N))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in types:
        info = os.path.join(out, "info-%s.txt" % t)
        bpt = None
        if os.path.exists(info):
            tensors, hp = read_info(info)
            bpt, _, _ = bytes_per_token(tensors, hp, N)
        threads = sorted({int(re.match(r".*-t(\d+)-r\d+\.json$", p).group(1))
                          for p in glob.glob(os.path.join(out, "llamita-%s-t*-r*.json" % t))})
        for th in threads:
            rounds = sorted(glob.glob(os.path.join(out, "llamita-%s-t%d-r*.json" % (t, th))))
            res = {"llamita": {"pp": [], "tg": []}, "llama.cpp": {"pp": [], "tg": []}}
            ratios = {"pp": [], "tg": []}
            bws = []
            for p in rounds:
                r = re.match(r".*-r(\d+)\.json$", p).group(1)
                a = load_json(p)
                b = load_json(os.path.join(out, "llamacpp-%s-t%d-r%s.json" % (t, th, r)))
                for kind in ("pp", "tg"):
                    sa, sb = speed(a, "llamita", kind), speed(b, "llama.cpp", kind)
                    if sa is not None:
                        res["llamita"][kind].append(sa)
                    if sb is not None:
                        res["llama.cpp"][kind].append(sb)
                    if sa is not None and sb:
                        ratios[kind].append(sa / sb)
                mb = os.path.join(out, "membw-%s-t%d-r%s.txt" % (t, th, r))
                if os.path.exists(mb):
                    mm = re.search(r"best_gbs=([0-9.]+)", open(mb).read())
                    if mm:
                        bws.append(float(mm.group(1)))
            mean = {e: {k: (statistics.median(v) if v else None) for k, v in d.items()} for e, d in res.items()}
            bw = statistics.median(bws) if bws else None
            bound = bw * 1e9 / bpt if (bw and bpt) else None

            def ratio(kind):
                rr = ratios[kind]
                if not rr:
                    return "—"
                rng = " (%.2f–%.2f)" % (min(rr), max(rr)) if len(rr) > 1 else ""
                return "%.2f×%s" % (statistics.median(rr), rng)

            def frac(e):
                v = mean[e]["tg"]
                return "—" if (v is None or not bound) else "%.0f%%" % (100.0 * v / bound)

            print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, th, fmt(mean["llamita"]["pp"]), fmt(mean["llama.cpp"]["pp"]), ratio("pp"),
                fmt(mean["llamita"]["tg"]), fmt(mean["llama.cpp"]["tg"]), ratio("tg"), fmt(bw, 1),
                fmt(bpt / 1e6 if bpt else None, 1), fmt(bound, 1), frac("llamita"), frac("llama.cpp")))
            rows.append((t, th))

    # peak RSS
    rss = {}
    for eng, name in (("llamita", "rss-llamita.txt"), ("llama.cpp", "rss-llamacpp.txt")):
        p = os.path.join(out, name)
        if os.path.exists(p):
            mm = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(p).read())
            if mm:
                rss[eng] = int(mm.group(1)) * 1024
    info = os.path.join(out, "info-Q8_0.txt")
    if rss and os.path.exists(info):
        tensors, hp = read_info(info)
        mm = re.search(r"model_file_pattern: (\S+)", env)
        f = mm.group(1).replace("TYPE", "Q8_0") if mm else ""
        fsize = os.path.getsize(f) if os.path.exists(f) else sum(tensors.values())
        _, _, kv_cell = bytes_per_token(tensors, hp, N)
        kv = kv_cell * 2048
        limit = fsize + kv + 64 * 2**20
        print("\nPeak RSS, Q8_0, n_ctx 2048 (file %.1f MiB + KV cache %.1f MiB + 64 MiB = %.1f MiB allowed):\n"
              % (fsize / 2**20, kv / 2**20, limit / 2**20))
        print("| engine | peak RSS MiB | within bound |")
        print("|---|---:|---|")
        for eng, v in rss.items():
            print("| %s | %.1f | %s |" % (eng, v / 2**20, "yes" if v <= limit else "no (+%.1f MiB)" % ((v - limit) / 2**20)))


if __name__ == "__main__":
    main()
