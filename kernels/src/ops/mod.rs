//! The element-wise and reduction math of a transformer layer.
