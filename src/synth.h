/*
 * Synthetic models: writes a Llama GGUF with given shapes and random weights (matrices N(0, 0.02^2),
 * norm weights U(0.5, 1.5)), quantized with our own quantizers. With the default params the shapes
 * are exactly TinyLlama-1.1B's, so anyone can benchmark without downloading. Used by
 * `llamita synth` and by the tests (small shapes).
 */
#ifndef LM_SYNTH_H
#define LM_SYNTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lm_synth_params {
    int32_t n_vocab;   /* ignored when vocab_from is set (taken from that file) */
    int32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    int32_t n_rot;     /* 0 = head_dim */
    float rope_base, rms_eps;
    float rope_scale;  /* linear rope scaling factor; 1 (or 0) = none */
    const char *ftype; /* file type name, as llama-quantize takes it: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0
                          Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K. Mixed types
                          follow llama-quantize's main rules (output.weight Q6_K for non-Q8_0 types,
                          the _M variants put more bits on attn_v / ffn_down); 1-D norms stay F32;
                          a matrix whose row length is not a multiple of 256 falls back from a
                          K-quant to a 32-block type. */
    bool tied_output;  /* no output.weight: tied to token_embd */
    uint64_t seed;
    const char *vocab_from; /* GGUF whose tokenizer.* keys are copied; NULL = a synthetic byte vocab
                               (<unk> <s> </s>, 256 byte tokens <0xNN>, filler pieces) */
    const char *name;       /* general.name (default "llamita-synth") */
} lm_synth_params;

/* TinyLlama-1.1B shapes: vocab 32000, dim 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632,
 * ctx 2048, rope base 10000, eps 1e-5, ftype Q8_0, seed 1234. */
lm_synth_params lm_synth_default_params(void);
/* Writes the model to path. False with a message on bad params or I/O errors. */
bool lm_synth_write(const char *path, const lm_synth_params *p, char *err, size_t err_size);
#endif
