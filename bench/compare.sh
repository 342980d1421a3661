#!/usr/bin/env bash
# bench/compare.sh — llamita vs llama.cpp on the same synthetic TinyLlama-shaped files, interleaved.
#
#   bench/compare.sh [LLAMA_CPP_BIN]
#
# LLAMA_CPP_BIN (argument or environment): a folder with an existing llama.cpp build's llama-bench
# (and llama-cli for the memory check). This script never builds llama.cpp.
# Environment (defaults):
#   LLAMITA=build/llamita    the llamita binary (build it first: make)
#   BENCH_DIR=/tmp/llamita-bench   where the models (1.1B parameters each: 0.6-2.2 GB) are written
#   TYPES="F16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K"   THREADS="1 2"
#   P=512 N=128 REPS=3 ROUNDS=2   pp/tg lengths, repetitions per bench call, A/B rounds
#   VOCAB_FROM=              a GGUF whose tokenizer the synthetic models copy (default: synthetic)
#   SYNTH_ARGS=              extra `llamita synth` options (smaller shapes for a quick smoke run;
#                            then also set NAME so the files do not mix with the real ones)
#   NAME=tinyllama-synth     model file prefix: $BENCH_DIR/$NAME-<type>.gguf
#   OUT=$BENCH_DIR/results-<date>   raw results and summary.md
#
# For each type and thread count, ROUNDS times: membw (memory bandwidth, the same thread count),
# then `llamita bench`, then `llama-bench` (A B A B ...), all with -p $P -n $N -r $REPS -o json.
# Then peak RSS: `llamita run` and `llama-cli` on the Q8_0 file with n_ctx 2048 and a ~1400-token
# prompt, under /usr/bin/time -v. bench/summarize.py turns the raw files into summary.md (ratios,
# bandwidth bound, RSS bound).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
LLAMA_CPP_BIN=${1:-${LLAMA_CPP_BIN:-}}
if [ -z "$LLAMA_CPP_BIN" ] || [ ! -x "$LLAMA_CPP_BIN/llama-bench" ]; then
    echo "usage: bench/compare.sh LLAMA_CPP_BIN  (a folder holding a built llama-bench; or set LLAMA_CPP_BIN)" >&2
    exit 2
fi
LLAMITA=${LLAMITA:-$REPO/build/llamita}
BENCH_DIR=${BENCH_DIR:-/tmp/llamita-bench}
TYPES=${TYPES:-"F16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K"}
THREADS=${THREADS:-"1 2"}
P=${P:-512}
N=${N:-128}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-2}
VOCAB_FROM=${VOCAB_FROM:-}
SYNTH_ARGS=${SYNTH_ARGS:-}
NAME=${NAME:-tinyllama-synth}
OUT=${OUT:-$BENCH_DIR/results-$(date +%Y%m%d-%H%M%S)}
PY=${PYTHON:-python3}

[ -x "$LLAMITA" ] || { echo "error: $LLAMITA not found; run make first" >&2; exit 1; }
mkdir -p "$BENCH_DIR" "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# memory bandwidth tool (a streaming read; see bench/membw.c)
MEMBW=$OUT/membw
${CC:-cc} -O3 -march=native -pthread "$REPO/bench/membw.c" -o "$MEMBW"

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) CPUs)"
    echo "llamita: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?') $LLAMITA"
    echo "llama.cpp: $LLAMA_CPP_BIN"
    echo "settings: P=$P N=$N REPS=$REPS ROUNDS=$ROUNDS THREADS='$THREADS' TYPES='$TYPES' NAME=$NAME SYNTH_ARGS='$SYNTH_ARGS'"
    echo "model_file_pattern: $BENCH_DIR/$NAME-TYPE.gguf"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/env.txt"
cat "$OUT/env.txt" >&2

# models
for type in $TYPES; do
    f=$BENCH_DIR/$NAME-$type.gguf
    if [ ! -s "$f" ]; then
        log "writing $f"
        args=(synth -o "$f.tmp" --type "$type")
        [ -n "$VOCAB_FROM" ] && args+=(--vocab-from "$VOCAB_FROM")
        # shellcheck disable=SC2206
        [ -n "$SYNTH_ARGS" ] && args+=($SYNTH_ARGS)
        "$LLAMITA" "${args[@]}"
        mv "$f.tmp" "$f"
    fi
    "$LLAMITA" info -m "$f" > "$OUT/info-$type.txt"
done

# interleaved runs
for type in $TYPES; do
    f=$BENCH_DIR/$NAME-$type.gguf
    # Out of the page cache, then read back in: the file's pages then sit in large folios, which every
    # mapping of it (llamita's and llama.cpp's alike) maps with 2 MB pages; pages cached in small folios
    # (e.g. just written) would be mapped with 4 KB pages, ~25% slower to stream here.
    /usr/bin/python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$f"
    cat "$f" > /dev/null
    for t in $THREADS; do
        for r in $(seq 1 "$ROUNDS"); do
            log "$type t=$t round $r: membw"
            "$MEMBW" -t "$t" -r 5 -s 1024 > "$OUT/membw-$type-t$t-r$r.txt"
            log "$type t=$t round $r: llamita"
            "$LLAMITA" bench -m "$f" -p "$P" -n "$N" -r "$REPS" -t "$t" -o json > "$OUT/llamita-$type-t$t-r$r.json"
            log "$type t=$t round $r: llama.cpp"
            "$LLAMA_CPP_BIN/llama-bench" -m "$f" -p "$P" -n "$N" -r "$REPS" -t "$t" -o json \
                > "$OUT/llamacpp-$type-t$t-r$r.json" 2> "$OUT/llamacpp-$type-t$t-r$r.err"
        done
    done
done

# peak RSS at n_ctx 2048 (Q8_0): a prompt of about 1400 tokens (1394 with the synthetic vocabulary), then 64 generated tokens
if [[ " $TYPES " == *" Q8_0 "* ]] && [ -x /usr/bin/time ]; then
    f=$BENCH_DIR/$NAME-Q8_0.gguf
    prompt=$OUT/prompt.txt
    for i in $(seq 1 100); do printf 'the quick brown fox jumps over the lazy dog %d ' "$i"; done > "$prompt"
    log "peak RSS: llamita"
    /usr/bin/time -v "$LLAMITA" run -m "$f" -c 2048 -f "$prompt" -n 64 --temp 0 --ignore-eos -t 2 \
        > /dev/null 2> "$OUT/rss-llamita.txt" || true
    if [ -x "$LLAMA_CPP_BIN/llama-cli" ]; then
        log "peak RSS: llama.cpp"
        /usr/bin/time -v "$LLAMA_CPP_BIN/llama-cli" -m "$f" -c 2048 -f "$prompt" -n 64 --temp 0 -t 2 \
            -no-cnv --ignore-eos < /dev/null > /dev/null 2> "$OUT/rss-llamacpp.txt" || true
    fi
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"

"$PY" "$REPO/bench/summarize.py" "$OUT" | tee "$OUT/summary.md"
log "raw results and summary: $OUT"
