//! Matrix-vector and matrix-matrix products over quantized weights.
