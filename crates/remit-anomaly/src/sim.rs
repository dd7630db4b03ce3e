//! The traffic simulator (placeholder while the detectors build).
