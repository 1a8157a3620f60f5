//! Quantization and dequantization of every GGML block type.
