//! The harnesses' command lines, run on the built binaries. Nothing here benchmarks:
//! every run stops at `--help` or at a bad argument, before any measurement starts.

mod command_line;
