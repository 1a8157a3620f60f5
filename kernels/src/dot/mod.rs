//! Dot products between quantized weight rows and quantized activations.
