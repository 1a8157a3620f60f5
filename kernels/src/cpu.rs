//! CPU feature detection, once, returning capability tokens.
