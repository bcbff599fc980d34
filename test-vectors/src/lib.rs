//! Known-answer vectors.
