//! Host package for workspace-wide tests and examples.
