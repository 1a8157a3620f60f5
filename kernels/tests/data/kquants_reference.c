// Generates kquants-ref.bin, the reference bytes of kernels/tests/it/kquant_refs.rs:
// llama.cpp's reference K-quant quantizers (quantize_row_q{2,3,4,5,6}_K_ref, exported by
// libggml-base) applied to deterministic inputs that the Rust test rebuilds with the same
// formulas. It calls ggml's public API only; it is a test-data generator, not part of the
// crate.
//
// Build against a llama.cpp build (ggml-base is built without -march, so without FMA):
//   L=/path/to/llama.cpp
//   gcc -O2 -ffp-contract=off kquants_reference.c -I$L/ggml/include -I$L/ggml/src
//       -L$L/build/bin -lggml-base -lm -Wl,-rpath,$L/build/bin -o kquants_reference
//   (one command line)
//   ./kquants_reference > kquants-ref.bin
//
// File format (little-endian): "KQRF", u32 row count R, R × (u32 value count, u32 FNV-1a
// hash of the input's f32 bits), then for each of Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: u32 ggml
// type id and the quantized bytes of all rows, one after the other.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ggml.h"
#include "ggml-quants.h"

#define N_ROWS 26
static const int ROW_LEN[10] = {1024, 512, 1024, 256, 256, 256, 512, 256, 256, 768};

static int row_len(int row) { return row < 10 ? ROW_LEN[row] : 1024; }

static uint32_t state;

static uint32_t next_u32(void) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

// Uniform in [0, 1), exact: 24 random bits times 2^-24.
static float unit(void) { return (float) (next_u32() >> 8) * (1.0f / 16777216.0f); }

// Uniform in [-1, 1), exact.
static float sym(void) { return unit() * 2.0f - 1.0f; }

static void fill(int row, float * x, int n) {
    state = 0x9E3779B9u ^ ((uint32_t) (row + 1) * 0x85EBCA6Bu);
    for (int i = 0; i < n; i++) {
        float v;
        int b = i / 256, s = (i % 256) / 16;
        switch (row) {
        case 0: v = sym(); break;
        case 1: { float t = sym(); v = t * t * t * 4.0f; } break;  // heavy tails
        case 2:  // zeros, constant, one outlier, below GROUP_MAX_EPS
            v = b == 0 ? 0.0f : b == 1 ? 0.37f : b == 2 ? sym() * 0.1f : sym() * 1e-20f;
            if (i == 2 * 256 + 77) v = 100.0f;
            break;
        case 3: v = -(unit() * 3.0f) - 0.01f; break;  // negative only
        case 4:  // a scale per sub-block of 16, with zero and constant sub-blocks
            v = s == 3 ? 0.0f : s == 5 ? -0.5f : s == 9 ? 2.0f : sym() * (float) (1 << s) / 256.0f;
            break;
        case 5: v = sym() * 1e-7f; break;  // f16-subnormal scales
        case 6: v = b == 0 ? sym() * 1000.0f : unit() * 2.0f + 0.5f; break;  // large; positive only
        case 7: v = -1.25f; break;  // constant negative
        case 8: v = (float) ((int) (next_u32() >> 8) % 65 - 32) / 8.0f; break;  // ties
        case 9: v = sym() * (b == 1 ? 1e-3f : 3.0f); if (i % 97 == 0) v = -v * 40.0f; break;
        default: {  // bell-shaped, one magnitude per row, every 61st value an outlier
            float a = sym(), c = sym(), d = sym();  // sequenced: C leaves + operand order open
            v = (a + c + d) * (float) (1 << (row % 8)) / 16.0f;
            if (i % 61 == 0) v = v * 8.0f;
        } break;
        }
        x[i] = v;
    }
}

static uint32_t fnv(const float * x, int n) {
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        for (int k = 0; k < 4; k++) { h ^= (bits >> (8 * k)) & 0xFF; h *= 16777619u; }
    }
    return h;
}

static void put_u32(uint32_t v) { fwrite(&v, 4, 1, stdout); }

int main(void) {
    static float x[1024];
    static uint8_t out[1024 * 2];
    fwrite("KQRF", 1, 4, stdout);
    put_u32(N_ROWS);
    for (int r = 0; r < N_ROWS; r++) {
        fill(r, x, row_len(r));
        put_u32((uint32_t) row_len(r));
        put_u32(fnv(x, row_len(r)));
    }
    const enum ggml_type types[5] = {GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    for (int t = 0; t < 5; t++) {
        put_u32((uint32_t) types[t]);
        for (int r = 0; r < N_ROWS; r++) {
            int n = row_len(r);
            fill(r, x, n);
            memset(out, 0xAA, sizeof out);
            switch (types[t]) {
            case GGML_TYPE_Q2_K: quantize_row_q2_K_ref(x, (block_q2_K *) out, n); break;
            case GGML_TYPE_Q3_K: quantize_row_q3_K_ref(x, (block_q3_K *) out, n); break;
            case GGML_TYPE_Q4_K: quantize_row_q4_K_ref(x, (block_q4_K *) out, n); break;
            case GGML_TYPE_Q5_K: quantize_row_q5_K_ref(x, (block_q5_K *) out, n); break;
            default: quantize_row_q6_K_ref(x, (block_q6_K *) out, n); break;
            }
            fwrite(out, 1, ggml_row_size(types[t], n), stdout);
        }
    }
    return 0;
}
