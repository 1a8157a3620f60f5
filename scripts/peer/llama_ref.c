// llama_ref: greedy-generation references from llama.cpp, through its public API only.
//
// usage: llama_ref MODEL N_PREDICT N_THREADS PROMPT...
//
// For each prompt: tokenize (add_special, parse_special), decode the prompt in one batch,
// keep the logits of the last prompt position (top 50 by value, the values at 20 fixed
// ids, a few summary numbers), then greedy-decode N_PREDICT tokens (stopping early at an
// end-of-generation token). K/V cache in F32 and flash attention off, so the reference is
// the plain attention path without f16 rounding of keys and values. Weights are used in
// the file's layout (`use_extra_bufts = false`, what `--no-repack` does in llama.cpp's
// tools): the repacked CPU kernels (Q4_K as q4_K_8x8, Q4_0 as q4_0_8x8, ...) quantize
// activations and add in other orders than ggml's reference kernels, so the default would
// be one of two llama.cpp answers, picked by the CPU. For the same reason the tiled
// K-quant kernels that ggml takes for batches of 8 rows or more are switched off
// (GGML_CPU_TILED_MM=0, ggml's own switch): what remains is ggml's reference path, its
// `vec_dot` kernels, which is what our kernels reproduce. The same run with an
// F16 K/V cache is recorded too ("f16_kv": its logits at the same ids and its greedy
// tokens): how far llama.cpp moves from itself under a rounding-level change, which is
// the scale our own rounding differences are judged on. Prints one JSON document.
//
// Besides the selected values, "logits_fnv1a" is the 64-bit FNV-1a hash of the bytes of
// all the logits after the prompt (n_vocab little-endian f32): two runs with equal hashes
// have the same logits bit for bit. With LLAMA_REF_PROMPT_TOKENS=N in the environment,
// each prompt is cut to its first N tokens (so a text gives a prompt of a set length).

#define _POSIX_C_SOURCE 200112L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define TOP_N 50
#define FIXED_N 20

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)level;
    (void)text;
    (void)user;
}

static void print_json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20) {
                printf("\\u%04x", *p);
            } else {
                putchar(*p);
            }
        }
    }
    putchar('"');
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

// Gap between the largest and second-largest value.
static float top2_gap(const float *v, int n) {
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (v[i] > a) {
            b = a;
            a = v[i];
        } else if (v[i] > b) {
            b = v[i];
        }
    }
    return a - b;
}

// The ids of the TOP_N largest values, largest first.
static int top_ids(const float *logits, int n_vocab, int *ids) {
    int n = 0;
    // Selection by repeated scans: TOP_N * n_vocab is small.
    char *taken = calloc((size_t)n_vocab, 1);
    for (; n < TOP_N && n < n_vocab; n++) {
        int best = -1;
        for (int i = 0; i < n_vocab; i++) {
            if (!taken[i] && (best < 0 || logits[i] > logits[best])) {
                best = i;
            }
        }
        taken[best] = 1;
        ids[n] = best;
    }
    free(taken);
    return n;
}

static void print_ints(const char *key, const int *v, int n) {
    printf("\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        printf("%s%d", i ? "," : "", v[i]);
    }
    printf("]");
}

static void print_values_at(const char *key, const float *logits, const int *ids, int n) {
    printf("\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        printf("%s%.9g", i ? "," : "", logits[ids[i]]);
    }
    printf("]");
}

// FNV-1a, 64 bits, over the bytes of n floats (little-endian, as x86 stores them).
static unsigned long long fnv1a(const float *v, int n) {
    unsigned long long h = 0xcbf29ce484222325ULL;
    const unsigned char *p = (const unsigned char *)v;
    for (size_t i = 0; i < (size_t)n * sizeof(float); i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

// Decodes the prompt in one batch (after clearing the context's memory); returns the
// logits of its last position, owned by the context.
static const float *decode_prompt(struct llama_context *ctx, llama_token *tokens, int n_prompt) {
    llama_memory_clear(llama_get_memory(ctx), true);
    if (llama_decode(ctx, llama_batch_get_one(tokens, n_prompt)) != 0) {
        fprintf(stderr, "prompt decode failed\n");
        exit(1);
    }
    return llama_get_logits_ith(ctx, -1);
}

// Greedy continuation after decode_prompt: writes the ids (and, if gaps is not NULL, the
// top-2 gap of the logits each was chosen from); returns how many.
static int greedy(struct llama_context *ctx, const struct llama_vocab *vocab, llama_token *tokens,
                  int n_prompt, int n_predict, const float *logits, int *ids, float *gaps) {
    int n_vocab = llama_vocab_n_tokens(vocab);
    int n_gen = 0;
    while (n_gen < n_predict) {
        if (gaps) {
            gaps[n_gen] = top2_gap(logits, n_vocab);
        }
        llama_token next = argmax(logits, n_vocab);
        ids[n_gen++] = next;
        if (llama_vocab_is_eog(vocab, next) || n_gen == n_predict) {
            break;
        }
        tokens[n_prompt + n_gen - 1] = next;
        if (llama_decode(ctx, llama_batch_get_one(&tokens[n_prompt + n_gen - 1], 1)) != 0) {
            fprintf(stderr, "decode failed\n");
            exit(1);
        }
        logits = llama_get_logits_ith(ctx, -1);
    }
    return n_gen;
}

// One prompt: the reference run (F32 K/V) and the same with an F16 K/V cache, which
// measures how far llama.cpp itself moves under a rounding-level change.
static void run_prompt(struct llama_context *ctx, struct llama_context *ctx_f16,
                       const struct llama_vocab *vocab, const char *prompt, int n_predict) {
    int n_vocab = llama_vocab_n_tokens(vocab);
    int len = (int)strlen(prompt);
    int n_prompt = -llama_tokenize(vocab, prompt, len, NULL, 0, true, true);
    llama_token *tokens = malloc(sizeof(llama_token) * (size_t)(n_prompt + n_predict + 1));
    int *ids = malloc(sizeof(int) * (size_t)(n_predict + 1));
    float *gaps = malloc(sizeof(float) * (size_t)(n_predict + 1));
    if (llama_tokenize(vocab, prompt, len, tokens, n_prompt, true, true) != n_prompt) {
        fprintf(stderr, "tokenize failed\n");
        exit(1);
    }
    const char *cut = getenv("LLAMA_REF_PROMPT_TOKENS");
    if (cut && atoi(cut) > 0 && atoi(cut) < n_prompt) {
        n_prompt = atoi(cut);
    }
    int top[TOP_N], fixed[FIXED_N];
    for (int i = 0; i < FIXED_N; i++) {
        fixed[i] = i * (n_vocab / FIXED_N);
    }

    printf("{\"prompt\":");
    print_json_string(prompt);
    printf(",");
    print_ints("prompt_ids", tokens, n_prompt);

    const float *logits = decode_prompt(ctx, tokens, n_prompt);
    int n_top = top_ids(logits, n_vocab, top);
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) {
        sum += logits[i];
    }
    printf(",\"first_logits\":{\"n_vocab\":%d,\"mean\":%.9g,", n_vocab, sum / n_vocab);
    printf("\"logits_fnv1a\":\"%016llx\",", fnv1a(logits, n_vocab));
    print_ints("top_ids", top, n_top);
    printf(",");
    print_values_at("top_logits", logits, top, n_top);
    printf(",");
    print_ints("fixed_ids", fixed, FIXED_N);
    printf(",");
    print_values_at("fixed_logits", logits, fixed, FIXED_N);
    printf("},");
    int n_gen = greedy(ctx, vocab, tokens, n_prompt, n_predict, logits, ids, gaps);
    print_ints("generated_ids", ids, n_gen);
    printf(",\"generated_top2_gaps\":[");
    for (int i = 0; i < n_gen; i++) {
        printf("%s%.6g", i ? "," : "", gaps[i]);
    }
    printf("]");

    logits = decode_prompt(ctx_f16, tokens, n_prompt);
    printf(",\"f16_kv\":{");
    print_values_at("top_logits", logits, top, n_top);
    printf(",");
    print_values_at("fixed_logits", logits, fixed, FIXED_N);
    printf(",");
    n_gen = greedy(ctx_f16, vocab, tokens, n_prompt, n_predict, logits, ids, NULL);
    print_ints("generated_ids", ids, n_gen);
    printf("}}");
    free(tokens);
    free(ids);
    free(gaps);
}

static struct llama_context *context(struct llama_model *model, int n_threads, enum ggml_type kv) {
    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = 2048;
    cparams.n_batch = 2048;
    cparams.n_ubatch = 512;
    cparams.n_threads = n_threads;
    cparams.n_threads_batch = n_threads;
    cparams.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cparams.type_k = kv;
    cparams.type_v = kv;
    struct llama_context *ctx = llama_init_from_model(model, cparams);
    if (!ctx) {
        fprintf(stderr, "cannot create context\n");
        exit(1);
    }
    return ctx;
}

/* The widest x86 vectors of this host, which a native build of ggml (GGML_NATIVE, as
 * docs/PEER.md builds it) was compiled for: its F32 dot products add in lanes of that
 * width, so references made on an AVX2 host differ in the last bits from an AVX-512
 * host's, whose order our exact path reproduces. */
static const char *host_simd(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512";
    if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
    return "other";
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL N_PREDICT N_THREADS PROMPT...\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    int n_predict = atoi(argv[2]);
    int n_threads = atoi(argv[3]);

    setenv("GGML_CPU_TILED_MM", "0", 1);
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mparams = llama_model_default_params();
    mparams.use_extra_bufts = false;
    struct llama_model *model = llama_model_load_from_file(model_path, mparams);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", model_path);
        return 1;
    }
    struct llama_context *ctx = context(model, n_threads, GGML_TYPE_F32);
    struct llama_context *ctx_f16 = context(model, n_threads, GGML_TYPE_F16);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    printf("{\"generator\":\"scripts/peer/llama_ref.c (llama.cpp public API)\",");
    printf("\"settings\":{\"n_threads\":%d,\"n_predict\":%d,\"type_k\":\"f32\",\"type_v\":\"f32\","
           "\"flash_attn\":false,\"repack\":false,\"tiled_mm\":false,\"n_ctx\":2048,"
           "\"host_simd\":\"%s\"},\"cases\":[\n",
           n_threads, n_predict, host_simd());
    for (int i = 4; i < argc; i++) {
        if (i > 4) {
            printf(",\n");
        }
        run_prompt(ctx, ctx_f16, vocab, argv[i], n_predict);
    }
    printf("\n]}\n");
    llama_free(ctx);
    llama_free(ctx_f16);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
