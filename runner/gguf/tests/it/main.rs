//! Integration tests of the `gguf` crate against llama.cpp's Python reader.

mod python_reader;
