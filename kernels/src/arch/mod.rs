//! Instruction-set specific kernels (the only place for `unsafe` SIMD code).
