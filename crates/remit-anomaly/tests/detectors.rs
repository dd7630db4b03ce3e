//! Detectors case by case.
